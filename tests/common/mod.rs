//! What the integration tests share: Flack in this process on port 0, and a bot's login.
// Each test file uses a different part of this module.
#![allow(dead_code)]

use flack::server::config::Config;
use flack::server::{router, serve::serve as serve_http, state::AppState};
use std::net::SocketAddr;

/// Serves Flack with `config` on a free loopback port; its address.
pub async fn serve(config: Config) -> SocketAddr {
    serve_with_state(config).await.0
}

/// Serves Flack with `config` on a free loopback port (through the real accept loop, with
/// its caps and timeouts); its address and its state, to look at what the server holds.
pub async fn serve_with_state(mut config: Config) -> (SocketAddr, AppState) {
    let options = leptos::config::get_configuration(None)
        .unwrap()
        .leptos_options;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    config.address = addr;
    let state = AppState::new(config, options).await.unwrap();
    let app = router(state.clone());
    tokio::spawn(serve_http(
        listener,
        state.clone(),
        app,
        std::future::pending(),
    ));
    (addr, state)
}

/// A named identity, as a bot gets it (`POST /auth/session`); its token.
pub async fn login(addr: SocketAddr, name: &str) -> String {
    let res = reqwest::Client::new()
        .post(format!("http://{addr}/auth/session"))
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["user"]["name"], name);
    body["token"].as_str().unwrap().to_string()
}
pub mod cluster;
