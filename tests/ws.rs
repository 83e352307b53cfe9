//! The real router on port 0, driven by real WebSocket and HTTP clients: what a bot or a
//! browser sees on the wire.
#![cfg(feature = "ssr")]

mod common;

use common::login;

use flack::protocol::{ClientEvent, Message, ServerEvent, HISTORY_WINDOW};
use flack::server::{config::Config, state::AppState};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A server on its own SQLite file (removed when the test process ends).
async fn start() -> SocketAddr {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    start_with(Config {
        database: dir.path().join("flack.db"),
        ..Config::default()
    })
    .await
}

async fn start_with(config: Config) -> SocketAddr {
    common::serve(config).await
}

async fn connect_with(
    addr: SocketAddr,
    token: Option<&str>,
    origin: Option<&str>,
) -> Result<Ws, String> {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    if let Some(token) = token {
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
    }
    if let Some(origin) = origin {
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(origin).unwrap());
    }
    connect_async(req)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

/// Connects and reads the hello.
async fn connect(addr: SocketAddr, token: &str) -> Ws {
    let mut ws = connect_with(addr, Some(token), None).await.unwrap();
    assert!(matches!(next(&mut ws).await, ServerEvent::Hello { .. }));
    ws
}

async fn send(ws: &mut Ws, event: ClientEvent) {
    ws.send(Frame::text(serde_json::to_string(&event).unwrap()))
        .await
        .unwrap();
}

/// The next event, skipping what the user's own stream and the conversation's side
/// signals say (activity, joins, members, presence, typing): tests of those read them with
/// [`next_any`].
async fn next(ws: &mut Ws) -> ServerEvent {
    loop {
        let event = next_any(ws).await;
        let side = matches!(
            event,
            ServerEvent::Activity { .. }
                | ServerEvent::Joined { .. }
                | ServerEvent::Left { .. }
                | ServerEvent::Members { .. }
                | ServerEvent::Presence { .. }
                | ServerEvent::Typing { .. }
                | ServerEvent::ReadMoved { .. }
        );
        if !side {
            return event;
        }
    }
}

async fn next_any(ws: &mut Ws) -> ServerEvent {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an event within 5 s")
            .expect("socket open")
            .expect("frame");
        match frame {
            Frame::Text(text) => {
                return serde_json::from_str(text.as_str()).expect("a server event")
            }
            Frame::Ping(_) | Frame::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Opens a channel by name (`after_change`: catch up after it); the messages of the answer,
/// the change number it brings the client to, and whether it is a reset.
async fn subscribe(
    ws: &mut Ws,
    channel: &str,
    after_change: Option<u64>,
) -> (Vec<Message>, u64, bool) {
    send(
        ws,
        ClientEvent::Subscribe {
            conversation: None,
            channel: Some(channel.into()),
            after_change,
        },
    )
    .await;
    match next(ws).await {
        ServerEvent::Subscribed {
            messages,
            last_change,
            reset,
            ..
        } => (messages, last_change, reset),
        other => panic!("expected subscribed, got {other:?}"),
    }
}

fn say(channel: &str, body: &str, client_id: Option<&str>) -> ClientEvent {
    ClientEvent::Send {
        conversation: None,
        channel: Some(channel.into()),
        body: body.into(),
        client_id: client_id.map(Into::into),
    }
}

fn error_code(event: &ServerEvent) -> String {
    match event {
        ServerEvent::Error { error, .. } => serde_json::to_value(error).unwrap()["code"]
            .as_str()
            .unwrap()
            .to_string(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn two_clients_see_each_others_messages_live() {
    let addr = start().await;
    let mut ada = connect(addr, &login(addr, "Ada").await).await;
    let mut bob = connect(addr, &login(addr, "Bob").await).await;
    assert!(subscribe(&mut ada, "general", None).await.0.is_empty());
    subscribe(&mut bob, "GENERAL", None).await;

    send(&mut ada, say("general", "hello <b>bob</b>", Some("c-1"))).await;
    let mut acked = None;
    let mut echoed = None;
    for _ in 0..2 {
        match next(&mut ada).await {
            ServerEvent::Ack { client_id, seq, .. } => acked = Some((client_id, seq)),
            ServerEvent::Message { message } => echoed = Some(message),
            other => panic!("unexpected {other:?}"),
        }
    }
    let ServerEvent::Message { message } = next(&mut bob).await else {
        panic!("message")
    };
    assert_eq!(acked, Some((Some("c-1".to_string()), message.seq)));
    assert_eq!(Some(&message), echoed.as_ref());
    assert_eq!(message.author.name, "Ada");
    assert_eq!(message.body, "hello <b>bob</b>");
    assert!((chrono::Utc::now() - message.sent_at).num_seconds().abs() < 60);
}

#[tokio::test]
async fn bad_frames_get_typed_errors_and_the_socket_stays_usable() {
    let addr = start().await;
    let mut ws = connect(addr, &login(addr, "Ada").await).await;
    subscribe(&mut ws, "general", None).await;

    ws.send(Frame::text("not json")).await.unwrap();
    assert_eq!(error_code(&next(&mut ws).await), "bad_frame");
    ws.send(Frame::text(r#"{"type":"shout","channel":"general"}"#))
        .await
        .unwrap();
    assert_eq!(error_code(&next(&mut ws).await), "bad_frame");
    ws.send(Frame::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(error_code(&next(&mut ws).await), "bad_frame");
    send(&mut ws, say("general", &"x".repeat(4001), Some("long"))).await;
    let too_long = next(&mut ws).await;
    assert_eq!(error_code(&too_long), "message_too_long");
    assert!(matches!(too_long, ServerEvent::Error { client_id: Some(ref c), .. } if c == "long"));
    send(&mut ws, say("nowhere", "hi", None)).await;
    assert_eq!(error_code(&next(&mut ws).await), "no_such_channel");
    send(&mut ws, say("general", "  \n ", None)).await;
    assert_eq!(error_code(&next(&mut ws).await), "message_empty");

    // Still usable, and nothing invalid was stored.
    send(&mut ws, say("general", "fine", None)).await;
    let mut seqs = Vec::new();
    for _ in 0..2 {
        match next(&mut ws).await {
            ServerEvent::Ack { seq, .. } => seqs.push(seq),
            ServerEvent::Message { message } => seqs.push(message.seq),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seqs[0], seqs[1], "the ack and the message agree");
    let (stored, _, _) = subscribe(&mut ws, "general", None).await;
    let bodies: Vec<&str> = stored.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["fine"]);
}

#[tokio::test]
async fn foreign_origins_and_nameless_users_are_refused() {
    let addr = start().await;
    let token = login(addr, "Ada").await;
    let refused = connect_with(addr, Some(&token), Some("http://evil.example")).await;
    assert!(refused.unwrap_err().contains("403"));
    let same_site = format!("http://{addr}");
    assert!(connect_with(addr, Some(&token), Some(&same_site))
        .await
        .is_ok());

    // No token: the server issues a fresh identity with no name, which cannot post yet.
    let mut anon = connect_with(addr, None, None).await.unwrap();
    let ServerEvent::Hello { user } = next(&mut anon).await else {
        panic!("hello")
    };
    assert_eq!(user.name, None);
    send(&mut anon, say("general", "hi", None)).await;
    assert_eq!(error_code(&next(&mut anon).await), "no_display_name");
}

#[tokio::test]
async fn only_the_author_deletes_and_everyone_sees_it() {
    let addr = start().await;
    let mut ada = connect(addr, &login(addr, "Ada").await).await;
    let mut bob = connect(addr, &login(addr, "Bob").await).await;
    subscribe(&mut ada, "general", None).await;
    subscribe(&mut bob, "general", None).await;
    send(&mut ada, say("general", "mine", None)).await;
    let ServerEvent::Message { message } = next(&mut bob).await else {
        panic!("message")
    };

    send(
        &mut bob,
        ClientEvent::Delete {
            message_id: message.id.clone(),
        },
    )
    .await;
    assert_eq!(error_code(&next(&mut bob).await), "not_author");

    send(
        &mut ada,
        ClientEvent::Delete {
            message_id: message.id.clone(),
        },
    )
    .await;
    let deleted = |e: ServerEvent| matches!(e, ServerEvent::Changed { message: ref m } if m.id == message.id && m.deleted && m.body.is_empty());
    assert!(deleted(next(&mut bob).await));
    loop {
        match next(&mut ada).await {
            ServerEvent::Ack { .. } | ServerEvent::Message { .. } => continue,
            other => {
                assert!(deleted(other));
                break;
            }
        }
    }
    assert!(subscribe(&mut bob, "general", None).await.0.is_empty());
}

#[tokio::test]
async fn a_reconnecting_client_gets_exactly_what_it_missed() {
    let addr = start().await;
    let ada_token = login(addr, "Ada").await;
    let mut ada = connect(addr, &ada_token).await;
    let mut bob = connect(addr, &login(addr, "Bob").await).await;
    subscribe(&mut ada, "general", None).await;
    for i in 1..=3 {
        send(&mut bob, say("general", &format!("before {i}"), None)).await;
        assert!(matches!(next(&mut bob).await, ServerEvent::Ack { .. }));
    }
    let (mut seen, mut last_seen) = (0, 0);
    while seen < 3 {
        if let ServerEvent::Message { message } = next(&mut ada).await {
            seen += 1;
            last_seen = message.change;
        }
    }
    ada.close(None).await.unwrap();

    for i in 1..=5 {
        send(&mut bob, say("general", &format!("missed {i}"), None)).await;
        assert!(matches!(next(&mut bob).await, ServerEvent::Ack { .. }));
    }
    let mut ada = connect(addr, &ada_token).await;
    let (messages, upto, reset) = subscribe(&mut ada, "general", Some(last_seen)).await;
    assert!(!reset);
    let bodies: Vec<&str> = messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(
        bodies,
        ["missed 1", "missed 2", "missed 3", "missed 4", "missed 5"]
    );
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (last_seen + 1..=last_seen + 5).collect::<Vec<_>>());
    assert_eq!(upto, last_seen + 5);
    // Caught up: asking again from there brings nothing.
    let (again, _, reset) = subscribe(&mut ada, "general", Some(upto)).await;
    assert!(again.is_empty() && !reset);
}

#[tokio::test]
async fn joining_shows_at_most_the_last_hundred() {
    let addr = start().await;
    // Three people take turns, each within the per-user rate limit.
    let mut people = Vec::new();
    for name in ["Ada", "Bob", "Cy"] {
        people.push(connect(addr, &login(addr, name).await).await);
    }
    for i in 1..=105 {
        let ws = &mut people[i % 3];
        send(ws, say("general", &format!("msg {i}"), None)).await;
        assert!(matches!(next(ws).await, ServerEvent::Ack { .. }));
    }
    let (messages, _, reset) = subscribe(&mut people[0], "general", None).await;
    assert!(reset);
    assert_eq!(messages.len(), HISTORY_WINDOW);
    assert_eq!(messages.first().unwrap().body, "msg 6");
    assert_eq!(messages.last().unwrap().body, "msg 105");
}

#[tokio::test]
async fn server_functions_create_channels_for_their_creator_and_refuse_other_sites() {
    let addr = start().await;
    let token = login(addr, "Ada").await;
    let http = reqwest::Client::new();
    let create = |name: &str, origin: Option<&str>| {
        let mut req = http
            .post(format!("http://{addr}/api/create_channel"))
            .header("cookie", format!("flack_session={token}"))
            .form(&[("name", name)]);
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        req.send()
    };

    let res = create("Design", None).await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());

    let res = create("  design ", None).await.unwrap();
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "channel_taken");

    let res = create("bad name!", None).await.unwrap();
    assert_eq!(res.status(), 422);

    let res = create("elsewhere", Some("http://evil.example"))
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let list: Value = http
        .post(format!("http://{addr}/api/list_conversations"))
        .header("cookie", format!("flack_session={token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["conversation"]["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["Design", "general"]);

    // Someone else's sidebar is not crowded by it; browsing finds it.
    let bob = login(addr, "Bob").await;
    let post = |path: &str, token: &str| {
        http.post(format!("http://{addr}/api/{path}"))
            .header("cookie", format!("flack_session={token}"))
            .send()
    };
    let list: Value = post("list_conversations", &bob)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let all: Value = post("browse_channels", &bob)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
}

#[tokio::test]
async fn pages_render_messages_as_text_and_issue_an_identity() {
    let addr = start().await;
    let token = login(addr, "<img src=x onerror=alert(1)>").await;
    let mut ws = connect(addr, &token).await;
    send(&mut ws, say("general", "<script>alert(1)</script>", None)).await;
    assert!(matches!(next(&mut ws).await, ServerEvent::Ack { .. }));

    let res = reqwest::get(format!("http://{addr}/c/general"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("flack_session=") && cookie.contains("HttpOnly"));
    // A first visit asks for a name before anything else.
    let page = res.text().await.unwrap();
    assert!(page.contains("Display name"));

    let res = reqwest::Client::new()
        .get(format!("http://{addr}/c/general"))
        .header("cookie", format!("flack_session={token}"))
        .send()
        .await
        .unwrap();
    assert!(
        res.headers().get("set-cookie").is_none(),
        "a known visitor keeps their identity"
    );
    let page = res.text().await.unwrap();
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.contains("<script>alert(1)</script>"));
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(page.contains(r#"role="log""#));
}

/// Reads events until one matches, failing after 5 s of silence.
async fn until(ws: &mut Ws, mut wanted: impl FnMut(&ServerEvent) -> bool) -> ServerEvent {
    loop {
        let event = next(ws).await;
        if wanted(&event) {
            return event;
        }
    }
}

#[tokio::test]
async fn a_resent_message_is_stored_once_and_acknowledged_again() {
    let addr = start().await;
    let token = login(addr, "Ada").await;
    let mut bob = connect(addr, &login(addr, "Bob").await).await;
    subscribe(&mut bob, "general", None).await;

    // The first connection drops right after sending: the ack is lost with it.
    let mut first = connect(addr, &token).await;
    send(&mut first, say("general", "exactly once", Some("m-1"))).await;
    drop(first);
    let ServerEvent::Message { message } = next(&mut bob).await else {
        panic!("message")
    };

    // The client does not know whether it arrived, so it sends again on a new connection.
    let mut second = connect(addr, &token).await;
    send(&mut second, say("general", "exactly once", Some("m-1"))).await;
    let ServerEvent::Ack {
        seq, message_id, ..
    } = next(&mut second).await
    else {
        panic!("ack")
    };
    assert_eq!((seq, message_id), (message.seq, message.id.clone()));

    // Nobody sees it twice, and the channel holds it once.
    send(&mut second, say("general", "next", Some("m-2"))).await;
    let ServerEvent::Message { message: next_one } = next(&mut bob).await else {
        panic!("message")
    };
    assert_eq!(next_one.body, "next");
    assert!(next_one.seq > message.seq);
    let (all, _, _) = subscribe(&mut bob, "general", None).await;
    let bodies: Vec<&str> = all.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["exactly once", "next"]);
}

#[tokio::test]
async fn a_reconnecting_client_hears_of_deletions_it_missed() {
    let addr = start().await;
    let ada_token = login(addr, "Ada").await;
    let mut ada = connect(addr, &ada_token).await;
    let mut bob = connect(addr, &login(addr, "Bob").await).await;
    subscribe(&mut bob, "general", None).await;
    let mut sent = Vec::new();
    for i in 1..=3 {
        send(&mut ada, say("general", &format!("m{i}"), None)).await;
        until(&mut ada, |e| matches!(e, ServerEvent::Ack { .. })).await;
        let ServerEvent::Message { message } = next(&mut bob).await else {
            panic!("message")
        };
        sent.push(message);
    }
    drop(bob);
    send(
        &mut ada,
        ClientEvent::Delete {
            message_id: sent[1].id.clone(),
        },
    )
    .await;
    send(&mut ada, say("general", "m4", None)).await;
    until(&mut ada, |e| matches!(e, ServerEvent::Ack { .. })).await;

    let mut bob = connect(addr, &login(addr, "Bob again").await).await;
    let (messages, _, reset) = subscribe(&mut bob, "general", Some(sent[2].change)).await;
    assert!(!reset);
    let got: Vec<(&str, &str, bool)> = messages
        .iter()
        .map(|m| (m.id.0.as_str(), m.body.as_str(), m.deleted))
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[0],
        (sent[1].id.0.as_str(), "", true),
        "the deletion, as a tombstone"
    );
    assert_eq!((got[1].1, got[1].2), ("m4", false));
}

#[tokio::test]
async fn a_flood_gets_errors_then_a_documented_close() {
    let addr = start().await;
    let mut ada = connect(addr, &login(addr, "Ada").await).await;
    for i in 0..200 {
        if ada
            .send(Frame::text(
                serde_json::to_string(&say("general", &format!("{i}"), None)).unwrap(),
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    let mut limited = 0;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(5), ada.next())
            .await
            .expect("the server answers")
        {
            Some(Ok(Frame::Text(text))) => {
                let event: ServerEvent = serde_json::from_str(text.as_str()).unwrap();
                if let ServerEvent::Error { error, .. } = event {
                    assert!(
                        matches!(error, flack::error::AppError::RateLimited { retry_after_ms } if retry_after_ms > 0)
                    );
                    limited += 1;
                }
            }
            Some(Ok(Frame::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert!(limited > 0, "the client was told before being closed");
    let frame = close.expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), flack::protocol::CLOSE_FLOOD);
    // The stored messages are the ones within the limit, nothing more.
    let mut bob = connect(addr, &login(addr, "Bob").await).await;
    let (messages, _, _) = subscribe(&mut bob, "general", None).await;
    // The default burst of 60, plus what 20/s refills while the test runs; far from 200.
    assert!(
        (60..=80).contains(&messages.len()),
        "{} stored",
        messages.len()
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_while_others_keep_up() {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let addr = start_with(Config {
        database: dir.path().join("flack.db"),
        outgoing_queue: 64,
        write_timeout_secs: 2,
        rate_limit_per_sec: 100_000,
        rate_limit_burst: 100_000,
        frame_rate_per_sec: 100_000,
        frame_burst: 100_000,
        subscribe_rate_per_sec: 100_000,
        subscribe_burst: 100_000,
        join_bytes_per_sec_per_ip: 1 << 40,
        join_bytes_burst_per_ip: 1 << 40,
        ..Config::default()
    })
    .await;
    let mut slow = connect(addr, &login(addr, "Slow").await).await;
    subscribe(&mut slow, "general", None).await;
    let mut reader = connect(addr, &login(addr, "Reader").await).await;
    subscribe(&mut reader, "general", None).await;
    let mut sender = connect(addr, &login(addr, "Sender").await).await;

    // `slow` never reads again. Big messages fill the socket buffers, then its queue.
    let body = "x".repeat(4000);
    let total = 3000u64;
    let (mut received, mut last) = (0u64, 0u64);
    for i in 0..total {
        send(&mut sender, say("general", &body, Some(&format!("b{i}")))).await;
        // The reader keeps up, in order.
        loop {
            match next(&mut reader).await {
                ServerEvent::Message { message } => {
                    received += 1;
                    assert!(message.seq > last, "in order");
                    last = message.seq;
                    break;
                }
                _ => continue,
            }
        }
    }
    assert_eq!(received, total);
    for _ in 0..total {
        until(&mut sender, |e| matches!(e, ServerEvent::Ack { .. })).await;
    }

    // The slow socket was closed by the server: reading it now ends (after what was buffered)
    // with a close or a reset instead of 3000 messages.
    let (mut delivered, mut slow_last) = (0u64, 0u64);
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match slow.next().await {
                Some(Ok(Frame::Text(text))) if text.as_str().contains(r#""type":"message""#) => {
                    if let Ok(ServerEvent::Message { message }) =
                        serde_json::from_str(text.as_str())
                    {
                        slow_last = message.change;
                    }
                    delivered += 1
                }
                Some(Ok(Frame::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("the slow socket was closed");
    assert!(delivered < total, "it was cut off, not fed everything");
    if let Some(code) = ended {
        assert_eq!(code, flack::protocol::CLOSE_SLOW_CONSUMER);
    }
    // Reconnecting, it catches up with everything it missed.
    let mut back = connect(addr, &login(addr, "Slow again").await).await;
    let (messages, _, reset) = subscribe(&mut back, "general", Some(slow_last)).await;
    assert!(!reset || messages.len() == 100);
    if !reset {
        assert_eq!(messages.len() as u64, total - delivered);
    }
}

#[tokio::test]
async fn channels_and_messages_survive_a_restart() {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let config = Config {
        database: dir.path().join("flack.db"),
        ..Config::default()
    };
    let options = leptos::config::get_configuration(None)
        .unwrap()
        .leptos_options;
    let token = {
        let state = AppState::new(config.clone(), options.clone())
            .await
            .unwrap();
        let ada = state
            .chat
            .store()
            .create_user("hash".into(), Some("Ada".into()))
            .await
            .unwrap();
        state.chat.ensure_channels(&["Ops".into()]).await.unwrap();
        let ops = state
            .chat
            .channel_named(&ada.id, "ops")
            .await
            .unwrap()
            .info
            .id;
        for i in 1..=3 {
            state
                .chat
                .post(&ada, ops, &format!("m{i}"), Some(format!("c{i}")))
                .await
                .unwrap();
        }
        "hash"
    };
    let state = AppState::new(config, options).await.unwrap();
    let user = state
        .chat
        .store()
        .user_by_token(token)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.name.as_deref(), Some("Ada"));
    let readable = state.chat.channel_named(&user.id, "OPS").await.unwrap();
    let history = state.chat.history(readable).await.unwrap();
    assert_eq!(history.conversation.name.as_deref(), Some("Ops"));
    assert!(
        history.member,
        "posting joined the channel, and that was kept"
    );
    let bodies: Vec<&str> = history.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["m1", "m2", "m3"]);
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009_and_stores_nothing() {
    let addr = start().await;
    let token = login(addr, "Ada").await;
    let mut ws = connect(addr, &token).await;
    let huge = serde_json::to_string(&say("general", &"x".repeat(70 * 1024), None)).unwrap();
    let _ = ws.send(Frame::text(huge)).await;
    let code = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Frame::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("the server closes the socket");
    assert_eq!(code, Some(1009));
    // A new connection works, and nothing was stored.
    let mut again = connect(addr, &token).await;
    assert!(subscribe(&mut again, "general", None).await.0.is_empty());
}

#[tokio::test]
async fn a_client_close_is_answered_at_once() {
    let addr = start().await;
    let mut ws = connect(addr, &login(addr, "Ada").await).await;
    subscribe(&mut ws, "general", None).await;
    ws.send(Frame::Close(None)).await.unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match ws.next().await {
                Some(Ok(Frame::Close(_))) | None => return true,
                Some(Ok(_)) => continue,
                Some(Err(_)) => return false,
            }
        }
    })
    .await;
    assert_eq!(
        answered,
        Ok(true),
        "the server completes the closing handshake"
    );
}

/// A lazy reader (4 KiB receive buffer) with `general` open, then `total` messages of 12 KB
/// (4,000 three-byte characters) through a hub that keeps only 4 frames per channel: its
/// writer blocks once the server's send buffer is full, lags, and is replayed from the store.
/// Once all are acknowledged it reads; every message must arrive exactly once and in order,
/// part live and part in replays, never in a reset. The number of replays, and the server.
async fn a_lazy_reader_catches_up_on(total: u64) -> (usize, AppState) {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let (addr, state) = common::serve_with_state(Config {
        database: dir.path().join("flack.db"),
        broadcast_capacity: 4,
        outgoing_queue: 100_000,
        outgoing_queue_bytes: 64 * 1024 * 1024,
        rate_limit_per_sec: 100_000,
        rate_limit_burst: 100_000,
        frame_rate_per_sec: 100_000,
        frame_burst: 100_000,
        subscribe_rate_per_sec: 100_000,
        subscribe_burst: 100_000,
        join_bytes_per_sec_per_ip: 1 << 40,
        join_bytes_burst_per_ip: 1 << 40,
        ..Config::default()
    })
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    let token = login(addr, "Lazy").await;
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let (mut lazy, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    assert!(matches!(next(&mut lazy).await, ServerEvent::Hello { .. }));
    subscribe(&mut lazy, "general", None).await;

    let mut sender = connect(addr, &login(addr, "Sender").await).await;
    let body = "€".repeat(4000);
    for i in 0..total {
        send(&mut sender, say("general", &body, Some(&format!("l{i}")))).await;
    }
    let mut acked = Vec::new();
    for _ in 0..total {
        if let ServerEvent::Ack { seq, .. } =
            until(&mut sender, |e| matches!(e, ServerEvent::Ack { .. })).await
        {
            acked.push(seq);
        }
    }
    let last = *acked.last().unwrap();

    let (mut seqs, mut replays) = (Vec::new(), 0);
    while seqs.last() != Some(&last) {
        match next(&mut lazy).await {
            ServerEvent::Message { message } => seqs.push(message.seq),
            ServerEvent::Subscribed {
                messages, reset, ..
            } => {
                assert!(!reset, "what the store holds is replayed, never reset");
                replays += 1;
                seqs.extend(messages.iter().map(|m| m.seq));
            }
            _ => {}
        }
    }
    assert_eq!(seqs, acked, "every message once, in order");
    (replays, state)
}

#[tokio::test]
async fn a_socket_that_falls_behind_its_channel_is_replayed_in_order() {
    // No more than one catch-up returns (1,000).
    let (replays, _) = a_lazy_reader_catches_up_on(1000).await;
    assert!(replays >= 1, "the writer fell behind and was replayed");
}

#[tokio::test]
async fn a_socket_far_behind_is_paged_through_what_it_missed_not_reset() {
    // More than one catch-up returns: the replay pages.
    let (replays, state) = a_lazy_reader_catches_up_on(2500).await;
    assert!(replays >= 1, "the writer fell behind and was replayed");
    let [lagged, _, pages, resets, _, _] = state.sockets.counters.snapshot();
    assert!(lagged >= 1 && pages >= 1, "lagged {lagged}, pages {pages}");
    assert_eq!(resets, 0);
}

#[tokio::test]
async fn anonymous_visits_store_no_user_until_a_name_is_chosen() {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let database = dir.path().join("flack.db");
    let addr = start_with(Config {
        database: database.clone(),
        ..Config::default()
    })
    .await;
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", database.display()))
        .await
        .unwrap();
    let users = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM users")
            .fetch_all(&db)
            .await
            .unwrap()[0]
    };

    // Crawlers and health checks: a cookie each, and nothing stored.
    let mut token = String::new();
    for _ in 0..3 {
        let res = reqwest::get(format!("http://{addr}/")).await.unwrap();
        assert_eq!(res.status(), 200);
        let cookie = res.headers()["set-cookie"].to_str().unwrap();
        token = cookie["flack_session=".len()..]
            .split(';')
            .next()
            .unwrap()
            .to_string();
        assert!(res.text().await.unwrap().contains("Display name"));
    }
    assert_eq!(users().await, 0);

    // The same browser comes back (no new cookie), then chooses a name: now it is stored.
    let http = reqwest::Client::new();
    let res = http
        .get(format!("http://{addr}/"))
        .header("cookie", format!("flack_session={token}"))
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("set-cookie").is_none());
    let res = http
        .post(format!("http://{addr}/api/set_display_name"))
        .header("cookie", format!("flack_session={token}"))
        .form(&[("name", "Zoe")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let zoe: flack::protocol::UserInfo = res.json().await.unwrap();
    assert_eq!(zoe.name.as_deref(), Some("Zoe"));
    assert_eq!(users().await, 1);

    // It is the same user on the page and on the socket.
    let page = http
        .get(format!("http://{addr}/c/general"))
        .header("cookie", format!("flack_session={token}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Zoe") && page.contains(&zoe.id.tag()));
    let mut ws = connect_with(addr, Some(&token), None).await.unwrap();
    match next(&mut ws).await {
        ServerEvent::Hello { user } => assert_eq!(user, zoe),
        other => panic!("expected hello, got {other:?}"),
    }
    assert_eq!(users().await, 1);
}
