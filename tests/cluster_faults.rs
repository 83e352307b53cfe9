//! Faults in a cluster of three nodes on one PostgreSQL and one Redis (real servers, a
//! private pair per test): a node killed with SIGKILL mid-stream, Redis restarted
//! mid-stream, PostgreSQL stopped and started again. Whatever happens, every acknowledged
//! message is stored once, every client ends showing what a fresh load shows, and none
//! hears a message twice.
#![cfg(feature = "ssr")]

mod common;

use common::cluster::{self, next_within, Watcher};
use common::login;
use flack::protocol::{ClientEvent, ConversationId, PresenceStatus, ServerEvent};
use flack::server::config::Config;
use flack::server::state::AppState;
use flack::server::store::{Conversations, Messages, PostgresStore};
use flack::server::testing::Services;
use futures_util::SinkExt;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as Frame;

/// Client ids acknowledged, with the sequence number the ack gave.
type Acks = Arc<Mutex<HashMap<String, u64>>>;

/// Refusals seen, by error code (the database away: "unavailable").
type Refusals = Arc<Mutex<HashMap<String, usize>>>;

/// The next event within `wait`: `Ok(None)` when quiet, `Err` when the socket is gone.
async fn next_event(ws: &mut cluster::Ws, wait: Duration) -> Result<Option<ServerEvent>, ()> {
    use futures_util::StreamExt;
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Err(_) => return Ok(None),
            Ok(Some(Ok(Frame::Text(text)))) => {
                return Ok(Some(serde_json::from_str(text.as_str()).expect("an event")))
            }
            Ok(Some(Ok(Frame::Close(_))) | Some(Err(_)) | None) => return Err(()),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Records an ack or a refusal; the client id it answers.
fn record(event: ServerEvent, acks: &Acks, refusals: &Refusals) -> Option<String> {
    match event {
        ServerEvent::Ack {
            client_id: Some(id),
            seq,
            ..
        } => {
            acks.lock().unwrap().insert(id.clone(), seq);
            Some(id)
        }
        ServerEvent::Error {
            error,
            client_id: Some(id),
            ..
        } => {
            let code = serde_json::to_value(&error).unwrap()["code"]
                .as_str()
                .unwrap()
                .to_string();
            *refusals.lock().unwrap().entry(code).or_default() += 1;
            Some(id)
        }
        _ => None,
    }
}

/// A sender as a browser is one: it sends `ids` over one socket, paced, and waits for each
/// answer; what was refused (the database away) it sends again after a moment with the
/// same client id, and after a broken connection it opens a socket to the next of
/// `addrs` and sends again what was not acknowledged, until everything is.
#[allow(clippy::too_many_arguments)]
async fn send_all(
    addrs: Vec<SocketAddr>,
    token: String,
    conversation: ConversationId,
    ids: Vec<String>,
    acks: Acks,
    refusals: Refusals,
    pace: Duration,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut at = 0;
    let mut socket: Option<cluster::Ws> = None;
    loop {
        let missing: Vec<String> = {
            let acks = acks.lock().unwrap();
            ids.iter()
                .filter(|id| !acks.contains_key(*id))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} sends never acknowledged",
            missing.len()
        );
        let mut ws = match socket.take() {
            Some(ws) => ws,
            None => match cluster::try_connect(addrs[at % addrs.len()], &token).await {
                Some(ws) => ws,
                None => {
                    at += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let mut answered = HashSet::new();
        let mut broken = false;
        for id in &missing {
            let event = ClientEvent::Send {
                conversation: Some(conversation),
                channel: None,
                body: format!("body of {id}"),
                client_id: Some(id.clone()),
            };
            let text = serde_json::to_string(&event).unwrap();
            if ws.send(Frame::text(text)).await.is_err() {
                broken = true;
                break;
            }
            tokio::time::sleep(pace).await;
            while let Ok(Some(event)) = next_event(&mut ws, Duration::from_millis(1)).await {
                answered.extend(record(event, &acks, &refusals));
            }
        }
        // Every send is answered (an ack or a refusal) unless the socket goes.
        while !broken && answered.len() < missing.len() {
            match next_event(&mut ws, Duration::from_secs(20)).await {
                Ok(Some(event)) => answered.extend(record(event, &acks, &refusals)),
                Ok(None) => panic!("a send left unanswered for 20 s"),
                Err(()) => broken = true,
            }
        }
        if broken {
            at += 1;
        } else {
            socket = Some(ws);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The cluster's database, read directly (as a fresh load would).
async fn database(config: &Config) -> PostgresStore {
    PostgresStore::connect(
        config.database_url.as_deref().unwrap(),
        2,
        Default::default(),
    )
    .await
    .unwrap()
}

/// Everything stored in `conversation`, as (client id, seq).
async fn stored(config: &Config, conversation: ConversationId) -> Vec<(String, u64)> {
    fresh(config, conversation)
        .await
        .into_iter()
        .map(|m| (m.client_id.unwrap_or_default(), m.seq))
        .collect()
}

/// Every acknowledged message is stored once, with the number its ack gave; nothing
/// unsent is stored.
fn assert_exactly_once(acks: &Acks, stored: &[(String, u64)], expected: usize) {
    let acks = acks.lock().unwrap();
    assert_eq!(acks.len(), expected, "every send acknowledged in the end");
    let ids: HashSet<&String> = stored.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), stored.len(), "a message stored twice");
    assert_eq!(stored.len(), expected, "stored exactly what was sent");
    for (id, seq) in stored {
        assert_eq!(acks.get(id), Some(seq), "{id} stored with another number");
    }
}

/// A watcher's view: heard in order, each once, and equal to a fresh load.
fn assert_consistent(watchers: &[Watcher], fresh: &[flack::protocol::Message]) {
    for (i, watcher) in watchers.iter().enumerate() {
        assert!(
            watcher.live.windows(2).all(|w| w[0] < w[1]),
            "watcher {i} heard out of order or twice: {:?}",
            watcher.live
        );
        let shown: Vec<_> = watcher.log.messages.iter().collect();
        let stored: Vec<_> = fresh.iter().collect();
        assert_eq!(shown, stored, "watcher {i} differs from a fresh load");
    }
}

async fn general(config: &Config) -> ConversationId {
    let store = database(config).await;
    store.channel_named("general").await.unwrap().unwrap().id
}

async fn fresh(config: &Config, id: ConversationId) -> Vec<flack::protocol::Message> {
    database(config)
        .await
        .recent(id, 100_000)
        .await
        .unwrap()
        .messages
}

/// Ids for `senders` senders of `each` messages.
fn ids(sender: usize, each: usize) -> Vec<String> {
    (0..each).map(|k| format!("s{sender}-{k}")).collect()
}

/// The real binary as one node of the cluster `config` describes, on `port`.
fn node(config: &Config, port: u16) -> Child {
    node_with(config, port, &[])
}

/// The same with more settings (`FLACK_…` variables).
fn node_with(config: &Config, port: u16, settings: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_flack"))
        .envs(settings.iter().copied())
        .env(
            "FLACK_DATABASE_URL",
            config.database_url.as_deref().unwrap(),
        )
        .env("FLACK_REDIS_URL", &config.redis_url)
        .env("FLACK_REDIS_PREFIX", &config.redis_prefix)
        .env("FLACK_ADDRESS", format!("127.0.0.1:{port}"))
        .env("FLACK_RATE_LIMIT_PER_SEC", "1000000")
        .env("FLACK_RATE_LIMIT_BURST", "1000000")
        .env("FLACK_FRAME_RATE_PER_SEC", "1000000")
        .env("FLACK_FRAME_BURST", "1000000")
        .env("FLACK_SUBSCRIBE_RATE_PER_SEC", "1000000")
        .env("FLACK_SUBSCRIBE_BURST", "1000000")
        .env("FLACK_NEW_IDENTITIES_BURST", "100000")
        .env("FLACK_LOG", "warn")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .spawn()
        .expect("the flack binary starts")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(res) = reqwest::get(format!("http://{addr}/readyz")).await {
            if res.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "node {addr} never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pumps every watcher until it shows `count` messages.
async fn settle(watchers: &mut [Watcher], count: usize) {
    for watcher in watchers {
        watcher.pump_until(|log| log.messages.len() >= count).await;
    }
}

#[tokio::test]
async fn a_node_killed_mid_stream_loses_nothing_and_repeats_nothing() {
    const EACH: usize = 150;
    let services = Services::private();
    let config = cluster::config(&services).await;
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let addrs: Vec<SocketAddr> = ports.iter().map(|p| ([127, 0, 0, 1], *p).into()).collect();
    // The first node creates the schema and the default channel; then the others.
    let mut children = vec![node(&config, ports[0])];
    wait_ready(addrs[0]).await;
    for port in &ports[1..] {
        children.push(node(&config, *port));
    }
    for addr in &addrs {
        wait_ready(*addr).await;
    }
    let general = general(&config).await;
    let (acks, refusals): (Acks, Refusals) = Default::default();
    // Watchers on every node; senders on every node, each falling over to the next node.
    let mut watchers = Vec::new();
    let mut watcher_tokens = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let token = login(*addr, &format!("W{i}")).await;
        watchers.push(Watcher::open(*addr, &token, general, None).await);
        watcher_tokens.push(token);
    }
    let mut senders = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let token = login(*addr, &format!("S{i}")).await;
        let order: Vec<SocketAddr> = (0..3).map(|k| addrs[(i + k) % 3]).collect();
        senders.push(tokio::spawn(send_all(
            order,
            token,
            general,
            ids(i, EACH),
            acks.clone(),
            refusals.clone(),
            Duration::from_millis(5),
        )));
    }
    // Kill node 2 once a third of the messages are acknowledged.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acks.lock().unwrap().len() < EACH {
        assert!(Instant::now() < deadline, "the stream never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    children[2].kill().unwrap(); // SIGKILL
    children[2].wait().unwrap();
    // Its watcher reconnects to node 0 and resumes after what it applied.
    let orphan = watchers.pop().unwrap();
    // Apply what had arrived before the kill, then resume elsewhere.
    let mut orphan = orphan;
    while let Some(event) = next_within(&mut orphan.ws, Duration::from_millis(200)).await {
        orphan.apply(event);
    }
    let (live, caught_up) = (orphan.live.clone(), orphan.caught_up);
    let mut resumed = Watcher::open(addrs[0], &watcher_tokens[2], general, Some(orphan.log)).await;
    resumed.live = live;
    resumed.caught_up += caught_up;
    watchers.push(resumed);
    for sender in senders {
        sender.await.unwrap();
    }
    settle(&mut watchers, 3 * EACH).await;
    let stored = stored(&config, general).await;
    assert_exactly_once(&acks, &stored, 3 * EACH);
    assert_consistent(&watchers, &fresh(&config, general).await);
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A node killed with SIGKILL cannot tell that its people went offline: a live node finds
/// it dead once its heartbeat lapses and tells it for them, to whoever shows their status.
#[tokio::test]
async fn a_killed_nodes_people_are_told_offline_by_a_live_node() {
    let services = Services::private();
    let config = cluster::config(&services).await;
    let ports: Vec<u16> = (0..2).map(|_| free_port()).collect();
    let addrs: Vec<SocketAddr> = ports.iter().map(|p| ([127, 0, 0, 1], *p).into()).collect();
    let quick = [("FLACK_REDIS_NODE_TTL_SECS", "1")];
    let mut children = vec![node_with(&config, ports[0], &quick)];
    wait_ready(addrs[0]).await;
    children.push(node_with(&config, ports[1], &quick));
    wait_ready(addrs[1]).await;
    let general = general(&config).await;
    // Bob watches #general on node 0; Ada, on node 1, posts there (and so is a member).
    let bob = login(addrs[0], "Bob").await;
    let mut bob_watch = Watcher::open(addrs[0], &bob, general, None).await;
    let ada = login(addrs[1], "Ada").await;
    let mut ada_ws = cluster::connect(addrs[1], &ada).await;
    cluster::send(
        &mut ada_ws,
        ClientEvent::Send {
            conversation: Some(general),
            channel: None,
            body: "here".into(),
            client_id: Some("a-1".into()),
        },
    )
    .await;
    let ServerEvent::Message { message } = cluster::until(&mut bob_watch.ws, |e| {
        matches!(e, ServerEvent::Message { .. })
    })
    .await
    else {
        unreachable!()
    };
    let ada_id = message.author.id;
    children[1].kill().unwrap(); // SIGKILL: node 1 says nothing more
    children[1].wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let event = next_within(&mut bob_watch.ws, Duration::from_millis(500)).await;
        if let Some(ServerEvent::Presence { user, status }) = &event {
            if user == &ada_id && *status == PresenceStatus::Offline {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Bob was never told that Ada went offline"
        );
    }
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Three nodes in this process on `services`, a watcher on each, and a sender on each
/// posting `each` messages to #general through its own node, `pace` apart.
struct Stream {
    config: Config,
    nodes: Vec<(SocketAddr, AppState)>,
    general: ConversationId,
    watchers: Vec<Watcher>,
    senders: Vec<tokio::task::JoinHandle<()>>,
    acks: Acks,
    refusals: Refusals,
    each: usize,
}

impl Stream {
    async fn start(services: &Services, each: usize, pace: Duration) -> Stream {
        let config = cluster::config(services).await;
        let nodes = cluster::nodes(&config, 3).await;
        let general = general(&config).await;
        let (acks, refusals): (Acks, Refusals) = Default::default();
        let mut watchers = Vec::new();
        let mut senders = Vec::new();
        for (i, (addr, _)) in nodes.iter().enumerate() {
            let token = login(*addr, &format!("W{i}")).await;
            watchers.push(Watcher::open(*addr, &token, general, None).await);
        }
        for (i, (addr, _)) in nodes.iter().enumerate() {
            let token = login(*addr, &format!("S{i}")).await;
            senders.push(tokio::spawn(send_all(
                vec![*addr],
                token,
                general,
                ids(i, each),
                acks.clone(),
                refusals.clone(),
                pace,
            )));
        }
        Stream {
            config,
            nodes,
            general,
            watchers,
            senders,
            acks,
            refusals,
            each,
        }
    }

    /// Waits until a third of the messages are acknowledged (the fault lands mid-stream).
    async fn under_way(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.acks.lock().unwrap().len() < self.each {
            assert!(Instant::now() < deadline, "the stream never got going");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Lets every sender finish, then checks the guarantees.
    async fn finish(mut self) -> Self {
        for sender in std::mem::take(&mut self.senders) {
            sender.await.unwrap();
        }
        let total = 3 * self.each;
        settle(&mut self.watchers, total).await;
        let stored = stored(&self.config, self.general).await;
        assert_exactly_once(&self.acks, &stored, total);
        assert_consistent(&self.watchers, &fresh(&self.config, self.general).await);
        self
    }
}

#[tokio::test]
async fn a_redis_restart_mid_stream_delivers_every_message_once() {
    let services = Services::private();
    let stream = Stream::start(&services, 120, Duration::from_millis(10)).await;
    stream.under_way().await;
    services.restart_redis();
    let stream = stream.finish().await;
    let reconnects: u64 = stream
        .nodes
        .iter()
        .map(|(_, s)| s.chat.hub().stats().reconnects)
        .sum();
    assert!(reconnects >= 3, "every node made its connection again");
}

#[tokio::test]
async fn a_postgres_restart_refuses_writes_plainly_and_loses_nothing_acknowledged() {
    let services = Services::private();
    let stream = Stream::start(&services, 80, Duration::from_millis(20)).await;
    stream.under_way().await;
    services.stop_postgres();
    // While it is away, sends are refused as "unavailable" (never hang, never an ack).
    let refused = || {
        stream
            .refusals
            .lock()
            .unwrap()
            .get("unavailable")
            .copied()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while refused() == 0 {
        assert!(
            Instant::now() < deadline,
            "no refusal while the database was away: {:?}",
            stream.refusals.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    services.start_postgres();
    let stream = stream.finish().await;
    let others: Vec<_> = stream
        .refusals
        .lock()
        .unwrap()
        .keys()
        .filter(|code| *code != "unavailable")
        .cloned()
        .collect();
    assert!(others.is_empty(), "other refusals: {others:?}");
}
