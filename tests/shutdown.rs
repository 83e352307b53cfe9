//! Graceful shutdown: the real server binary, told to stop with SIGTERM while a WebSocket is
//! open, closes that socket with 1012 ("service restart"), exits 0 within its drain time, and
//! what it acknowledged before the signal is there after a restart on the same file.
#![cfg(feature = "ssr")]

mod common;

use flack::protocol::{ClientEvent, ConversationHistory, ServerEvent, CLOSE_SERVICE_RESTART};
use futures_util::{SinkExt, StreamExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as Frame;

/// The drain the server is given; it must be gone well within it (plus start-up slack).
const DRAIN_SECS: u64 = 5;

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
        .env("FLACK_SHUTDOWN_DRAIN_SECS", DRAIN_SECS.to_string())
        .env("FLACK_LOG", "warn")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .spawn()
        .expect("the flack binary starts")
}

async fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(Instant::now() < deadline, "server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the process to end, for at most `within`; its exit status.
async fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the server did not exit within {within:?} of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_with_1012_and_exits_0_keeping_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flack.db");
    let port = free_port();
    let mut server = start(&db, port);
    wait_ready(port).await;
    let token = common::login(([127, 0, 0, 1], port).into(), "before the restart").await;

    let mut req = format!("ws://127.0.0.1:{port}/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let next_event = |frame: Frame| match frame {
        Frame::Text(text) => serde_json::from_str::<ServerEvent>(text.as_str()).ok(),
        _ => None,
    };
    let first = ws.next().await.unwrap().unwrap();
    assert!(
        matches!(next_event(first), Some(ServerEvent::Hello { .. })),
        "the first frame is hello"
    );

    // One message, acknowledged (so committed) before the signal.
    let send = ClientEvent::Send {
        conversation: None,
        channel: Some("general".into()),
        body: "said just before the restart".into(),
        client_id: Some("before-sigterm".into()),
    };
    ws.send(Frame::text(serde_json::to_string(&send).unwrap()))
        .await
        .unwrap();
    let acked_seq = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let frame = ws.next().await.expect("socket open").expect("a frame");
            if let Some(ServerEvent::Ack {
                client_id: Some(id),
                seq,
                ..
            }) = next_event(frame)
            {
                assert_eq!(id, "before-sigterm");
                return seq;
            }
        }
    })
    .await
    .expect("the send is acknowledged");

    let signalled = Instant::now();
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(server.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success(), "kill -TERM");

    // The socket is told why it closes: a restart (the browser reconnects at once).
    let close = tokio::time::timeout(Duration::from_secs(DRAIN_SECS), async {
        loop {
            match ws.next().await {
                Some(Ok(Frame::Close(close))) => return close,
                Some(Ok(_)) => continue,
                other => panic!("the socket ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("a close frame within the drain time")
    .expect("the close frame has a code");
    assert_eq!(u16::from(close.code), CLOSE_SERVICE_RESTART);
    assert!(!close.reason.is_empty(), "the close says why");
    // Complete the closing handshake, as a browser does.
    let _ = ws.close(None).await;
    drop(ws);

    let status = wait_exit(&mut server, Duration::from_secs(DRAIN_SECS + 5)).await;
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        signalled.elapsed() < Duration::from_secs(DRAIN_SECS + 1),
        "drained within the drain time, took {:?}",
        signalled.elapsed()
    );

    // Restarted on the same file, the acknowledged message is there, with its seq.
    let mut server = start(&db, port);
    wait_ready(port).await;
    let history: ConversationHistory = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/get_channel"))
        .bearer_auth(&token)
        .form(&[("channel", "general")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kept = history
        .messages
        .iter()
        .find(|m| m.client_id.as_deref() == Some("before-sigterm"))
        .expect("the acknowledged message survived the restart");
    assert_eq!(kept.seq, acked_seq);
    assert_eq!(kept.body, "said just before the restart");

    // A second, quiet stop: nothing open, so it is quick too.
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(server.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let quiet = Instant::now();
    let status = wait_exit(&mut server, Duration::from_secs(DRAIN_SECS + 5)).await;
    assert!(status.success(), "exit status of an idle server: {status}");
    assert!(
        quiet.elapsed() < Duration::from_secs(2),
        "an idle server stops at once, took {:?}",
        quiet.elapsed()
    );
}
