//! The Zulip-style events test: for a random sequence of actions by several people (posts,
//! edits, deletions, reactions, replies, joins and leaves), with their clients dropping and
//! reconnecting in between, the state each client holds after applying the live change
//! stream and its catch-ups equals a fresh load, for every client.
#![cfg(feature = "ssr")]

mod common;

use flack::app::chat_state::ConversationLog;
use flack::protocol::{ClientEvent, ConversationId, MessageId, ServerEvent, UserInfo};
use flack::server::access::Readable;
use flack::server::config::Config;
use flack::server::state::AppState;
use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const PEOPLE: usize = 3;
const EMOJI: [&str; 3] = ["👍", "🎉", "👀"];

#[derive(Debug, Clone)]
enum Action {
    Post(usize),
    Edit(usize, usize),
    Delete(usize, usize),
    React(usize, usize, usize, bool),
    Reply(usize, usize),
    Leave(usize),
    Rejoin(usize),
    Drop(usize),
    Reconnect(usize),
}

fn action() -> impl Strategy<Value = Action> {
    let who = 0..PEOPLE;
    let which = 0..64usize;
    prop_oneof![
        4 => who.clone().prop_map(Action::Post),
        2 => (who.clone(), which.clone()).prop_map(|(w, m)| Action::Edit(w, m)),
        1 => (who.clone(), which.clone()).prop_map(|(w, m)| Action::Delete(w, m)),
        3 => (who.clone(), which.clone(), 0..EMOJI.len(), any::<bool>())
            .prop_map(|(w, m, e, on)| Action::React(w, m, e, on)),
        2 => (who.clone(), which).prop_map(|(w, m)| Action::Reply(w, m)),
        1 => who.clone().prop_map(Action::Leave),
        1 => who.clone().prop_map(Action::Rejoin),
        2 => who.clone().prop_map(Action::Drop),
        2 => who.prop_map(Action::Reconnect),
    ]
}

/// One person's client: a socket (while connected) and what it shows.
struct Client {
    user: UserInfo,
    token: String,
    ws: Option<Ws>,
    log: ConversationLog,
}

async fn connect(addr: SocketAddr, token: &str) -> Ws {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    connect_async(req).await.unwrap().0
}

impl Client {
    /// Opens the conversation on a new socket, resuming after what the log applied.
    async fn reconnect(&mut self, addr: SocketAddr) {
        let mut ws = connect(addr, &self.token).await;
        let event = ClientEvent::Subscribe {
            conversation: Some(self.log.id()),
            channel: None,
            after_change: Some(self.log.last_change()),
        };
        ws.send(Frame::text(serde_json::to_string(&event).unwrap()))
            .await
            .unwrap();
        self.ws = Some(ws);
    }

    /// Applies every event that arrives within `quiet` of the last one.
    async fn pump(&mut self, quiet: Duration) {
        let Some(ws) = self.ws.as_mut() else { return };
        while let Ok(Some(Ok(frame))) = tokio::time::timeout(quiet, ws.next()).await {
            let Frame::Text(text) = frame else { continue };
            match serde_json::from_str::<ServerEvent>(text.as_str()).unwrap() {
                ServerEvent::Subscribed {
                    messages,
                    last_change,
                    reset,
                    has_older,
                    ..
                } => self
                    .log
                    .apply_subscribed(messages, last_change, reset, has_older),
                ServerEvent::Message { message } | ServerEvent::Changed { message } => {
                    self.log.apply(message)
                }
                ServerEvent::Members { change, .. } => self.log.saw_change(change),
                _ => {}
            }
        }
    }
}

async fn run(actions: Vec<Action>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let (addr, state) = common::serve_with_state(Config {
        database: dir.path().join("flack.db"),
        rate_limit_per_sec: 100_000,
        rate_limit_burst: 100_000,
        subscribe_rate_per_sec: 100_000,
        subscribe_burst: 100_000,
        ..Config::default()
    })
    .await;
    let chat = state.chat.clone();
    let mut clients = Vec::new();
    for i in 0..PEOPLE {
        let token = common::login(addr, &format!("P{i}")).await;
        let user = chat
            .store()
            .user_by_token(&flack::server::identity::hash_token(&token))
            .await
            .unwrap()
            .unwrap();
        clients.push((user, token));
    }
    let room = chat
        .create_channel(
            &clients[0].0,
            "room",
            false,
            std::net::Ipv4Addr::LOCALHOST.into(),
        )
        .await
        .unwrap();
    let id = room.id;
    for (user, _) in &clients[1..] {
        chat.join(user, id).await.unwrap();
    }
    let mut clients: Vec<Client> = {
        let mut out = Vec::new();
        for (user, token) in clients {
            let history = fresh(&state, &user, id).await;
            let mut client = Client {
                user,
                token,
                ws: None,
                log: ConversationLog::new(history),
            };
            client.reconnect(addr).await;
            out.push(client);
        }
        out
    };
    // Each person's messages, by id, to aim edits and deletions at.
    let mut posted: Vec<Vec<MessageId>> = vec![Vec::new(); PEOPLE];
    let mut all: Vec<MessageId> = Vec::new();
    for (n, action) in actions.into_iter().enumerate() {
        let user = |w: usize| clients[w].user.clone();
        match action {
            Action::Post(w) => {
                if let Ok(a) = chat.post(&user(w), id, &format!("m{n}"), None).await {
                    posted[w].push(a.message.id.clone());
                    all.push(a.message.id);
                }
            }
            Action::Edit(w, m) if !posted[w].is_empty() => {
                let target = posted[w][m % posted[w].len()].clone();
                let _ = chat.edit(&user(w), &target, &format!("edited {n}")).await;
            }
            Action::Delete(w, m) if !posted[w].is_empty() => {
                let target = posted[w][m % posted[w].len()].clone();
                let _ = chat.delete(&user(w), &target).await;
            }
            Action::React(w, m, e, on) if !all.is_empty() => {
                let target = all[m % all.len()].clone();
                let _ = chat.react(&user(w), &target, EMOJI[e], on).await;
            }
            Action::Reply(w, m) if !all.is_empty() => {
                let target = all[m % all.len()].clone();
                let _ = chat
                    .reply(&user(w), &target, &format!("r{n}"), None, false)
                    .await;
            }
            Action::Leave(w) if w > 0 => {
                let _ = chat.leave(&user(w), id).await;
            }
            Action::Rejoin(w) => {
                let _ = chat.join(&user(w), id).await;
            }
            Action::Drop(w) => {
                clients[w].pump(Duration::from_millis(5)).await;
                clients[w].ws = None;
            }
            Action::Reconnect(w) if clients[w].ws.is_none() => clients[w].reconnect(addr).await,
            _ => {}
        }
        // Some clients read as they go, others fall behind until the end.
        if n % 3 == 0 {
            for client in clients.iter_mut() {
                client.pump(Duration::from_millis(2)).await;
            }
        }
    }
    for client in clients.iter_mut() {
        if client.ws.is_none() {
            client.reconnect(addr).await;
        }
    }
    let last = chat.store().recent(id, 1).await.unwrap().last_change;
    for client in clients.iter_mut() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while client.log.last_change() < last && tokio::time::Instant::now() < deadline {
            client.pump(Duration::from_millis(50)).await;
        }
        prop_assert_eq!(
            client.log.last_change(),
            last,
            "{} caught up",
            client.user.name.as_deref().unwrap()
        );
        let want = fresh(&state, &client.user, id).await;
        prop_assert_eq!(
            &client.log.messages,
            &want.messages,
            "{} shows what a fresh load shows",
            client.user.name.as_deref().unwrap()
        );
    }
    Ok(())
}

async fn fresh(
    state: &AppState,
    user: &UserInfo,
    id: ConversationId,
) -> flack::protocol::ConversationHistory {
    let readable: Readable = flack::server::access::readable(state.chat.store(), &user.id, id)
        .await
        .unwrap();
    state.chat.history(readable).await.unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_client_converges_on_a_fresh_load(actions in proptest::collection::vec(action(), 1..60)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run(actions))?;
    }
}
