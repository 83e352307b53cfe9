//! What an operator's monitoring reads: health, readiness and metrics, without an identity
//! and whatever the `Host`, and metrics that move with what the server does.

mod common;

use flack::server::config::Config;
use futures_util::StreamExt;
use std::net::SocketAddr;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

fn config() -> Config {
    Config {
        store: flack::server::config::StoreKind::Memory,
        ..Config::default()
    }
}

/// A metric's value in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
        .parse()
        .unwrap()
}

async fn get(addr: SocketAddr, path: &str, host: &str) -> (u16, String, Option<String>) {
    let res = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .header("host", host)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let cookie = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    (status, res.text().await.unwrap(), cookie)
}

#[tokio::test]
async fn probes_answer_without_an_identity_whatever_the_host() {
    let mut config = config();
    config.public_url = "https://chat.example.com".into();
    let addr = common::serve(config).await;
    // The app's own pages refuse a host that is not the site's...
    let (status, _, _) = get(addr, "/", "10.0.0.5:3000").await;
    assert_eq!(status, 421);
    // ...a load balancer's probes, by address, are answered, and make no identity.
    for (path, body) in [("/healthz", "ok\n"), ("/readyz", "ready\n")] {
        let (status, text, cookie) = get(addr, path, "10.0.0.5:3000").await;
        assert_eq!((status, text.as_str()), (200, body), "{path}");
        assert_eq!(cookie, None, "{path} set a cookie");
    }
    let (status, text, cookie) = get(addr, "/metrics", "10.0.0.5:3000").await;
    assert_eq!(status, 200);
    assert_eq!(cookie, None);
    assert!(text.contains("# TYPE flack_posts_total counter"), "{text}");
}

#[tokio::test]
async fn metrics_follow_what_the_server_does() {
    let addr = common::serve(config()).await;
    let host = addr.to_string();
    let before = get(addr, "/metrics", &host).await.1;
    assert_eq!(metric(&before, "flack_posts_total"), 0.0);
    assert_eq!(metric(&before, "flack_sockets_open"), 0.0);

    let token = common::login(addr, "Ada").await;
    let http = reqwest::Client::new();
    let channel: serde_json::Value = http
        .post(format!("http://{addr}/api/get_channel"))
        .bearer_auth(&token)
        .form(&[("channel", "general")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = channel["conversation"]["id"].as_u64().unwrap().to_string();
    for body in ["one", "two", "three"] {
        let res = http
            .post(format!("http://{addr}/api/post_message"))
            .bearer_auth(&token)
            .form(&[("conversation", id.as_str()), ("body", body)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    // The hello: the socket is registered by then.
    let hello = ws.next().await.unwrap().unwrap();
    assert!(hello.to_text().unwrap().contains("\"hello\""), "{hello:?}");

    let after = get(addr, "/metrics", &host).await.1;
    assert_eq!(metric(&after, "flack_posts_total"), 3.0);
    let batches = metric(&after, "flack_post_batches_total");
    assert!((1.0..=3.0).contains(&batches), "{batches} batches");
    assert!(
        metric(&after, "flack_other_writes_total") >= 1.0,
        "joining general"
    );
    assert!(metric(&after, "flack_store_write_seconds_total") > 0.0);
    assert_eq!(metric(&after, "flack_sockets_open"), 1.0);
    assert!(metric(&after, "flack_connections_open") >= 1.0);
    drop(ws);
}
