//! Crash safety: the real server binary on a SQLite file takes messages from several clients
//! at once, is killed with SIGKILL in the middle, and restarts on the same file. Every message
//! it acknowledged must be there exactly once, with the sequence number it acknowledged, and
//! re-sending the unacknowledged ones must not duplicate any.
#![cfg(feature = "ssr")]

mod common;

use flack::protocol::{ClientEvent, ConversationHistory, ServerEvent};
use futures_util::{SinkExt, StreamExt};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as Frame;

const CLIENTS: usize = 5;
const PER_CLIENT: usize = 2000;
/// Kill once this many acknowledgements have come back (so the kill lands mid-stream).
const KILL_AFTER_ACKS: usize = 1500;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(db: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_flack"))
        .env("FLACK_DATABASE", db)
        .env("FLACK_ADDRESS", format!("127.0.0.1:{port}"))
        .env("FLACK_RATE_LIMIT_PER_SEC", "1000000")
        .env("FLACK_RATE_LIMIT_BURST", "1000000")
        .env("FLACK_FRAME_RATE_PER_SEC", "1000000")
        .env("FLACK_FRAME_BURST", "1000000")
        .env("FLACK_SUBSCRIBE_RATE_PER_SEC", "1000000")
        .env("FLACK_SUBSCRIBE_BURST", "1000000")
        .env("FLACK_JOIN_BYTES_PER_SEC_PER_IP", "1000000000000")
        .env("FLACK_JOIN_BYTES_BURST_PER_IP", "1000000000000")
        .env("FLACK_LOG", "warn")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .spawn()
        .expect("the flack binary starts")
}

async fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn login(port: u16, name: &str) -> String {
    common::login(([127, 0, 0, 1], port).into(), name).await
}

type Acks = Arc<Mutex<HashMap<String, u64>>>;

/// Sends `ids` as fast as the socket takes them, recording acknowledgements, until done or
/// the connection breaks.
async fn send_all(port: u16, token: String, ids: Vec<String>, acks: Acks) {
    let mut req = format!("ws://127.0.0.1:{port}/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let Ok((ws, _)) = tokio_tungstenite::connect_async(req).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let expected = ids.len();
    let reader = {
        let acks = acks.clone();
        tokio::spawn(async move {
            let mut seen = 0;
            while let Some(Ok(frame)) = stream.next().await {
                let Frame::Text(text) = frame else { continue };
                if let Ok(ServerEvent::Ack {
                    client_id: Some(id),
                    seq,
                    ..
                }) = serde_json::from_str(text.as_str())
                {
                    acks.lock().unwrap().insert(id, seq);
                    seen += 1;
                    if seen == expected {
                        break;
                    }
                }
            }
        })
    };
    for id in ids {
        let event = ClientEvent::Send {
            conversation: None,
            channel: Some("general".into()),
            body: format!("body of {id}"),
            client_id: Some(id),
        };
        if sink
            .send(Frame::text(serde_json::to_string(&event).unwrap()))
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), reader).await;
}

/// Every message in #general, oldest first, paging back through the whole history.
async fn everything(port: u16, token: &str) -> Vec<flack::protocol::Message> {
    let http = reqwest::Client::new();
    let call = |endpoint: &str, form: Vec<(&'static str, String)>| {
        http.post(format!("http://127.0.0.1:{port}/api/{endpoint}"))
            .bearer_auth(token)
            .form(&form)
            .send()
    };
    let latest: ConversationHistory = call("get_channel", vec![("channel", "general".into())])
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = latest.conversation.id.0.to_string();
    let mut all = latest.messages;
    while let Some(first) = all.first().map(|m| m.seq) {
        let page: ConversationHistory = call(
            "get_older",
            vec![
                ("conversation", id.clone()),
                ("before_seq", first.to_string()),
            ],
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        if page.messages.is_empty() {
            break;
        }
        all.splice(0..0, page.messages);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flack.db");
    let port = free_port();
    let mut server = start(&db, port);
    wait_ready(port).await;

    let mut tokens = Vec::new();
    for c in 0..CLIENTS {
        tokens.push(login(port, &format!("sender {c}")).await);
    }
    let ids = |c: usize| {
        (0..PER_CLIENT)
            .map(|i| format!("c{c}-{i}"))
            .collect::<Vec<_>>()
    };
    let acks: Acks = Arc::default();
    let mut senders = Vec::new();
    for (c, token) in tokens.iter().enumerate() {
        senders.push(tokio::spawn(send_all(
            port,
            token.clone(),
            ids(c),
            acks.clone(),
        )));
    }

    // Kill it mid-stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acks.lock().unwrap().len() < KILL_AFTER_ACKS {
        assert!(
            Instant::now() < deadline,
            "too few acknowledgements before the kill"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().expect("SIGKILL");
    server.wait().unwrap();
    for sender in senders {
        sender.await.unwrap();
    }
    let acked: HashMap<String, u64> = acks.lock().unwrap().clone();
    assert!(
        acked.len() < CLIENTS * PER_CLIENT,
        "the kill came before everything was acknowledged"
    );

    let mut server = start(&db, port);
    wait_ready(port).await;
    let found = everything(port, &tokens[0]).await;

    // Increasing sequence numbers (the change numbers they were created with: the senders'
    // joins took five more), each client id once, every acknowledgement honoured.
    let seqs: Vec<u64> = found.iter().map(|m| m.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order, no repeats");
    assert!(*seqs.last().unwrap() <= found.len() as u64 + CLIENTS as u64);
    let by_id: HashMap<String, u64> = found
        .iter()
        .map(|m| (m.client_id.clone().expect("client id kept"), m.seq))
        .collect();
    assert_eq!(by_id.len(), found.len(), "no client id stored twice");
    for (id, seq) in &acked {
        assert_eq!(
            by_id.get(id),
            Some(seq),
            "acknowledged {id} is stored as seq {seq}"
        );
    }

    // The clients re-send everything they were not sure of; nothing is doubled.
    let fresh_acks: Acks = Arc::default();
    let mut senders = Vec::new();
    for (c, token) in tokens.iter().enumerate() {
        let unsure: Vec<String> = ids(c)
            .into_iter()
            .filter(|id| !acked.contains_key(id))
            .collect();
        senders.push(tokio::spawn(send_all(
            port,
            token.clone(),
            unsure,
            fresh_acks.clone(),
        )));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let after = everything(port, &tokens[0]).await;
    let ids_after: HashSet<String> = after.iter().filter_map(|m| m.client_id.clone()).collect();
    assert_eq!(ids_after.len(), after.len(), "re-sends were not doubled");
    assert_eq!(
        after.len(),
        CLIENTS * PER_CLIENT,
        "every message is stored once"
    );
    for (id, seq) in by_id {
        let now = after
            .iter()
            .find(|m| m.client_id.as_deref() == Some(&id))
            .map(|m| m.seq);
        assert_eq!(now, Some(seq), "{id} kept its sequence number");
    }
    println!(
        "crash test: {} messages streaming from 5 clients, {} acknowledged before SIGKILL, {} found after restart \
         (every acknowledged one exactly once, with its seq); after re-sending: {} stored, no duplicates",
        CLIENTS * PER_CLIENT,
        acked.len(),
        found.len(),
        after.len()
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
