//! A hostile visitor against the real router and accept loop on port 0: each attack of the
//! hardening issue, with assertions on what the server holds (topics, queued bytes, cached
//! windows and users, open connections, rows) rather than on the process's memory. Attackers
//! connect from 127.0.0.2, normal users from 127.0.0.1, so per-address limits can be told
//! apart on one machine.
#![cfg(feature = "ssr")]

mod common;

use flack::protocol::{ClientEvent, ServerEvent, CLOSE_FLOOD, CLOSE_SIGNED_OUT};
use flack::server::config::Config;
use flack::server::state::AppState;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::WebSocketStream;

const ATTACKER: &str = "127.0.0.2";

type Ws = WebSocketStream<TcpStream>;

fn config() -> Config {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    Config {
        database: dir.path().join("flack.db"),
        ..Config::default()
    }
}

/// A TCP connection to `addr` from `from`.
async fn tcp_from(from: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.parse().unwrap(), 0))?;
    socket.connect(addr).await
}

/// A WebSocket to `addr` from `from` with `token`; its hello read.
async fn ws_from(from: &str, addr: SocketAddr, token: &str) -> Ws {
    let tcp = tcp_from(from, addr).await.unwrap();
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    assert!(matches!(
        next(&mut ws).await,
        Some(ServerEvent::Hello { .. })
    ));
    ws
}

/// The next event, or `None` once the socket closed.
async fn next(ws: &mut Ws) -> Option<ServerEvent> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer within 10 s")?;
        match frame {
            Ok(Frame::Text(text)) => return Some(serde_json::from_str(text.as_str()).unwrap()),
            Ok(Frame::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Reads until the server closes; the close code.
async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("closed within 10 s")
        {
            Some(Ok(Frame::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}

async fn send(ws: &mut Ws, event: &ClientEvent) -> bool {
    ws.send(Frame::text(serde_json::to_string(event).unwrap()))
        .await
        .is_ok()
}

/// A bot identity from `from` (`POST /auth/session`): its token, or the refusal's status.
async fn login_from(from: &str, addr: SocketAddr, name: &str) -> Result<String, u16> {
    let http = reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    let res = http
        .post(format!("http://{addr}/auth/session"))
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await
        .unwrap();
    if res.status() != 200 {
        return Err(res.status().as_u16());
    }
    let body: Value = res.json().await.unwrap();
    Ok(body["token"].as_str().unwrap().to_string())
}

fn subscribe(channel: &str) -> ClientEvent {
    ClientEvent::Subscribe {
        conversation: None,
        channel: Some(channel.into()),
        after_change: None,
    }
}

/// A fresh browser still gets the page and an identity.
async fn a_fresh_browser_is_served(addr: SocketAddr) {
    let res = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("set-cookie").is_some());
}

async fn raised(config: Config) -> (SocketAddr, AppState) {
    common::serve_with_state(Config {
        frame_rate_per_sec: 100_000,
        frame_burst: 100_000,
        subscribe_rate_per_sec: 100_000,
        subscribe_burst: 100_000,
        join_bytes_per_sec_per_ip: 1 << 40,
        join_bytes_burst_per_ip: 1 << 40,
        rate_limit_per_sec: 100_000,
        rate_limit_burst: 100_000,
        flood_strikes: 1_000_000,
        ..config
    })
    .await
}

/// 1. Subscribing to channels that do not exist creates nothing in the hub.
#[tokio::test]
async fn subscribing_to_made_up_channels_holds_nothing() {
    let (addr, state) = raised(config()).await;
    let token = login_from(ATTACKER, addr, "Mallory").await.unwrap();
    let mut ws = ws_from(ATTACKER, addr, &token).await;
    for i in 0..3000 {
        assert!(send(&mut ws, &subscribe(&format!("nope-{i}"))).await);
    }
    let mut refused = 0;
    while refused < 3000 {
        match next(&mut ws).await {
            Some(ServerEvent::Error { .. }) => refused += 1,
            Some(other) => panic!("unexpected {other:?}"),
            None => break,
        }
    }
    assert_eq!(refused, 3000);
    assert_eq!(
        state.chat.hub().topic_count(),
        1,
        "no topic for a made-up name: only the socket's own stream"
    );
    // With the default budget the same flood is cut off (strikes), having held nothing.
    let (addr, state) = common::serve_with_state(config()).await;
    let token = login_from(ATTACKER, addr, "Mallory").await.unwrap();
    let mut ws = ws_from(ATTACKER, addr, &token).await;
    for i in 0..1000 {
        if !send(&mut ws, &subscribe(&format!("nope-{i}"))).await {
            break;
        }
    }
    assert_eq!(close_code(&mut ws).await, Some(CLOSE_FLOOD));
    // At most the closed socket's own stream, until the next sweep.
    assert!(state.chat.hub().topic_count() <= 1);
    a_fresh_browser_is_served(addr).await;
}

/// 2. A client that subscribes again and again and never reads holds one window at most.
#[tokio::test]
async fn a_client_that_never_reads_holds_a_bounded_number_of_bytes() {
    let cap = 3 * 1024 * 1024;
    let (addr, state) = raised(Config {
        outgoing_queue_bytes: cap,
        ..config()
    })
    .await;
    // 100 messages of 4,000 control characters: about 2.4 MB as JSON.
    let filler = login_from("127.0.0.1", addr, "Filler").await.unwrap();
    let mut ws = ws_from("127.0.0.1", addr, &filler).await;
    let body = "\u{1}".repeat(4000);
    for i in 0..100 {
        let event = ClientEvent::Send {
            conversation: None,
            channel: Some("general".into()),
            body: body.clone(),
            client_id: Some(format!("f{i}")),
        };
        assert!(send(&mut ws, &event).await);
    }
    let mut acks = 0;
    while acks < 100 {
        if let Some(ServerEvent::Ack { .. }) = next(&mut ws).await {
            acks += 1;
        }
    }
    // The attacker: a tiny receive buffer, 400 subscribes, never a read.
    let token = login_from(ATTACKER, addr, "Mallory").await.unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .bind(SocketAddr::new(ATTACKER.parse().unwrap(), 0))
        .unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let (mut attacker, _) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    let mut peak = 0;
    for _ in 0..400 {
        if !send(&mut attacker, &subscribe("general")).await {
            break;
        }
        peak = peak.max(state.sockets.queued_bytes_now());
    }
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        peak = peak.max(state.sockets.queued_bytes_now());
    }

    assert!(peak <= cap, "queued {peak} bytes, cap {cap}");
    // A normal reader still gets the channel.
    let mut ok = ws_from("127.0.0.1", addr, &filler).await;
    assert!(send(&mut ok, &subscribe("general")).await);
    assert!(matches!(
        next(&mut ok).await,
        Some(ServerEvent::Subscribed { messages, .. }) if messages.len() == 100
    ));
    drop(attacker);
}

/// 3. Idle, slow-header and slow-body connections are capped per address and timed out.
#[tokio::test]
async fn slow_and_idle_connections_are_capped_and_timed_out() {
    let (addr, state) = common::serve_with_state(Config {
        max_connections_per_ip: 8,
        header_timeout_secs: 1,
        body_timeout_secs: 1,
        ..config()
    })
    .await;
    let attacker: IpAddr = ATTACKER.parse().unwrap();
    let mut held = Vec::new();
    for i in 0..60 {
        if let Ok(mut tcp) = tcp_from(ATTACKER, addr).await {
            match i % 3 {
                // Slow headers: a few bytes, then nothing.
                0 => {
                    let _ = tcp.write_all(b"GET / HTTP/1.1\r\nHost: 127").await;
                }
                // A slow body: complete headers, a promise of 100,000 bytes, one sent.
                1 => {
                    let head = format!(
                        "POST /api/set_display_name HTTP/1.1\r\nHost: {addr}\r\n\
                         Content-Type: application/x-www-form-urlencoded\r\n\
                         Content-Length: 60000\r\n\r\nn"
                    );
                    let _ = tcp.write_all(head.as_bytes()).await;
                }
                // Idle.
                _ => {}
            }
            held.push(tcp);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        state.connections.open_from(attacker) <= 8,
        "capped per address"
    );
    // Someone else is served meanwhile.
    a_fresh_browser_is_served(addr).await;
    // Every attacking connection is closed by the timeouts.
    let deadline = Instant::now() + Duration::from_secs(6);
    while state.connections.open_from(attacker) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state.connections.open_from(attacker), 0);
    for mut tcp in held {
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(_)) | Ok(Err(_))),
            "the server ended the connection"
        );
    }
}

/// 4. Channels: a display name first, a budget per address, a cap in total; the page does
/// not grow with the channels strangers create.
#[tokio::test]
async fn channel_creation_is_budgeted_and_the_page_does_not_grow_with_it() {
    let (addr, _state) = common::serve_with_state(Config {
        new_channels_burst: 200,
        new_channels_per_hour: 1,
        ..config()
    })
    .await;
    let http = |from: &str| {
        reqwest::Client::builder()
            .local_address(from.parse::<IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let create = |client: reqwest::Client, cookie: String, name: String| async move {
        client
            .post(format!("http://{addr}/api/create_channel"))
            .header("cookie", cookie)
            .form(&[("name", name)])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    // A nameless visitor may not create one.
    let res = reqwest::get(format!("http://{addr}/")).await.unwrap();
    let anon = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(create(http(ATTACKER), anon, "spam".into()).await, 428);

    let ada = login_from("127.0.0.1", addr, "Ada").await.unwrap();
    let page = || async {
        reqwest::Client::new()
            .get(format!("http://{addr}/c/general"))
            .header("cookie", format!("flack_session={ada}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .len()
    };
    // The first visit joins the default channel (its page then offers "Leave"): measure after.
    page().await;
    let before = page().await;
    let mallory = format!(
        "flack_session={}",
        login_from(ATTACKER, addr, "Mallory").await.unwrap()
    );
    let mut made = 0;
    let mut refused = 0;
    for i in 0..260 {
        match create(http(ATTACKER), mallory.clone(), format!("spam-{i}")).await {
            200 | 302 => made += 1,
            429 => refused += 1,
            other => panic!("status {other}"),
        }
    }
    assert_eq!(made, 200, "the burst, then the hourly rate");
    assert_eq!(refused, 60);
    let after = page().await;
    assert!(
        after <= before + 64,
        "Ada's page grew from {before} to {after} bytes"
    );
}

/// 5. Shared join answers stay within their byte budget, whatever was written: every join
/// still gets its whole window, read from the store when it is not cached.
#[tokio::test]
async fn join_answers_are_a_bounded_cache() {
    let budget = 1024 * 1024;
    let (addr, state) = raised(Config {
        join_cache_bytes: budget,
        new_channels_burst: 1000,
        ..config()
    })
    .await;
    let token = login_from("127.0.0.1", addr, "Ada").await.unwrap();
    let user = state
        .chat
        .store()
        .user_by_token(&flack::server::identity::hash_token(&token))
        .await
        .unwrap()
        .unwrap();
    let body = "x".repeat(4000);
    let mut channels = Vec::new();
    for c in 0..12 {
        let name = format!("big{c}");
        state
            .chat
            .ensure_channels(std::slice::from_ref(&name))
            .await
            .unwrap();
        let info = state
            .chat
            .channel_named(&user.id, &name)
            .await
            .unwrap()
            .info;
        for i in 0..100 {
            state
                .chat
                .post(&user, info.id, &body, Some(format!("{c}-{i}")))
                .await
                .unwrap();
        }
        let joined = state.chat.join_answer(&info, None).await.unwrap();
        assert!(
            joined.text.len() > 400_000,
            "a whole window of big messages"
        );
        assert!(
            state.chat.join_cache_bytes() <= budget,
            "{}",
            state.chat.join_cache_bytes()
        );
        channels.push(info);
    }
    for info in &channels {
        let joined = state.chat.join_answer(info, None).await.unwrap();
        let event: ServerEvent = serde_json::from_str(joined.text.as_str()).unwrap();
        let ServerEvent::Subscribed { messages, .. } = event else {
            panic!("subscribed")
        };
        assert_eq!(messages.len(), 100);
        assert!(state.chat.join_cache_bytes() <= budget);
    }
}

/// 6. New identities are budgeted per address; cached users are bounded.
#[tokio::test]
async fn identities_are_budgeted_and_users_are_a_bounded_cache() {
    let (addr, state) = common::serve_with_state(Config {
        new_identities_burst: 5,
        user_cache_entries: 3,
        ..config()
    })
    .await;
    let mut made = 0;
    for i in 0..20 {
        match login_from(ATTACKER, addr, &format!("bot{i}")).await {
            Ok(_) => made += 1,
            Err(status) => assert_eq!(status, 429),
        }
    }
    assert_eq!(made, 5);
    // A browser choosing its first name spends the same budget.
    let http = reqwest::Client::builder()
        .local_address(ATTACKER.parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    let res = http.get(format!("http://{addr}/")).send().await.unwrap();
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let res = http
        .post(format!("http://{addr}/api/set_display_name"))
        .header("cookie", cookie)
        .form(&[("name", "Zed")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    // Someone at another address is not held back.
    assert!(login_from("127.0.0.1", addr, "Ada").await.is_ok());
    assert!(state.chat.store().memory_usage().users <= 3);
}

/// 7. A token the server did not issue never becomes an identity.
#[tokio::test]
async fn chosen_tokens_are_replaced_by_fresh_identities() {
    let (addr, _) = common::serve_with_state(config()).await;
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for token in ["a", "", &"0".repeat(64), &"ab".repeat(32)] {
        for _ in 0..2 {
            let res = http
                .post(format!("http://{addr}/api/get_me"))
                .header("cookie", format!("flack_session={token}"))
                .send()
                .await
                .unwrap();
            let fresh = res.headers()["set-cookie"].to_str().unwrap().to_string();
            assert!(!fresh.starts_with(&format!("flack_session={token};")));
            let me: Value = res.json().await.unwrap();
            ids.push(me["id"].as_str().unwrap().to_string());
        }
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        ids.len(),
        "every request got a new identity: {ids:?}"
    );
}

/// 8. Requests for another host are refused; origins are compared with their scheme.
#[tokio::test]
async fn other_hosts_and_origins_are_refused() {
    let (addr, _) = common::serve_with_state(config()).await;
    let http = reqwest::Client::new();
    let res = http
        .get(format!("http://{addr}/c/general"))
        .header("host", "attacker.example")
        .header("origin", "http://attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 421);
    let res = http
        .post(format!("http://{addr}/api/create_channel"))
        .header("origin", format!("https://{addr}"))
        .form(&[("name", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "https is not this http site");
    let token = login_from("127.0.0.1", addr, "Ada").await.unwrap();
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("host", HeaderValue::from_static("attacker.example"));
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
}

/// 9a. Deletions and bad frames spend the socket's budget; a flood is closed after the acks
/// of what was committed.
#[tokio::test]
async fn floods_of_any_frame_are_closed_and_committed_sends_are_acknowledged() {
    let (addr, state) = common::serve_with_state(Config {
        rate_limit_burst: 30,
        rate_limit_per_sec: 1,
        flood_strikes: 5,
        ..config()
    })
    .await;
    let token = login_from("127.0.0.1", addr, "Ada").await.unwrap();
    let mut ws = ws_from("127.0.0.1", addr, &token).await;
    for i in 0..60 {
        let event = ClientEvent::Send {
            conversation: None,
            channel: Some("general".into()),
            body: format!("m{i}"),
            client_id: Some(format!("c{i}")),
        };
        if !send(&mut ws, &event).await {
            break;
        }
    }
    let mut acked = 0;
    loop {
        match next(&mut ws).await {
            Some(ServerEvent::Ack { .. }) => acked += 1,
            Some(_) => {}
            None => break,
        }
    }
    let ada = state
        .chat
        .store()
        .user_by_token(&flack::server::identity::hash_token(&token))
        .await
        .unwrap()
        .unwrap();
    let general = state.chat.channel_named(&ada.id, "general").await.unwrap();
    let stored = state.chat.history(general).await.unwrap().messages.len();
    assert_eq!(acked, stored, "every stored message was acknowledged");
    assert!(stored >= 30);

    // Deletions of made-up ids and malformed frames: refused, then closed.
    let token = login_from("127.0.0.1", addr, "Bob").await.unwrap();
    let mut ws = ws_from("127.0.0.1", addr, &token).await;
    for i in 0..300 {
        let frame = if i % 2 == 0 {
            serde_json::to_string(&ClientEvent::Delete {
                message_id: flack::protocol::MessageId(format!("nope{i}")),
            })
            .unwrap()
        } else {
            "{not json".to_string()
        };
        if ws.send(Frame::text(frame)).await.is_err() {
            break;
        }
    }
    assert_eq!(close_code(&mut ws).await, Some(CLOSE_FLOOD));
}

/// 9b. Clear answers: bad arguments and oversized bodies get fixed codes, a crafted error
/// link shows no words of its own, every response carries the security headers.
#[tokio::test]
async fn bad_requests_get_fixed_codes_and_pages_carry_security_headers() {
    let (addr, _) = common::serve_with_state(config()).await;
    let token = login_from("127.0.0.1", addr, "Ada").await.unwrap();
    let http = reqwest::Client::new();
    let res = http
        .post(format!("http://{addr}/api/get_older"))
        .header("cookie", format!("flack_session={token}"))
        .form(&[("channel", "general"), ("before_seq", "not a number")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"code": "bad_request"}));

    let res = http
        .post(format!("http://{addr}/api/post_message"))
        .header("cookie", format!("flack_session={token}"))
        .form(&[("channel", "general"), ("body", &"x".repeat(100_000))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "body_too_large");

    use base64::Engine as _;
    let crafted = base64::engine::general_purpose::URL_SAFE
        .encode(r#"{"code":"internal","detail":"Your account is locked; call 555 0100"}"#);
    let res = http
        .get(format!(
            "http://{addr}/?__path=%2Fapi%2Fset_display_name&__err={crafted}"
        ))
        .send()
        .await
        .unwrap();
    let headers = res.headers().clone();
    let page = res.text().await.unwrap();
    assert!(
        !page.contains("555 0100"),
        "the crafted words are not on the page"
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("'nonce-") && csp.contains("frame-ancestors 'none'"));
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    assert!(
        page.contains(&format!("nonce=\"{nonce}\"")),
        "inline scripts carry the nonce"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers.contains_key("referrer-policy"));
}

/// 9c. Names refuse reordering and invisible characters, bodies refuse NUL.
#[tokio::test]
async fn hostile_names_and_bodies_are_refused() {
    let (addr, _) = common::serve_with_state(config()).await;
    for name in ["Ada\u{202E}nimda", "\u{200B}\u{200B}", "\u{3164}"] {
        assert_eq!(
            login_from("127.0.0.1", addr, name).await,
            Err(422),
            "{name:?}"
        );
    }
    let token = login_from("127.0.0.1", addr, "Ada").await.unwrap();
    let mut ws = ws_from("127.0.0.1", addr, &token).await;
    let event = ClientEvent::Send {
        conversation: None,
        channel: Some("general".into()),
        body: "a\0b".into(),
        client_id: None,
    };
    assert!(send(&mut ws, &event).await);
    match next(&mut ws).await {
        Some(ServerEvent::Error { error, .. }) => {
            assert_eq!(error, flack::error::AppError::MessageHasNul)
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Sign out: the token is revoked, its sockets are closed, and it never works again.
#[tokio::test]
async fn signing_out_revokes_the_token_and_closes_its_sockets() {
    let (addr, state) = common::serve_with_state(config()).await;
    let token = login_from("127.0.0.1", addr, "Ada").await.unwrap();
    let mut ws = ws_from("127.0.0.1", addr, &token).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = http
        .post(format!("http://{addr}/auth/sign_out"))
        .header("cookie", format!("flack_session={token}"))
        .header("origin", format!("http://{addr}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(close_code(&mut ws).await, Some(CLOSE_SIGNED_OUT));
    assert_eq!(state.sockets.open(), 0);
    // The old token is a stranger now: a fresh identity, not Ada.
    let me: Value = http
        .post(format!("http://{addr}/api/get_me"))
        .header("cookie", format!("flack_session={token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(me["name"].is_null(), "{me}");
}
