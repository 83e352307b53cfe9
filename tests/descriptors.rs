//! Running out of file descriptors: the real server binary under a small descriptor limit,
//! more idle connections than it can hold. The accept loop must survive the failed accepts,
//! the header timeout must close the idle sockets, and a normal request must then be served.
#![cfg(feature = "ssr")]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::{TcpSocket, TcpStream};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn idle_from(from: &str, addr: SocketAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::new(from.parse().ok()?, 0)).ok()?;
    tokio::time::timeout(Duration::from_secs(2), socket.connect(addr))
        .await
        .ok()?
        .ok()
}

#[tokio::test]
async fn the_server_keeps_serving_after_running_out_of_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // 96 descriptors: the store, the runtime and the listener take some; the rest is little.
    let mut server = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 96 && exec \"$0\"")
        .arg(env!("CARGO_BIN_EXE_flack"))
        .env("FLACK_DATABASE", dir.path().join("flack.db"))
        .env("FLACK_ADDRESS", addr.to_string())
        .env("FLACK_HEADER_TIMEOUT_SECS", "2")
        // The per-address cap would save it; this test is about the descriptors themselves.
        .env("FLACK_MAX_CONNECTIONS_PER_IP", "10000")
        .env("FLACK_LOG", "error")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .spawn()
        .expect("the flack binary starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("http://{addr}/favicon.svg"))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // More idle connections than it has descriptors for.
    let mut idle = Vec::new();
    for _ in 0..150 {
        if let Some(tcp) = idle_from("127.0.0.2", addr).await {
            idle.push(tcp);
        }
    }
    assert!(
        idle.len() > 96,
        "the attack got {} connections in",
        idle.len()
    );

    // The idle ones are timed out in waves; a normal request is then answered.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let served = loop {
        match http.get(format!("http://{addr}/")).send().await {
            Ok(res) => break res.status(),
            Err(_) if Instant::now() < deadline => continue,
            Err(e) => panic!("never served again: {e}"),
        }
    };
    assert_eq!(served, 200);
    assert!(
        server.try_wait().unwrap().is_none(),
        "the server is still running"
    );
    drop(idle);
    let _ = server.kill();
    let _ = server.wait();
}
