//! Budgets for work a client can ask for that costs the server something lasting: new
//! identities and new channels, per client address (IPv6 addresses by their /64, since one
//! machine is given a whole /64). Per-socket frame budgets live with the socket (`ws.rs`).

use super::limits::{refused, Backing, RateLimiter};
use crate::error::AppError;
use governor::{DefaultDirectRateLimiter, Quota};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

/// A budget: so many per hour, sustained, and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Sustained, per hour.
    pub per_hour: u32,
    /// At once.
    pub burst: u32,
}

fn quota_per_hour(allowance: Allowance) -> Quota {
    let per_hour = NonZeroU32::new(allowance.per_hour.max(1)).expect("at least one");
    let burst = NonZeroU32::new(allowance.burst.max(1)).expect("at least one");
    Quota::per_hour(per_hour).allow_burst(burst)
}

/// The key a client address is budgeted under.
pub fn budget_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Per-address budgets for lasting things, and for the bytes of channel windows sent
/// (in this process, or shared by a cluster: see [`Backing`]).
pub struct Budgets {
    identities: Arc<dyn RateLimiter>,
    channels: Arc<dyn RateLimiter>,
    /// KiB of join answers (channel windows), per address.
    join_kib: Arc<dyn RateLimiter>,
}

/// How many bytes of channel windows one address may be sent by joining channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRate {
    /// Sustained, per second.
    pub per_second: usize,
    /// At once.
    pub burst: usize,
}

impl Budgets {
    /// Budgets of `identities` and `channels` per client address, and generous join bytes.
    pub fn new(identities: Allowance, channels: Allowance) -> Self {
        Self::with_joins(
            identities,
            channels,
            ByteRate {
                per_second: usize::MAX / 2,
                burst: usize::MAX / 2,
            },
        )
    }

    /// The same, with a budget of `joins` bytes of channel windows per address.
    pub fn with_joins(identities: Allowance, channels: Allowance, joins: ByteRate) -> Self {
        Self::on(&Backing::Local, identities, channels, joins)
    }

    /// The same, kept on `backing`.
    pub fn on(
        backing: &Backing,
        identities: Allowance,
        channels: Allowance,
        joins: ByteRate,
    ) -> Self {
        let kib = |bytes: usize| {
            NonZeroU32::new(u32::try_from((bytes / 1024).max(1)).unwrap_or(u32::MAX))
                .expect("at least one")
        };
        Budgets {
            identities: backing.limiter("identities", quota_per_hour(identities)),
            channels: backing.limiter("channels", quota_per_hour(channels)),
            join_kib: backing.limiter(
                "join_kib",
                Quota::per_second(kib(joins.per_second)).allow_burst(kib(joins.burst)),
            ),
        }
    }

    /// Spends `bytes` of `ip`'s budget for channel windows (the answers to joining a channel,
    /// which can be megabytes each), or says when it may try again. One answer larger than
    /// the whole burst is never affordable, and refused with a minute's wait.
    pub async fn join_bytes(&self, ip: IpAddr, bytes: usize) -> Result<(), AppError> {
        let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        self.join_kib.check(&key(ip), kib).await
    }

    /// Spends one new identity of `ip`'s budget, or says when it may try again.
    pub async fn new_identity(&self, ip: IpAddr) -> Result<(), AppError> {
        self.identities.check(&key(ip), 1).await
    }

    /// Spends one new channel of `ip`'s budget, or says when it may try again.
    pub async fn new_channel(&self, ip: IpAddr) -> Result<(), AppError> {
        self.channels.check(&key(ip), 1).await
    }

    /// Forgets addresses whose budgets are full again (keeps the maps small).
    pub fn forget_idle(&self) {
        self.identities.forget_idle();
        self.channels.forget_idle();
        self.join_kib.forget_idle();
    }
}

/// The limiter key of a client address.
fn key(ip: IpAddr) -> String {
    budget_key(ip).to_string()
}

/// One socket's budget for frames of every kind.
pub struct FrameBudget(DefaultDirectRateLimiter);

impl FrameBudget {
    /// `per_second` sustained, `burst` at once.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let per_second = NonZeroU32::new(per_second.max(1)).expect("at least one");
        let burst = NonZeroU32::new(burst.max(1)).expect("at least one");
        FrameBudget(DefaultDirectRateLimiter::direct(
            Quota::per_second(per_second).allow_burst(burst),
        ))
    }

    /// Spends one frame, or says when the next is allowed.
    pub fn spend(&self) -> Result<(), AppError> {
        self.0.check().map_err(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_address_spends_its_own_budget() {
        let budgets = Budgets::new(
            Allowance {
                per_hour: 1,
                burst: 2,
            },
            Allowance {
                per_hour: 1,
                burst: 1,
            },
        );
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        assert!(budgets.new_identity(a).await.is_ok());
        assert!(budgets.new_identity(a).await.is_ok());
        assert!(matches!(
            budgets.new_identity(a).await,
            Err(AppError::RateLimited { retry_after_ms }) if retry_after_ms > 1000
        ));
        assert!(budgets.new_identity(b).await.is_ok(), "others keep theirs");
        assert!(
            budgets.new_channel(a).await.is_ok(),
            "channels are a separate budget"
        );
        assert!(budgets.new_channel(a).await.is_err());
    }

    #[tokio::test]
    async fn window_bytes_are_budgeted_per_address() {
        let few = Allowance {
            per_hour: 1,
            burst: 1,
        };
        let budgets = Budgets::with_joins(
            few,
            few,
            ByteRate {
                per_second: 1024,
                burst: 100 * 1024,
            },
        );
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(budgets.join_bytes(a, 60 * 1024).await.is_ok());
        assert!(
            budgets.join_bytes(a, 60 * 1024).await.is_err(),
            "over the burst"
        );
        assert!(budgets
            .join_bytes("127.0.0.3".parse().unwrap(), 60 * 1024)
            .await
            .is_ok());
        assert!(
            budgets.join_bytes(a, 1).await.is_ok(),
            "small answers still fit"
        );
    }

    #[test]
    fn ipv6_addresses_share_their_slash_64() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let two: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(budget_key(one), budget_key(two));
        assert_ne!(budget_key(one), budget_key(other));
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert_eq!(budget_key(mapped), "127.0.0.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_socket_may_burst_then_waits() {
        let budget = FrameBudget::new(1, 3);
        for _ in 0..3 {
            assert!(budget.spend().is_ok());
        }
        assert!(budget.spend().is_err());
    }
}
