//! Three Flack nodes on one PostgreSQL and one Redis (real servers on loopback), clients on
//! each: what is sent on any node reaches every node's clients in the same order, each
//! message once, and the same access rules hold whichever node a request reaches.
#![cfg(feature = "ssr")]

mod common;

use common::cluster::{self, connect, next_within, send, until, Watcher};
use common::login;
use flack::protocol::{ClientEvent, ConversationId, ConversationKind, Message, ServerEvent};
use flack::server::identity::hash_token;
use flack::server::testing::Services;
use futures_util::StreamExt;
use std::collections::HashSet;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsFrame;

const NODES: usize = 3;
const LOOPBACK: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const PER_SENDER: usize = 40;

/// The error code of an error event.
fn code(event: &ServerEvent) -> String {
    match event {
        ServerEvent::Error { error, .. } => serde_json::to_value(error).unwrap()["code"]
            .as_str()
            .unwrap()
            .to_string(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn messages_edits_and_reactions_from_every_node_reach_every_node_in_order() {
    let config = cluster::config(Services::shared()).await;
    let nodes = cluster::nodes(&config, NODES).await;
    let addrs: Vec<_> = nodes.iter().map(|(addr, _)| *addr).collect();
    let general = nodes[0]
        .1
        .chat
        .store()
        .channel_named("general")
        .await
        .unwrap()
        .unwrap()
        .id;
    // Two people per node: one sends, both watch.
    let mut tokens = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        for j in 0..2 {
            tokens.push((*addr, login(*addr, &format!("N{i}P{j}")).await));
        }
    }
    let mut watchers = Vec::new();
    for (addr, token) in &tokens {
        watchers.push(Watcher::open(*addr, token, general, None).await);
    }
    // One sender per node, all at once, each on its own socket.
    let mut senders = Vec::new();
    for (i, (addr, token)) in tokens.iter().enumerate().step_by(2) {
        let (addr, token) = (*addr, token.clone());
        senders.push(tokio::spawn(async move {
            let mut ws = connect(addr, &token).await;
            for k in 0..PER_SENDER {
                send(
                    &mut ws,
                    ClientEvent::Send {
                        conversation: Some(general),
                        channel: None,
                        body: format!("{i}-{k}"),
                        client_id: Some(format!("c-{i}-{k}")),
                    },
                )
                .await;
            }
            let mut acked = Vec::new();
            while acked.len() < PER_SENDER {
                if let ServerEvent::Ack { message_id, .. } =
                    until(&mut ws, |e| matches!(e, ServerEvent::Ack { .. })).await
                {
                    acked.push(message_id);
                }
            }
            (ws, acked)
        }));
    }
    let mut sockets = Vec::new();
    for sender in senders {
        sockets.push(sender.await.unwrap());
    }
    let total = NODES * PER_SENDER;
    for watcher in &mut watchers {
        watcher.pump_until(|log| log.messages.len() >= total).await;
    }
    // An edit, a reaction and a deletion, each on a node other than the one the message
    // was sent through.
    let (edited, reacted, deleted) = (
        sockets[1].1[0].clone(),
        sockets[2].1[1].clone(),
        sockets[0].1[2].clone(),
    );
    let by = |n: usize| connect(addrs[n], &tokens[2 * n].1);
    let mut editor = by(1).await;
    send(
        &mut editor,
        ClientEvent::Edit {
            message_id: edited.clone(),
            body: "edited across nodes".into(),
        },
    )
    .await;
    let mut reactor = by(0).await;
    send(
        &mut reactor,
        ClientEvent::React {
            message_id: reacted.clone(),
            emoji: "👍".into(),
            on: true,
        },
    )
    .await;
    let mut deleter = by(0).await;
    send(
        &mut deleter,
        ClientEvent::Delete {
            message_id: deleted.clone(),
        },
    )
    .await;
    let settled = |log: &flack::app::chat_state::ConversationLog| {
        let find = |id: &flack::protocol::MessageId| log.messages.iter().find(|m| &m.id == id);
        find(&edited).is_some_and(|m| m.body == "edited across nodes")
            && find(&reacted).is_some_and(|m| !m.reactions.is_empty())
            && find(&deleted).is_none()
    };
    let fresh = nodes[2].1.chat.store().recent(general, 1000).await.unwrap();
    for watcher in &mut watchers {
        watcher.pump_until(settled).await;
    }
    let fresh_after = nodes[1].1.chat.store().recent(general, 1000).await.unwrap();
    assert!(fresh.messages.len() >= total - 1);
    for (i, watcher) in watchers.iter().enumerate() {
        // Every message once, in the order the database numbered them.
        let live = &watcher.live;
        assert!(
            live.windows(2).all(|w| w[0] < w[1]),
            "client {i} heard messages out of order or twice: {live:?}"
        );
        let unique: HashSet<_> = live.iter().collect();
        assert_eq!(unique.len(), live.len(), "client {i} heard a message twice");
        // What it shows is what a fresh load shows.
        let shown: Vec<&Message> = watcher.log.messages.iter().collect();
        let stored: Vec<&Message> = fresh_after.messages.iter().collect();
        assert_eq!(shown, stored, "client {i} differs from a fresh load");
    }
    // Frames of different nodes cross on the bus; each node filled the gaps that left
    // from the database, once per gap, not once per socket.
    let heard: usize = watchers.iter().map(|w| w.live.len()).sum();
    let healed: u64 = nodes
        .iter()
        .map(|(_, s)| s.chat.hub().stats().gaps_healed)
        .sum();
    let relayed: u64 = nodes
        .iter()
        .map(|(_, s)| s.chat.hub().stats().relayed)
        .sum();
    assert!(relayed > 0, "nothing crossed the bus");
    // The same figures, as /metrics shows them to an operator.
    let text = reqwest::get(format!("http://{}/metrics", addrs[2]))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metric = |name: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {text}"))
            .parse()
            .unwrap()
    };
    assert!(metric("flack_bus_frames_relayed_total") >= (2 * PER_SENDER) as f64);
    assert!(metric("flack_deliveries_total") >= (2 * total) as f64);
    assert_eq!(metric("flack_bus_reconnects_total"), 0.0);
    eprintln!(
        "heard live {heard} of {}; relayed {relayed}; gaps healed {healed}",
        watchers.len() * total
    );
}

#[tokio::test]
async fn access_holds_whichever_node_a_request_reaches() {
    let config = cluster::config(Services::shared()).await;
    let nodes = cluster::nodes(&config, NODES).await;
    let addrs: Vec<_> = nodes.iter().map(|(addr, _)| *addr).collect();
    let ada_token = login(addrs[0], "Ada").await;
    let eve_token = login(addrs[2], "Eve").await;
    let store = nodes[0].1.chat.store();
    let user = |token: &str| {
        let hash = hash_token(token);
        async move { store.user_by_token(&hash).await.unwrap().unwrap() }
    };
    let (ada, eve) = (user(&ada_token).await, user(&eve_token).await);
    // Ada makes a private channel on node 0.
    let club = nodes[0]
        .1
        .chat
        .create_channel(&ada, "club", true, LOOPBACK)
        .await
        .unwrap();
    let mut ada_ws = Watcher::open(addrs[0], &ada_token, club.id, None).await;
    // Eve, on node 2, can neither open it nor post to it.
    let mut eve_ws = connect(addrs[2], &eve_token).await;
    let subscribe = ClientEvent::Subscribe {
        conversation: Some(club.id),
        channel: None,
        after_change: None,
    };
    send(&mut eve_ws, subscribe.clone()).await;
    assert_eq!(
        code(
            &next_within(&mut eve_ws, Duration::from_secs(5))
                .await
                .unwrap()
        ),
        "no_such_conversation"
    );
    let post = |body: &str| ClientEvent::Send {
        conversation: Some(club.id),
        channel: None,
        body: body.into(),
        client_id: None,
    };
    send(&mut eve_ws, post("let me in")).await;
    assert_eq!(
        code(
            &next_within(&mut eve_ws, Duration::from_secs(5))
                .await
                .unwrap()
        ),
        "no_such_conversation"
    );
    // Invited on node 0, she opens it and posts on node 2; Ada hears it on node 0.
    nodes[0]
        .1
        .chat
        .invite(&ada, club.id, &eve.id)
        .await
        .unwrap();
    send(&mut eve_ws, subscribe.clone()).await;
    until(&mut eve_ws, |e| matches!(e, ServerEvent::Subscribed { .. })).await;
    send(&mut eve_ws, post("thanks")).await;
    until(&mut eve_ws, |e| matches!(e, ServerEvent::Ack { .. })).await;
    ada_ws
        .pump_until(|log| log.messages.iter().any(|m| m.body == "thanks"))
        .await;
    // She leaves on node 1: node 2, which saw her post a moment ago, refuses her next post.
    nodes[1].1.chat.leave(&eve, club.id).await.unwrap();
    // The leave is committed before `leave` returns: an ack after it would be a bug.
    send(&mut eve_ws, post("still here?")).await;
    let answer = until(&mut eve_ws, |e| {
        matches!(e, ServerEvent::Ack { .. } | ServerEvent::Error { .. })
    })
    .await;
    assert!(
        matches!(answer, ServerEvent::Error { .. }),
        "node 2 let a leaver post: {answer:?}"
    );
    assert_eq!(code(&answer), "no_such_conversation");
    // A direct message started on node 2 reaches Ada's own stream on node 0.
    let mut ada_stream = connect(addrs[0], &ada_token).await;
    let dm = nodes[2]
        .1
        .chat
        .open_direct(&eve, std::slice::from_ref(&ada.id), LOOPBACK)
        .await
        .unwrap();
    assert_eq!(dm.kind, ConversationKind::Direct);
    let joined = until(&mut ada_stream, |e| matches!(e, ServerEvent::Joined { .. })).await;
    let ServerEvent::Joined { summary } = joined else {
        unreachable!()
    };
    assert_eq!(summary.conversation.id, dm.id);
    // A message in it, posted on node 1, reaches her as activity on node 0.
    nodes[1]
        .1
        .chat
        .post(&eve, dm.id, "psst", None)
        .await
        .unwrap();
    let activity = until(&mut ada_stream, |e| {
        matches!(e, ServerEvent::Activity { .. })
    })
    .await;
    let ServerEvent::Activity { conversation, .. } = activity else {
        unreachable!()
    };
    assert_eq!(conversation, dm.id);
    let _: ConversationId = conversation;

    // Eve renames herself on node 0; her open socket on node 2 posts under the new name.
    let http = reqwest::Client::new();
    let res = http
        .post(format!("http://{}/api/set_display_name", addrs[0]))
        .header("cookie", format!("flack_session={eve_token}"))
        .header("origin", format!("http://{}", addrs[0]))
        .form(&[("name", "Evelyn")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(
        &mut eve_ws,
        ClientEvent::Send {
            conversation: Some(dm.id),
            channel: None,
            body: "new name".into(),
            client_id: None,
        },
    )
    .await;
    until(&mut eve_ws, |e| matches!(e, ServerEvent::Ack { .. })).await;
    let last = nodes[1].1.chat.store().recent(dm.id, 10).await.unwrap();
    assert_eq!(last.messages.last().unwrap().author.name, "Evelyn");

    // Ada signs out on node 0: her socket on node 1 closes, and node 2 no longer knows
    // the token.
    let mut ada_elsewhere = connect(addrs[1], &ada_token).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = http
        .post(format!("http://{}/auth/sign_out", addrs[0]))
        .header("cookie", format!("flack_session={ada_token}"))
        .header("origin", format!("http://{}", addrs[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(5), ada_elsewhere.next()).await {
            Ok(Some(Ok(WsFrame::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(code, Some(flack::protocol::CLOSE_SIGNED_OUT));
    let me: serde_json::Value = http
        .post(format!("http://{}/api/get_me", addrs[2]))
        .header("cookie", format!("flack_session={ada_token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(me["name"].is_null(), "node 2 still knows the token: {me}");
}
