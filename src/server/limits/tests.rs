//! The Redis drivers against a real Redis: two nodes are two [`Node`]s on one prefix.

use super::presence::Change;
use super::redis::{Node, NodeOptions, CALL_TIMEOUT};
use super::*;
use crate::protocol::{PresenceStatus, UserId};
use crate::server::testing::{fresh_prefix, Services};
use std::time::{Duration, Instant};

async fn node(url: &str, prefix: &str, ttl: Duration) -> Arc<Node> {
    Node::start(NodeOptions {
        url: url.to_string(),
        prefix: prefix.to_string(),
        node: uuid::Uuid::new_v4().simple().to_string(),
        alive_ttl: ttl,
    })
    .await
    .expect("a well-formed URL")
}

/// Two nodes of one cluster on the shared Redis.
async fn two_nodes(ttl: Duration) -> (Arc<Node>, Arc<Node>, String) {
    let url = &Services::shared().redis_url;
    let prefix = fresh_prefix();
    (
        node(url, &prefix, ttl).await,
        node(url, &prefix, ttl).await,
        prefix,
    )
}

fn quota(per_second: u32, burst: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(per_second).unwrap())
        .allow_burst(NonZeroU32::new(burst).unwrap())
}

/// One limit of one unit an hour, in bursts of `burst`, as two nodes of one cluster see it.
async fn hourly_on_two_nodes(burst: u32) -> (Arc<dyn RateLimiter>, Arc<dyn RateLimiter>) {
    let (a, b, _) = two_nodes(Duration::from_secs(10)).await;
    let hourly =
        Quota::per_hour(NonZeroU32::new(1).unwrap()).allow_burst(NonZeroU32::new(burst).unwrap());
    (
        Backing::Redis(a).limiter("writes", hourly),
        Backing::Redis(b).limiter("writes", hourly),
    )
}

#[tokio::test]
async fn two_nodes_share_one_budget() {
    let (on_a, on_b) = hourly_on_two_nodes(5).await;
    let mut allowed = 0;
    let mut refusals = Vec::new();
    for i in 0..10 {
        let limiter = if i % 2 == 0 { &on_a } else { &on_b };
        match limiter.check("ada", 1).await {
            Ok(()) => allowed += 1,
            Err(AppError::RateLimited { retry_after_ms }) => refusals.push(retry_after_ms),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(allowed, 5, "one burst for the cluster, not one per node");
    assert!(
        refusals.iter().all(|&ms| ms > 60_000 && ms <= 3_600_000),
        "a refusal says when: {refusals:?}"
    );
    assert!(on_b.check("bob", 1).await.is_ok(), "other keys keep theirs");
    assert!(
        matches!(
            on_a.check("carol", 6).await,
            Err(AppError::RateLimited {
                retry_after_ms: NEVER_AFFORDABLE_MS
            })
        ),
        "more than the whole burst is never affordable"
    );
}

#[tokio::test]
async fn units_a_busy_node_takes_ahead_never_give_the_cluster_more_than_its_budget() {
    let (on_a, on_b) = hourly_on_two_nodes(40).await;
    let (mut on_a_allowed, mut on_b_allowed) = (0, 0);
    for _ in 0..30 {
        on_a_allowed += usize::from(on_a.check("ada", 1).await.is_ok());
    }
    for _ in 0..30 {
        on_b_allowed += usize::from(on_b.check("ada", 1).await.is_ok());
    }
    assert_eq!(on_a_allowed, 30, "within the budget every check passes");
    // Node a may still hold units it took ahead (at most a quarter of the burst): node b
    // gets the rest, never more.
    assert!(
        (40 - 30 - 10..=40 - 30).contains(&on_b_allowed),
        "node b got {on_b_allowed} of the 10 left"
    );
    // Once node a's lease is over, what it held is not handed out again.
    tokio::time::sleep(super::redis::LEASE_TTL * 2).await;
    assert!(on_a.check("ada", 1).await.is_err(), "the budget is spent");
    assert!(on_b.check("ada", 1).await.is_err(), "the budget is spent");
}

#[tokio::test]
async fn a_key_idles_back_to_full_and_vanishes() {
    let (a, b, prefix) = two_nodes(Duration::from_secs(10)).await;
    let on_a = Backing::Redis(a).limiter("opens", quota(10, 2));
    let on_b = Backing::Redis(b).limiter("opens", quota(10, 2));
    assert!(on_a.check("ada", 1).await.is_ok());
    assert!(on_b.check("ada", 1).await.is_ok());
    match on_a.check("ada", 1).await {
        Err(AppError::RateLimited { retry_after_ms }) => {
            assert!((1..=100).contains(&retry_after_ms), "{retry_after_ms}")
        }
        other => panic!("refused expected, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = ::redis::Client::open(Services::shared().redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let exists: bool = ::redis::cmd("EXISTS")
        .arg(format!("{prefix}:rl:opens:ada"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists, "an idle key expires");
    assert!(on_b.check("ada", 1).await.is_ok());
    assert!(on_a.check("ada", 1).await.is_ok(), "the whole burst again");
    assert!(on_b.check("ada", 1).await.is_err());
}

#[tokio::test]
async fn without_redis_the_local_limit_answers_in_time() {
    let started = Instant::now();
    let down = node(
        "redis://127.0.0.1:1/",
        &fresh_prefix(),
        Duration::from_secs(10),
    )
    .await;
    let backing = Backing::Redis(down);
    let limiter = backing.limiter("writes", quota(1, 3));
    for expected in [true, true, true, false] {
        let call = Instant::now();
        assert_eq!(limiter.check("ada", 1).await.is_ok(), expected);
        assert!(call.elapsed() <= CALL_TIMEOUT + Duration::from_millis(100));
    }
    let presence = backing.presence();
    let ada = UserId("ada".into());
    assert_eq!(
        presence.change(&ada, Change::Opened).await,
        Some(PresenceStatus::Online),
        "this node's own sockets still count"
    );
    assert_eq!(
        presence.statuses(&[ada]).await,
        vec![PresenceStatus::Online]
    );
    let sockets = backing.socket_cap(10, 1);
    let ip: IpAddr = "127.0.0.2".parse().unwrap();
    let held = sockets.admit(ip).await;
    assert!(held.is_some());
    assert!(sockets.admit(ip).await.is_none(), "the local cap holds");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Waits until `check` holds (writes on release happen in the background).
async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..50 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn socket_counts_add_up_over_live_nodes() {
    let ttl = Duration::from_millis(300);
    let (a, b, _) = two_nodes(ttl).await;
    let on_a = Backing::Redis(a).socket_cap(100, 3);
    let b_node = b.clone();
    let on_b = Backing::Redis(b).socket_cap(100, 3);
    let ip: IpAddr = "127.0.0.2".parse().unwrap();
    let other: IpAddr = "127.0.0.3".parse().unwrap();
    let mut on_a_held = vec![on_a.admit(ip).await.unwrap(), on_a.admit(ip).await.unwrap()];
    let _on_b_held = on_b.admit(ip).await.unwrap();
    assert!(
        on_b.admit(ip).await.is_none(),
        "two here and one there fill the cap"
    );
    assert!(on_a.admit(ip).await.is_none());
    assert!(on_a.admit(other).await.is_some(), "per address");
    on_a_held.pop();
    let mut again = None;
    assert!(
        eventually(async || {
            again = on_b.admit(ip).await;
            again.is_some()
        })
        .await,
        "a closed socket frees its place for every node"
    );
    assert_eq!(on_b.open_from(ip), 2);
    // Node B dies without a word: once its key expires, its sockets stop counting.
    b_node.halt();
    tokio::time::sleep(ttl * 2).await;
    let more: Vec<_> = [on_a.admit(ip).await, on_a.admit(ip).await]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(more.len(), 2, "only this node's one socket counts now");
    assert!(on_a.admit(ip).await.is_none());
}

#[tokio::test]
async fn presence_is_combined_over_the_nodes() {
    let (a, b, _) = two_nodes(Duration::from_secs(10)).await;
    let (on_a, on_b) = (Backing::Redis(a).presence(), Backing::Redis(b).presence());
    let ada = UserId("ada".into());
    let both = [ada.clone()];
    assert_eq!(on_b.statuses(&both).await, vec![PresenceStatus::Offline]);
    assert_eq!(
        on_a.change(&ada, Change::Opened).await,
        Some(PresenceStatus::Online)
    );
    assert_eq!(on_a.statuses(&both).await, vec![PresenceStatus::Online]);
    assert_eq!(
        on_b.statuses(&both).await,
        vec![PresenceStatus::Online],
        "online on A only: B says so too"
    );
    assert_eq!(
        on_b.change(&ada, Change::Opened).await,
        None,
        "already online"
    );
    assert_eq!(
        on_a.change(&ada, Change::Away(true)).await,
        None,
        "away on A, online on B"
    );
    assert_eq!(on_a.statuses(&both).await, vec![PresenceStatus::Online]);
    assert_eq!(on_b.statuses(&both).await, vec![PresenceStatus::Online]);
    assert_eq!(
        on_b.change(&ada, Change::Closed { away: false }).await,
        Some(PresenceStatus::Away),
        "only the away socket is left"
    );
    assert_eq!(
        on_a.change(&ada, Change::Closed { away: true }).await,
        Some(PresenceStatus::Offline),
        "the last socket anywhere closed"
    );
    assert_eq!(on_a.statuses(&both).await, vec![PresenceStatus::Offline]);
    assert_eq!(on_b.statuses(&both).await, vec![PresenceStatus::Offline]);
}

#[tokio::test]
async fn a_dead_nodes_sockets_stop_counting_and_live_ones_come_back() {
    let ttl = Duration::from_millis(300);
    let (a, b, prefix) = two_nodes(ttl).await;
    let (a_node, b_node) = (a.clone(), b.clone());
    let (on_a, on_b) = (Backing::Redis(a).presence(), Backing::Redis(b).presence());
    let (ada, bob) = (UserId("ada".into()), UserId("bob".into()));
    on_a.change(&ada, Change::Opened).await;
    on_b.change(&bob, Change::Opened).await;
    let users = [ada.clone(), bob.clone()];
    let online = vec![PresenceStatus::Online, PresenceStatus::Online];
    assert_eq!(on_b.statuses(&users).await, online);
    // Redis forgets B's counts (a restart): B's next heartbeat writes them again.
    let client = ::redis::Client::open(Services::shared().redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = ::redis::cmd("DEL")
        .arg(format!("{prefix}:presence:bob"))
        .arg(format!("{prefix}:node:{}", b_node.id()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        on_a.statuses(&users).await,
        vec![PresenceStatus::Online, PresenceStatus::Offline]
    );
    tokio::time::sleep(ttl).await;
    assert_eq!(
        on_a.statuses(&users).await,
        online,
        "healed by the heartbeat"
    );
    // A dies (SIGKILL): its users are offline for everyone once its key expires.
    a_node.halt();
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(
        on_b.statuses(&users).await,
        vec![PresenceStatus::Offline, PresenceStatus::Online]
    );
}

/// The users of a node that dies reach exactly one live node as departed, once its heartbeat
/// lapses: those with a socket there, not those who had closed theirs; their status is read
/// without the dead node.
#[tokio::test]
async fn a_dead_nodes_users_reach_one_live_node_as_departed() {
    let ttl = Duration::from_millis(300);
    let url = &Services::shared().redis_url;
    let prefix = fresh_prefix();
    let nodes = [
        node(url, &prefix, ttl).await,
        node(url, &prefix, ttl).await,
        node(url, &prefix, ttl).await,
    ];
    let books: Vec<_> = nodes
        .iter()
        .map(|n| Backing::Redis(n.clone()).presence())
        .collect();
    let mut departures: Vec<_> = books[..2]
        .iter()
        .map(|b| b.departures().expect("a cluster's book tells departures"))
        .collect();
    assert!(books[0].departures().is_none(), "given once");
    let (ada, bob, cy) = (
        UserId("ada".into()),
        UserId("bob".into()),
        UserId("cy".into()),
    );
    let dying = &books[2];
    dying.change(&ada, Change::Opened).await;
    dying.change(&bob, Change::Opened).await;
    dying.change(&cy, Change::Opened).await;
    dying.change(&cy, Change::Closed { away: false }).await;
    books[0].change(&bob, Change::Opened).await;
    // Node 2 dies (SIGKILL: its heartbeat stops, nothing is said).
    nodes[2].halt();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut heard: Vec<(usize, Vec<UserId>)> = Vec::new();
    while heard.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no live node heard of the dead one"
        );
        for (k, rx) in departures.iter_mut().enumerate() {
            while let Ok(users) = rx.try_recv() {
                heard.push((k, users));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A few more heartbeats: nobody hears of it a second time.
    tokio::time::sleep(ttl * 2).await;
    for rx in departures.iter_mut() {
        while let Ok(users) = rx.try_recv() {
            heard.push((usize::MAX, users));
        }
    }
    assert_eq!(heard.len(), 1, "one live node, once: {heard:?}");
    let mut users = heard.remove(0).1;
    users.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(users, [ada.clone(), bob.clone()], "cy had left");
    assert_eq!(
        books[0].statuses(&[ada, bob]).await,
        [PresenceStatus::Offline, PresenceStatus::Online],
        "bob is still on node 0"
    );
}

#[tokio::test]
async fn one_process_has_no_departures() {
    assert!(Backing::Local.presence().departures().is_none());
}

/// A node whose key lapsed (too slow to beat, or Redis forgot it) may have been taken for
/// dead, its users told offline: at its next heartbeat it tells them again, as they are.
#[tokio::test]
async fn a_node_whose_key_lapsed_tells_its_users_again() {
    let ttl = Duration::from_millis(300);
    let (a, b, prefix) = two_nodes(ttl).await;
    let (on_a, on_b) = (
        Backing::Redis(a.clone()).presence(),
        Backing::Redis(b).presence(),
    );
    let mut from_a = on_a.departures().unwrap();
    let ada = UserId("ada".into());
    on_a.change(&ada, Change::Opened).await;
    tokio::time::sleep(ttl).await;
    assert!(from_a.try_recv().is_err(), "nothing lapsed yet");
    let client = ::redis::Client::open(Services::shared().redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = ::redis::cmd("DEL")
        .arg(format!("{prefix}:node:{}", a.id()))
        .query_async(&mut conn)
        .await
        .unwrap();
    let told = tokio::time::timeout(Duration::from_secs(5), from_a.recv())
        .await
        .expect("told within a few heartbeats")
        .unwrap();
    assert_eq!(told, std::slice::from_ref(&ada));
    assert_eq!(on_b.statuses(&[ada]).await, [PresenceStatus::Online]);
}
