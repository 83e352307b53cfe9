//! Limits that hold for the whole cluster: keyed rate limits (writes, opens, typing, the
//! per-address budgets), the per-address WebSocket cap, and presence. Each has an
//! in-process driver (one node: exactly what a single Flack process always did) and a Redis
//! driver ([`redis`]) that several nodes share. [`Backing`] picks the drivers:
//! [`Backing::Local`] when `redis_url` is empty, [`Backing::Redis`] otherwise.
//!
//! When Redis cannot be reached (or does not answer within [`redis::CALL_TIMEOUT`]), a Redis
//! driver answers from its own in-process state for that call: the limit fails open to this
//! node's local limit instead of refusing everyone or hanging, so the cluster keeps serving
//! through a Redis restart. This is logged once per outage.

pub mod presence;
pub mod redis;

use super::serve::{Admitted, Connections};
use crate::error::AppError;
use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::DefaultKeyedRateLimiter;
use presence::{Presence, PresenceBook};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

pub use governor::Quota;

/// How long a caller whose single request costs more than a limit's whole burst is told to
/// wait: it can never be afforded.
pub const NEVER_AFFORDABLE_MS: u64 = 60_000;

/// A keyed rate limit: each key (a user, a client address) has its own budget of a quota.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Spends `cost` (at least one) of `key`'s budget, or refuses with
    /// [`AppError::RateLimited`] saying when to try again (a cost above the whole burst is
    /// refused with [`NEVER_AFFORDABLE_MS`]).
    async fn check(&self, key: &str, cost: u32) -> Result<(), AppError>;
    /// Forgets in-process state of keys whose budgets are full again (keeps maps small).
    fn forget_idle(&self);
}

/// A refusal by governor, saying when to try again.
pub fn refused(not_until: governor::NotUntil<governor::clock::QuantaInstant>) -> AppError {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    AppError::RateLimited {
        retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
    }
}

/// The in-process driver: governor's keyed limiter, as a single node always had.
pub struct LocalLimiter(DefaultKeyedRateLimiter<String>);

impl LocalLimiter {
    /// A limiter of `quota` per key.
    pub fn new(quota: Quota) -> Self {
        LocalLimiter(DefaultKeyedRateLimiter::keyed(quota))
    }

    /// The synchronous check (see [`RateLimiter::check`]).
    pub fn check_now(&self, key: &str, cost: u32) -> Result<(), AppError> {
        let n = NonZeroU32::new(cost.max(1)).expect("at least one");
        match self.0.check_key_n(&key.to_string(), n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(refused(not_until)),
            Err(_) => Err(AppError::RateLimited {
                retry_after_ms: NEVER_AFFORDABLE_MS,
            }),
        }
    }
}

#[async_trait]
impl RateLimiter for LocalLimiter {
    async fn check(&self, key: &str, cost: u32) -> Result<(), AppError> {
        self.check_now(key, cost)
    }

    fn forget_idle(&self) {
        self.0.retain_recent();
    }
}

/// One admitted WebSocket's place under the per-address cap; freed when dropped.
pub struct SocketSlot {
    _local: Admitted,
    on_drop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl SocketSlot {
    fn local(admitted: Admitted) -> Self {
        SocketSlot {
            _local: admitted,
            on_drop: None,
        }
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        if let Some(release) = self.on_drop.take() {
            release();
        }
    }
}

/// The cap on open WebSockets: in total on this process, and per client address (on
/// Redis: per address across the cluster).
#[async_trait]
pub trait SocketCap: Send + Sync {
    /// A place for a WebSocket from `ip` (already a [`budget_key`](super::budgets::budget_key)),
    /// or `None` when a cap is reached.
    async fn admit(&self, ip: IpAddr) -> Option<SocketSlot>;
    /// WebSockets open now from `ip` on this process.
    fn open_from(&self, ip: IpAddr) -> usize;
}

/// The in-process socket cap: [`Connections`].
pub struct LocalSockets(Arc<Connections>);

impl LocalSockets {
    /// `max_total` sockets on this process, `max_per_ip` from one address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        LocalSockets(Connections::new(max_total, max_per_ip))
    }
}

#[async_trait]
impl SocketCap for LocalSockets {
    async fn admit(&self, ip: IpAddr) -> Option<SocketSlot> {
        self.0.admit(ip).map(SocketSlot::local)
    }

    fn open_from(&self, ip: IpAddr) -> usize {
        self.0.open_from(ip)
    }
}

/// Which drivers the limits and presence use.
#[derive(Clone, Default)]
pub enum Backing {
    /// In this process only (one node).
    #[default]
    Local,
    /// Shared on Redis by every node of the cluster.
    Redis(Arc<redis::Node>),
}

impl Backing {
    /// A keyed rate limit called `name` (unique per kind of limit) of `quota` per key.
    pub fn limiter(&self, name: &str, quota: Quota) -> Arc<dyn RateLimiter> {
        match self {
            Backing::Local => Arc::new(LocalLimiter::new(quota)),
            Backing::Redis(node) => Arc::new(redis::RedisLimiter::new(node.clone(), name, quota)),
        }
    }

    /// The WebSocket cap: `max_total` on this process, `max_per_ip` per client address.
    pub fn socket_cap(&self, max_total: usize, max_per_ip: usize) -> Arc<dyn SocketCap> {
        match self {
            Backing::Local => Arc::new(LocalSockets::new(max_total, max_per_ip)),
            Backing::Redis(node) => redis::RedisSockets::new(node.clone(), max_total, max_per_ip),
        }
    }

    /// Who is online.
    pub fn presence(&self) -> Arc<dyn PresenceBook> {
        match self {
            Backing::Local => Arc::new(Presence::default()),
            Backing::Redis(node) => redis::RedisPresence::new(node.clone()),
        }
    }
}

#[cfg(test)]
mod tests;
