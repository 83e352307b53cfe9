//! The Redis drivers of the cluster-wide limits and of presence. Every node of a cluster
//! names the same Redis and prefix; each has an id of its own ([`NodeOptions::node`]).
//!
//! Keys (all under `{prefix}:`):
//! - `rl:{limiter}:{key}`: a rate limit's theoretical arrival time (GCRA, microseconds of
//!   Redis' own clock, so the nodes' clocks do not matter), expiring once the budget is full
//!   again, so idle keys vanish.
//! - `node:{id}`: this node is alive; set with a TTL of [`NodeOptions::alive_ttl`] and
//!   refreshed every third of it. A node that dies (even by SIGKILL) stops counting once
//!   its key expires.
//! - `sockets:{ip}`: a hash, one field per node: `"count,seq"`, its WebSockets from that
//!   address.
//! - `presence:{user}`: a hash, one field per node: `"sockets,away,seq"`.
//! - `nodes`: the ids of the nodes that have beaten, and `node-users:{id}`: the users with
//!   a socket on that node. A node that finds another's `node:` key expired takes it out of
//!   `nodes` and takes its users (one script: exactly one survivor does), and tells them as
//!   departed ([`PresenceBook::departures`]): their status may have changed, and the dead
//!   node cannot say so. A node that finds its own key gone at a heartbeat (it was too slow
//!   to beat, or Redis forgot it) tells its own users the same way: someone may have said
//!   they were gone.
//!
//! A node's own counts are kept in its memory and are the truth about that node: every
//! change writes its field with a sequence number (a write older than the field is ignored,
//! so writes that cross keep the newest), and every heartbeat writes all of them again, so
//! they come back by themselves after Redis restarts. Sums count only the fields of nodes
//! whose `node:` key exists (scripts read those keys by name, so this needs one Redis, not
//! a Redis Cluster).
//!
//! Every call has [`CALL_TIMEOUT`]. When Redis fails (or is slow), the call answers from
//! this node's own state (its local limit, its own sockets) and Redis is left alone for
//! [`BREAK`], so that a Redis restart neither stops the cluster nor makes requests wait.

use super::presence::{status_from, Change, PresenceBook};
use super::{LocalLimiter, Quota, RateLimiter, SocketCap, SocketSlot, NEVER_AFFORDABLE_MS};
use crate::error::AppError;
use crate::protocol::{PresenceStatus, UserId};
use crate::server::serve::Connections;
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// How long one call to Redis may take before this node answers on its own.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How long Redis is left alone after a failed call (calls meanwhile answer locally).
pub const BREAK: Duration = Duration::from_secs(1);

/// Where and as whom a node reaches the shared state.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// `redis://host:port/`.
    pub url: String,
    /// Put before every key (`redis_prefix`).
    pub prefix: String,
    /// This node's id, unique in the cluster (a fresh UUID per process).
    pub node: String,
    /// How long this node counts as alive after its last heartbeat.
    pub alive_ttl: Duration,
}

/// What a driver writes again on every heartbeat (its own counts).
trait Refresh: Send + Sync {
    fn refresh(&self, node: &Node, pipe: &mut redis::Pipeline);
    /// Users who had sockets on a node found dead by this one's heartbeat.
    fn departed(&self, users: Vec<String>) {
        let _ = users;
    }
    /// This node's key had lapsed: others may have taken it for dead.
    fn lapsed(&self) {}
}

/// One node's link to the shared state: the connection, the heartbeat, the fallback switch.
pub struct Node {
    id: String,
    prefix: String,
    alive_ttl: Duration,
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    /// Redis failed: left alone until then.
    down_until: Mutex<Option<Instant>>,
    /// An outage is going on (logged once).
    outage: AtomicBool,
    refreshers: Mutex<Vec<Weak<dyn Refresh>>>,
    heartbeat: Mutex<Option<tokio::task::AbortHandle>>,
    /// Whether a heartbeat has reached Redis (before it, no key of ours is expected).
    beaten: AtomicBool,
}

/// Lua helpers every counting script starts with.
const PRELUDE: &str = r#"
local function seq(v) return tonumber(string.match(v, '(%d+)$')) or 0 end
local function put(key, node, value, ttl)
  local old = redis.call('HGET', key, node)
  if old and seq(old) > seq(value) then return 0 end
  redis.call('HSET', key, node, value)
  redis.call('PEXPIRE', key, ttl)
  return 1
end
local alive_nodes = {}
local function alive(prefix, me, node)
  if node == me then return true end
  if alive_nodes[node] == nil then
    alive_nodes[node] = redis.call('EXISTS', prefix .. node) == 1
  end
  return alive_nodes[node]
end
local function status(key, me, prefix, clean)
  local s, a = 0, 0
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if alive(prefix, me, all[i]) then
      local fs, fa = string.match(all[i + 1], '^(%d+),(%d+)')
      s = s + (tonumber(fs) or 0)
      a = a + (tonumber(fa) or 0)
    elseif clean then
      redis.call('HDEL', key, all[i])
    end
  end
  if s == 0 then return 0 elseif a >= s then return 1 else return 2 end
end
"#;

fn script(cell: &'static OnceLock<Script>, body: &str) -> &'static Script {
    cell.get_or_init(|| Script::new(&format!("{PRELUDE}\n{body}")))
}

/// GCRA: KEYS[1] the key; ARGV: emission interval (µs), burst, cost, want (at least cost).
/// Spends as much of `want` as the budget affords, and at least `cost`: returns
/// `{spent, 0}`, or `{0, ms}` with the milliseconds until `cost` could be spent.
fn gcra() -> &'static Script {
    static CELL: OnceLock<Script> = OnceLock::new();
    CELL.get_or_init(|| {
        Script::new(
            r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local fits = math.floor((now - tat) / interval + burst + 1e-6)
if fits < cost then
  local allow_at = tat + cost * interval - burst * interval
  return {0, math.max(1, math.ceil((allow_at - now) / 1000))}
end
local spent = math.min(want, fits)
local new_tat = tat + spent * interval
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX',
  math.max(1, math.ceil((new_tat - now) / 1000)))
return {spent, 0}
"#,
        )
    })
}

/// KEYS[1] a hash; ARGV: node, value, ttl (ms). Writes the node's field unless it is newer.
fn put() -> &'static Script {
    static CELL: OnceLock<Script> = OnceLock::new();
    script(&CELL, "return put(KEYS[1], ARGV[1], ARGV[2], ARGV[3])")
}

/// KEYS[1] an address's sockets; ARGV: node, "count,seq", ttl, alive prefix, cap. Admits
/// (1, and writes) when the live nodes' sockets with this node's new count fit the cap.
fn admit() -> &'static Script {
    static CELL: OnceLock<Script> = OnceLock::new();
    script(
        &CELL,
        r#"
local mine = tonumber(string.match(ARGV[2], '^(%d+)'))
local others = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i] ~= ARGV[1] then
    if alive(ARGV[4], ARGV[1], all[i]) then
      others = others + (tonumber(string.match(all[i + 1], '^(%d+)')) or 0)
    else
      redis.call('HDEL', KEYS[1], all[i])
    end
  end
end
if others + mine > tonumber(ARGV[5]) then return 0 end
put(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1
"#,
    )
}

/// KEYS[1] a user's presence, KEYS[2] this node's users; ARGV: node, "sockets,away,seq",
/// ttl, alive prefix, the user. Returns the cluster-wide status before and after (0 offline,
/// 1 away, 2 online).
fn presence_update() -> &'static Script {
    static CELL: OnceLock<Script> = OnceLock::new();
    script(
        &CELL,
        r#"
local before = status(KEYS[1], ARGV[1], ARGV[4], true)
put(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
if string.match(ARGV[2], '^0,') then
  redis.call('SREM', KEYS[2], ARGV[5])
else
  redis.call('SADD', KEYS[2], ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return {before, status(KEYS[1], ARGV[1], ARGV[4], false)}
"#,
    )
}

/// KEYS[1] the set of nodes; ARGV: alive prefix, node-users prefix. Takes every node whose
/// `node:` key expired out of the set and returns the users it had, forgetting them: of the
/// live nodes that run it, one gets each dead node's users.
fn dead_nodes_users() -> &'static Script {
    static CELL: OnceLock<Script> = OnceLock::new();
    CELL.get_or_init(|| {
        Script::new(
            r#"
local out = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. node) == 0 then
    redis.call('SREM', KEYS[1], node)
    local users = ARGV[2] .. node
    for _, user in ipairs(redis.call('SMEMBERS', users)) do out[#out + 1] = user end
    redis.call('DEL', users)
  end
end
return out
"#,
        )
    })
}

/// KEYS: users' presence; ARGV: node, alive prefix. Each one's status (as above).
fn presence_read() -> &'static Script {
    static CELL: OnceLock<Script> = OnceLock::new();
    script(
        &CELL,
        r#"
local out = {}
for i = 1, #KEYS do out[i] = status(KEYS[i], ARGV[1], ARGV[2], false) end
return out
"#,
    )
}

fn status_code(code: i64) -> PresenceStatus {
    match code {
        2 => PresenceStatus::Online,
        1 => PresenceStatus::Away,
        _ => PresenceStatus::Offline,
    }
}

impl Node {
    /// Links this node to the shared state and starts its heartbeat (the first one is
    /// tried before this returns). Fails only on a malformed URL: an unreachable Redis is an
    /// outage, answered locally until it is back.
    pub async fn start(options: NodeOptions) -> Result<Arc<Node>, String> {
        let client = redis::Client::open(options.url.as_str()).map_err(|e| e.to_string())?;
        let node = Arc::new(Node {
            id: options.node,
            prefix: options.prefix,
            alive_ttl: options.alive_ttl.max(Duration::from_millis(30)),
            client,
            conn: OnceCell::new(),
            down_until: Mutex::new(None),
            outage: AtomicBool::new(false),
            refreshers: Mutex::default(),
            heartbeat: Mutex::new(None),
            beaten: AtomicBool::new(false),
        });
        node.beat().await;
        let every = node.alive_ttl / 3;
        let weak = Arc::downgrade(&node);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(node) = weak.upgrade() else { return };
                node.beat().await;
            }
        });
        *node.heartbeat.lock().expect("heartbeat lock") = Some(task.abort_handle());
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Stops the heartbeat, as if the process had died (for tests: the node's key expires
    /// and its counts stop counting elsewhere).
    pub fn halt(&self) {
        if let Some(task) = self.heartbeat.lock().expect("heartbeat lock").take() {
            task.abort();
        }
    }

    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    fn alive_prefix(&self) -> String {
        self.key("node:")
    }

    /// The set of users with a socket on node `id`.
    fn users_key(&self, id: &str) -> String {
        self.key(&format!("node-users:{id}"))
    }

    /// How long a hash of counts outlives its last refresh (three heartbeat periods' worth
    /// of TTLs: only hashes no live node refreshes expire).
    fn hash_ttl_ms(&self) -> u64 {
        u64::try_from(self.alive_ttl.as_millis() * 3).unwrap_or(u64::MAX)
    }

    fn register(&self, refresher: Weak<dyn Refresh>) {
        self.refreshers
            .lock()
            .expect("refreshers lock")
            .push(refresher);
    }

    /// One heartbeat: this node is alive, and its counts are what it holds.
    async fn beat(&self) -> bool {
        let mut pipe = redis::pipe();
        let ttl = u64::try_from(self.alive_ttl.as_millis()).unwrap_or(u64::MAX);
        // One result: whether our key was still there.
        pipe.cmd("SET")
            .arg(self.key(&format!("node:{}", self.id)))
            .arg(1)
            .arg("PX")
            .arg(ttl)
            .arg("GET");
        pipe.cmd("SADD")
            .arg(self.key("nodes"))
            .arg(&self.id)
            .ignore();
        pipe.load_script(put()).ignore();
        // The other result: the users of nodes found dead (after our own key is set).
        pipe.load_script(dead_nodes_users()).ignore();
        pipe.invoke_script(
            dead_nodes_users()
                .key(self.key("nodes"))
                .arg(self.alive_prefix())
                .arg(self.users_key("")),
        );
        let refreshers: Vec<Arc<dyn Refresh>> = {
            let mut refreshers = self.refreshers.lock().expect("refreshers lock");
            refreshers.retain(|r| r.strong_count() > 0);
            refreshers.iter().filter_map(Weak::upgrade).collect()
        };
        for r in &refreshers {
            r.refresh(self, &mut pipe);
        }
        let Some((was, departed)) = self
            .call(|mut conn| async move {
                pipe.query_async::<(Option<String>, Vec<String>)>(&mut conn)
                    .await
            })
            .await
        else {
            return false;
        };
        if was.is_none() && self.beaten.swap(true, Ordering::Relaxed) {
            tracing::warn!("shared limits: this node's key had lapsed; telling its users again");
            for r in &refreshers {
                r.lapsed();
            }
        }
        if !departed.is_empty() {
            for r in &refreshers {
                r.departed(departed.clone());
            }
        }
        true
    }

    /// Runs `f` on the connection within [`CALL_TIMEOUT`]; `None` when Redis failed, was
    /// slow, or is being left alone after a failure.
    async fn call<T, F, Fut>(&self, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if let Some(until) = *self.down_until.lock().expect("down lock") {
            if Instant::now() < until {
                return None;
            }
        }
        let attempt = tokio::time::timeout(CALL_TIMEOUT, async {
            let conn = self
                .conn
                .get_or_try_init(|| {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(CALL_TIMEOUT)
                        .set_response_timeout(CALL_TIMEOUT)
                        .set_number_of_retries(1);
                    ConnectionManager::new_with_config(self.client.clone(), config)
                })
                .await?
                .clone();
            f(conn).await
        })
        .await;
        let error = match attempt {
            Ok(Ok(value)) => {
                if self.outage.swap(false, Ordering::Relaxed) {
                    tracing::info!("shared limits: Redis answers again");
                }
                return Some(value);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {CALL_TIMEOUT:?}"),
        };
        *self.down_until.lock().expect("down lock") = Some(Instant::now() + BREAK);
        if !self.outage.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                %error,
                "shared limits: Redis unreachable; limits and presence are per node until it is back"
            );
        }
        None
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A keyed rate limit shared by every node (GCRA on Redis), with this node's own limiter
/// for when Redis cannot answer.
pub struct RedisLimiter {
    node: Arc<Node>,
    /// `{prefix}:rl:{name}:`
    keys: String,
    /// Microseconds per unit.
    interval_us: String,
    burst: u32,
    leases: Mutex<Leases>,
    local: LocalLimiter,
}

/// How long units a node took ahead for a key stay this node's to spend; what is left then is
/// lost (the shared budget has counted it), so a limit can refuse a little early, never late.
pub const LEASE_TTL: Duration = Duration::from_millis(200);
/// The most units one trip to Redis takes ahead for one key.
pub const LEASE_MAX: u32 = 32;
/// Keys with a lease on one node, at most (past it, keys are checked one trip each).
pub const LEASED_KEYS: usize = 10_000;

/// Units of a key's budget this node took from Redis ahead of use. A key that keeps being
/// checked on this node takes twice as many ahead on each trip (up to [`Leases`]'
/// `max_ahead`), so a busy sender costs a trip every few messages instead of every one,
/// while a key checked now and then takes only what it spends.
struct Lease {
    /// Units left to spend here.
    units: u32,
    /// How many the last trip took ahead (the next one takes about twice that).
    ahead: u32,
    /// When the units are lost, and the key counts as quiet again.
    until: Instant,
}

impl RedisLimiter {
    /// The limit called `name` of `quota` per key.
    pub fn new(node: Arc<Node>, name: &str, quota: Quota) -> Self {
        let interval = quota.replenish_interval().as_nanos() as f64 / 1000.0;
        let burst = quota.burst_size().get();
        RedisLimiter {
            keys: node.key(&format!("rl:{name}:")),
            node,
            interval_us: format!("{interval}"),
            burst,
            // A quarter of the burst at most: a lease never holds much of anyone's budget.
            leases: Mutex::new(Leases::new((burst / 4).min(LEASE_MAX), LEASED_KEYS)),
            local: LocalLimiter::new(quota),
        }
    }
}

/// One limit's leases on this node, for at most `capacity` keys.
struct Leases {
    of: HashMap<String, Lease>,
    /// The most a lease takes beyond the cost asked for.
    max_ahead: u32,
    capacity: usize,
}

impl Leases {
    fn new(max_ahead: u32, capacity: usize) -> Self {
        Leases {
            of: HashMap::new(),
            max_ahead,
            capacity,
        }
    }

    /// Spends `cost` from the lease on `key`, if it has that much left; otherwise says how
    /// many units the next trip should take ahead.
    fn spend(&mut self, key: &str, cost: u32, now: Instant) -> Result<(), u32> {
        match self.of.get_mut(key) {
            Some(lease) if lease.until > now => {
                if lease.units >= cost {
                    lease.units -= cost;
                    return Ok(());
                }
                Err((lease.ahead * 2 + 1).min(self.max_ahead))
            }
            _ => Err(0),
        }
    }

    /// Keeps what a trip took beyond the cost as the lease on `key` (a key met for the first
    /// time is remembered with none, so that a second check soon takes some ahead). When
    /// full, leases that are over make room first.
    fn keep(&mut self, key: &str, units: u32, ahead: u32, now: Instant) {
        let lease = Lease {
            units,
            ahead,
            until: now + LEASE_TTL,
        };
        if let Some(held) = self.of.get_mut(key) {
            *held = lease;
            return;
        }
        if self.of.len() >= self.capacity {
            self.forget_over(now);
        }
        if self.of.len() < self.capacity {
            self.of.insert(key.to_string(), lease);
        }
    }

    /// Forgets the leases that are over.
    fn forget_over(&mut self, now: Instant) {
        self.of.retain(|_, lease| lease.until > now);
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(&self, key: &str, cost: u32) -> Result<(), AppError> {
        let cost = cost.max(1);
        if cost > self.burst {
            return Err(AppError::RateLimited {
                retry_after_ms: NEVER_AFFORDABLE_MS,
            });
        }
        let spent = self
            .leases
            .lock()
            .expect("leases lock")
            .spend(key, cost, Instant::now());
        let ahead = match spent {
            Ok(()) => return Ok(()),
            Err(ahead) => ahead,
        };
        let redis_key = format!("{}{key}", self.keys);
        let answer = self
            .node
            .call(|mut conn| async move {
                let mut invocation = gcra().key(&redis_key);
                invocation
                    .arg(&self.interval_us)
                    .arg(self.burst)
                    .arg(cost)
                    .arg(cost + ahead);
                invocation.invoke_async::<(u32, u64)>(&mut conn).await
            })
            .await;
        match answer {
            Some((spent, _)) if spent >= cost => {
                self.leases.lock().expect("leases lock").keep(
                    key,
                    spent - cost,
                    ahead,
                    Instant::now(),
                );
                Ok(())
            }
            Some((_, wait)) => Err(AppError::RateLimited {
                retry_after_ms: wait.max(1),
            }),
            None => self.local.check_now(key, cost),
        }
    }

    fn forget_idle(&self) {
        self.local.forget_idle();
        self.leases
            .lock()
            .expect("leases lock")
            .forget_over(Instant::now());
    }
}

/// Counts of this node with the sequence number of their last change.
struct Counts<K> {
    of: HashMap<K, (u32, u32)>,
    seq: u64,
}

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Counts {
            of: HashMap::new(),
            seq: 0,
        }
    }
}

/// The WebSocket cap: the total per process (its descriptors), the per-address cap over
/// the cluster.
pub struct RedisSockets {
    node: Arc<Node>,
    me: Weak<RedisSockets>,
    local: Arc<Connections>,
    max_per_ip: usize,
    counts: Mutex<Counts<IpAddr>>,
}

impl RedisSockets {
    /// `max_total` sockets on this process, `max_per_ip` from one address in the cluster.
    pub fn new(node: Arc<Node>, max_total: usize, max_per_ip: usize) -> Arc<Self> {
        let sockets = Arc::new_cyclic(|me| RedisSockets {
            node: node.clone(),
            me: me.clone(),
            local: Connections::new(max_total, max_per_ip),
            max_per_ip: max_per_ip.max(1),
            counts: Mutex::default(),
        });
        let weak: Weak<RedisSockets> = Arc::downgrade(&sockets);
        node.register(weak);
        sockets
    }

    /// Changes this node's count for `ip` by one; its field's new value.
    fn bump(&self, ip: IpAddr, up: bool) -> String {
        let mut counts = self.counts.lock().expect("counts lock");
        counts.seq += 1;
        let seq = counts.seq;
        let count = counts.of.entry(ip).or_default();
        count.0 = if up {
            count.0 + 1
        } else {
            count.0.saturating_sub(1)
        };
        let value = format!("{},{seq}", count.0);
        if count.0 == 0 {
            counts.of.remove(&ip);
        }
        value
    }

    fn key(&self, ip: IpAddr) -> String {
        self.node.key(&format!("sockets:{ip}"))
    }

    fn release(&self, ip: IpAddr) {
        let value = self.bump(ip, false);
        let (Some(me), Ok(runtime)) = (self.me.upgrade(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        runtime.spawn(async move {
            let key = me.key(ip);
            let ttl = me.node.hash_ttl_ms();
            let node = me.node.id().to_string();
            me.node
                .call(|mut conn| async move {
                    let mut invocation = put().key(&key);
                    invocation.arg(&node).arg(&value).arg(ttl);
                    invocation.invoke_async::<i64>(&mut conn).await
                })
                .await;
        });
    }
}

impl Refresh for RedisSockets {
    fn refresh(&self, node: &Node, pipe: &mut redis::Pipeline) {
        let counts = self.counts.lock().expect("counts lock");
        let ttl = node.hash_ttl_ms();
        for (ip, (count, _)) in &counts.of {
            pipe.invoke_script(
                put()
                    .key(self.key(*ip))
                    .arg(node.id())
                    .arg(format!("{count},{}", counts.seq))
                    .arg(ttl),
            )
            .ignore();
        }
    }
}

#[async_trait]
impl SocketCap for RedisSockets {
    async fn admit(&self, ip: IpAddr) -> Option<SocketSlot> {
        let admitted = self.local.admit(ip)?;
        let value = self.bump(ip, true);
        let me = self.me.clone();
        let slot = SocketSlot {
            _local: admitted,
            on_drop: Some(Box::new(move || {
                if let Some(me) = me.upgrade() {
                    me.release(ip);
                }
            })),
        };
        let key = self.key(ip);
        let (ttl, alive, max) = (
            self.node.hash_ttl_ms(),
            self.node.alive_prefix(),
            self.max_per_ip,
        );
        let node = self.node.id().to_string();
        let admitted = self
            .node
            .call(|mut conn| async move {
                let mut invocation = admit().key(&key);
                invocation
                    .arg(&node)
                    .arg(&value)
                    .arg(ttl)
                    .arg(&alive)
                    .arg(max);
                invocation.invoke_async::<i64>(&mut conn).await
            })
            .await;
        match admitted {
            // Admitted by the cluster, or Redis cannot say: this node's own cap held.
            Some(1) | None => Some(slot),
            _ => None,
        }
    }

    fn open_from(&self, ip: IpAddr) -> usize {
        self.local.open_from(ip)
    }
}

/// Batches of departed users held for [`PresenceBook::departures`] (one per dead node
/// found; more are dropped, logged).
const DEPARTURE_BATCHES: usize = 64;

/// Presence over the cluster: this node's sockets per user, written to Redis and combined
/// there with the other live nodes'.
pub struct RedisPresence {
    node: Arc<Node>,
    counts: Mutex<Counts<UserId>>,
    departed: tokio::sync::mpsc::Sender<Vec<UserId>>,
    departures: Mutex<Option<tokio::sync::mpsc::Receiver<Vec<UserId>>>>,
}

impl RedisPresence {
    /// Presence shared through `node`.
    pub fn new(node: Arc<Node>) -> Arc<Self> {
        let (departed, departures) = tokio::sync::mpsc::channel(DEPARTURE_BATCHES);
        let presence = Arc::new(RedisPresence {
            node: node.clone(),
            counts: Mutex::default(),
            departed,
            departures: Mutex::new(Some(departures)),
        });
        let weak: Weak<RedisPresence> = Arc::downgrade(&presence);
        node.register(weak);
        presence
    }

    fn key(&self, user: &UserId) -> String {
        self.node.key(&format!("presence:{}", user.0))
    }

    fn local_status(&self, user: &UserId) -> PresenceStatus {
        let counts = self.counts.lock().expect("presence lock");
        counts
            .of
            .get(user)
            .map_or(PresenceStatus::Offline, |&(s, a)| status_from(s, a))
    }
}

impl Refresh for RedisPresence {
    fn refresh(&self, node: &Node, pipe: &mut redis::Pipeline) {
        let counts = self.counts.lock().expect("presence lock");
        let ttl = node.hash_ttl_ms();
        for (user, (sockets, away)) in &counts.of {
            pipe.invoke_script(
                put()
                    .key(self.key(user))
                    .arg(node.id())
                    .arg(format!("{sockets},{away},{}", counts.seq))
                    .arg(ttl),
            )
            .ignore();
        }
        if !counts.of.is_empty() {
            let users = node.users_key(node.id());
            for chunk in counts.of.keys().collect::<Vec<_>>().chunks(1000) {
                let ids: Vec<&str> = chunk.iter().map(|u| u.0.as_str()).collect();
                pipe.cmd("SADD").arg(&users).arg(ids).ignore();
            }
            pipe.cmd("PEXPIRE").arg(&users).arg(ttl).ignore();
        }
    }

    fn lapsed(&self) {
        let mine: Vec<String> = {
            let counts = self.counts.lock().expect("presence lock");
            counts.of.keys().map(|u| u.0.clone()).collect()
        };
        if !mine.is_empty() {
            self.departed(mine);
        }
    }

    fn departed(&self, users: Vec<String>) {
        let count = users.len();
        let users = users.into_iter().map(UserId).collect();
        if self.departed.try_send(users).is_err() {
            tracing::warn!(
                count,
                "presence: departed users dropped (too many dead nodes at once)"
            );
        }
    }
}

#[async_trait]
impl PresenceBook for RedisPresence {
    async fn change(&self, user: &UserId, change: Change) -> Option<PresenceStatus> {
        let (value, before, after) = {
            let mut counts = self.counts.lock().expect("presence lock");
            counts.seq += 1;
            let seq = counts.seq;
            let entry = counts.of.entry(user.clone()).or_default();
            let before = status_from(entry.0, entry.1);
            change.apply(entry);
            let after = status_from(entry.0, entry.1);
            let value = format!("{},{},{seq}", entry.0, entry.1);
            if entry.0 == 0 {
                counts.of.remove(user);
            }
            (value, before, after)
        };
        let (key, users) = (self.key(user), self.node.users_key(self.node.id()));
        let (ttl, alive) = (self.node.hash_ttl_ms(), self.node.alive_prefix());
        let node = self.node.id().to_string();
        let answer = self
            .node
            .call(|mut conn| async move {
                let mut invocation = presence_update().key(&key);
                invocation.key(&users);
                invocation.arg(&node).arg(&value).arg(ttl).arg(&alive);
                invocation.arg(&user.0);
                invocation.invoke_async::<(i64, i64)>(&mut conn).await
            })
            .await;
        let (before, after) = match answer {
            Some((b, a)) => (status_code(b), status_code(a)),
            None => (before, after),
        };
        (before != after).then_some(after)
    }

    async fn statuses(&self, users: &[UserId]) -> Vec<PresenceStatus> {
        if users.is_empty() {
            return Vec::new();
        }
        let keys: Vec<String> = users.iter().map(|u| self.key(u)).collect();
        let (node, alive) = (self.node.id().to_string(), self.node.alive_prefix());
        let answer = self
            .node
            .call(|mut conn| async move {
                let mut invocation = presence_read().prepare_invoke();
                for key in &keys {
                    invocation.key(key);
                }
                invocation.arg(&node).arg(&alive);
                invocation.invoke_async::<Vec<i64>>(&mut conn).await
            })
            .await;
        match answer {
            Some(codes) if codes.len() == users.len() => {
                codes.into_iter().map(status_code).collect()
            }
            _ => users.iter().map(|u| self.local_status(u)).collect(),
        }
    }

    fn departures(&self) -> Option<tokio::sync::mpsc::Receiver<Vec<UserId>>> {
        self.departures.lock().expect("departures lock").take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Departed users wait for the announcer in at most [`DEPARTURE_BATCHES`] batches; more
    /// are dropped rather than held.
    #[tokio::test]
    async fn departures_waiting_are_bounded() {
        let node = Node::start(NodeOptions {
            url: crate::server::testing::Services::shared().redis_url.clone(),
            prefix: crate::server::testing::fresh_prefix(),
            node: "bounded".into(),
            alive_ttl: Duration::from_secs(10),
        })
        .await
        .unwrap();
        let presence = RedisPresence::new(node);
        let mut departures = presence.departures().unwrap();
        for k in 0..DEPARTURE_BATCHES + 10 {
            presence.departed(vec![format!("u{k}")]);
        }
        let mut held = Vec::new();
        while let Ok(batch) = departures.try_recv() {
            held.push(batch);
        }
        assert_eq!(held.len(), DEPARTURE_BATCHES);
        assert_eq!(
            held[0],
            [UserId("u0".into())],
            "the first kept, the last dropped"
        );
    }

    #[test]
    fn a_busy_key_takes_more_ahead_each_trip_up_to_its_most() {
        let mut leases = Leases::new(10, 100);
        let now = Instant::now();
        assert_eq!(
            leases.spend("ada", 1, now),
            Err(0),
            "a key met first takes none ahead"
        );
        leases.keep("ada", 0, 0, now);
        let mut asked = Vec::new();
        for _ in 0..5 {
            let ahead = leases.spend("ada", 1, now).unwrap_err();
            asked.push(ahead);
            leases.keep("ada", ahead, ahead, now);
            for _ in 0..ahead {
                assert_eq!(leases.spend("ada", 1, now), Ok(()), "spent here");
            }
        }
        assert_eq!(asked, [1, 3, 7, 10, 10]);
        // Once over, what is left is not spent and the key is quiet again.
        leases.keep("ada", 5, 10, now);
        assert_eq!(leases.spend("ada", 1, now + LEASE_TTL), Err(0));
    }

    #[test]
    fn a_full_book_makes_room_from_leases_that_are_over() {
        let mut leases = Leases::new(10, 2);
        let now = Instant::now();
        leases.keep("a", 3, 3, now);
        leases.keep("b", 3, 3, now);
        leases.keep("c", 3, 3, now);
        assert_eq!(leases.of.len(), 2, "full: no third key while both are live");
        assert_eq!(leases.spend("c", 1, now), Err(0));
        let later = now + LEASE_TTL;
        leases.keep("c", 3, 3, later);
        assert_eq!(leases.of.len(), 1, "the two that were over made room");
        assert_eq!(leases.spend("c", 1, later), Ok(()));
    }
}
