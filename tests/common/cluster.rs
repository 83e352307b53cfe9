//! Several Flack nodes in this process on one PostgreSQL database and one Redis (real
//! servers: see `flack::server::testing`), and a socket client that records what it hears.

use super::serve_with_state;
use flack::app::chat_state::ConversationLog;
use flack::protocol::{ClientEvent, ConversationHistory, ConversationId, ServerEvent};
use flack::server::config::{Config, StoreKind};
use flack::server::state::AppState;
use flack::server::testing::{fresh_prefix, Services};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One cluster's settings: a fresh database and key prefix on `services`, limits lifted
/// (the tests send fast from few addresses).
pub async fn config(services: &Services) -> Config {
    Config {
        store: StoreKind::Postgres,
        database_url: Some(services.fresh_database().await),
        redis_url: services.redis_url.clone(),
        redis_prefix: fresh_prefix(),
        rate_limit_per_sec: 1_000_000,
        rate_limit_burst: 1_000_000,
        frame_rate_per_sec: 1_000_000,
        frame_burst: 1_000_000,
        subscribe_rate_per_sec: 1_000_000,
        subscribe_burst: 1_000_000,
        join_bytes_per_sec_per_ip: 1 << 40,
        join_bytes_burst_per_ip: 1 << 40,
        new_identities_burst: 100_000,
        new_channels_burst: 100_000,
        ..Config::default()
    }
}

/// `count` nodes on one database and one Redis.
pub async fn nodes(config: &Config, count: usize) -> Vec<(SocketAddr, AppState)> {
    let mut nodes = Vec::new();
    for _ in 0..count {
        nodes.push(serve_with_state(config.clone()).await);
    }
    nodes
}

pub async fn connect(addr: SocketAddr, token: &str) -> Ws {
    try_connect(addr, token)
        .await
        .expect("the node accepts the socket and says hello")
}

/// A socket to the node at `addr` as the holder of `token`, once it said hello; `None` if
/// the node refused or is gone.
pub async fn try_connect(addr: SocketAddr, token: &str) -> Option<Ws> {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let (mut ws, _) = connect_async(req).await.ok()?;
    match next(&mut ws).await {
        Some(ServerEvent::Hello { .. }) => Some(ws),
        _ => None,
    }
}

pub async fn send(ws: &mut Ws, event: ClientEvent) {
    ws.send(Frame::text(serde_json::to_string(&event).unwrap()))
        .await
        .unwrap();
}

/// The next event within `wait`, or `None`.
pub async fn next_within(ws: &mut Ws, wait: Duration) -> Option<ServerEvent> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Frame::Text(text)))) => {
                return Some(serde_json::from_str(text.as_str()).expect("a server event"))
            }
            Ok(Some(Ok(Frame::Ping(_) | Frame::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

pub async fn next(ws: &mut Ws) -> Option<ServerEvent> {
    next_within(ws, Duration::from_secs(10)).await
}

/// Reads until an event matches (skipping others), failing after 10 s of silence.
pub async fn until(ws: &mut Ws, wanted: impl Fn(&ServerEvent) -> bool) -> ServerEvent {
    loop {
        let event = next(ws).await.expect("an event within 10 s");
        if wanted(&event) {
            return event;
        }
    }
}

/// A client with one conversation open: what it shows, and what it heard, in order.
pub struct Watcher {
    pub ws: Ws,
    pub log: ConversationLog,
    /// The sequence number of every `message` event, in arrival order.
    pub live: Vec<u64>,
    /// Message ids that arrived in a catch-up rather than live.
    pub caught_up: usize,
}

impl Watcher {
    /// Opens `conversation` on a new socket to `addr`: fresh, or after `after_change`.
    pub async fn open(
        addr: SocketAddr,
        token: &str,
        conversation: ConversationId,
        log: Option<ConversationLog>,
    ) -> Watcher {
        let mut ws = connect(addr, token).await;
        send(
            &mut ws,
            ClientEvent::Subscribe {
                conversation: Some(conversation),
                channel: None,
                after_change: log.as_ref().map(|l| l.last_change()),
            },
        )
        .await;
        let ServerEvent::Subscribed {
            conversation: info,
            messages,
            last_change,
            reset,
            has_older,
            ..
        } = until(&mut ws, |e| matches!(e, ServerEvent::Subscribed { .. })).await
        else {
            unreachable!()
        };
        let log = match log {
            Some(mut log) => {
                log.apply_subscribed(messages, last_change, reset, has_older);
                log
            }
            None => {
                let mut log = ConversationLog::new(ConversationHistory {
                    conversation: info,
                    messages: Vec::new(),
                    has_older: false,
                    read_seq: 0,
                    member: true,
                    last_change: 0,
                });
                log.apply_subscribed(messages, last_change, reset, has_older);
                log
            }
        };
        Watcher {
            ws,
            log,
            live: Vec::new(),
            caught_up: 0,
        }
    }

    /// Applies what arrives until `done` says the log is complete, failing after 20 s of
    /// silence.
    pub async fn pump_until(&mut self, done: impl Fn(&ConversationLog) -> bool) {
        while !done(&self.log) {
            let event = next_within(&mut self.ws, Duration::from_secs(20))
                .await
                .unwrap_or_else(|| panic!("silence with {} messages", self.log.messages.len()));
            self.apply(event);
        }
    }

    pub fn apply(&mut self, event: ServerEvent) {
        match event {
            ServerEvent::Subscribed {
                messages,
                last_change,
                reset,
                has_older,
                ..
            } => {
                self.caught_up += messages.len();
                self.log
                    .apply_subscribed(messages, last_change, reset, has_older)
            }
            ServerEvent::Message { message } => {
                self.live.push(message.seq);
                self.log.apply(message)
            }
            ServerEvent::Changed { message } => self.log.apply(message),
            ServerEvent::Members { change, .. } => self.log.saw_change(change),
            _ => {}
        }
    }
}
