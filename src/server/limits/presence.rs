//! Presence: who is connected, counted from each user's open sockets. [`PresenceBook`] is
//! the contract; [`Presence`] counts in this process (one node), and
//! [`super::redis::RedisPresence`] combines every node's counts on Redis.

use crate::protocol::{PresenceStatus, UserId};
use std::collections::HashMap;
use std::sync::Mutex;

/// What happened to one of a user's sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A socket opened.
    Opened,
    /// A socket closed (`away`: it was away).
    Closed {
        /// It was away when it closed.
        away: bool,
    },
    /// A socket went away (`true`) or came back (`false`).
    Away(bool),
}

impl Change {
    /// Applies this change to a user's (sockets, away sockets).
    pub fn apply(self, counts: &mut (u32, u32)) {
        match self {
            Change::Opened => counts.0 += 1,
            Change::Closed { away } => {
                counts.0 = counts.0.saturating_sub(1);
                if away {
                    counts.1 = counts.1.saturating_sub(1);
                }
            }
            Change::Away(true) => counts.1 += 1,
            Change::Away(false) => counts.1 = counts.1.saturating_sub(1),
        }
    }
}

/// The status of a user with `sockets` open of which `away` are away.
pub fn status_from(sockets: u32, away: u32) -> PresenceStatus {
    match (sockets, away) {
        (0, _) => PresenceStatus::Offline,
        (s, a) if a >= s => PresenceStatus::Away,
        _ => PresenceStatus::Online,
    }
}

/// Who is connected, wherever: the in-process [`Presence`] (one node), or a driver that
/// combines every node's sockets (`limits::redis::RedisPresence`).
#[async_trait::async_trait]
pub trait PresenceBook: Send + Sync {
    /// Applies `change` to `user`'s sockets here; returns the user's new status if it
    /// changed (over the whole cluster).
    async fn change(&self, user: &UserId, change: Change) -> Option<PresenceStatus>;
    /// The statuses of `users` now, in order.
    async fn statuses(&self, users: &[UserId]) -> Vec<PresenceStatus>;
    /// Where to hear of users who had sockets on a node that died: their status may have
    /// changed with no change on any live node, so nobody else would tell. Each dead node's
    /// users reach one live node, in batches. Given once; `None` in one process (no other
    /// node can die).
    fn departures(&self) -> Option<tokio::sync::mpsc::Receiver<Vec<UserId>>> {
        None
    }
}

/// Who is connected: per user, their open sockets and how many of those are away. Bounded
/// by the connection caps (an entry lives only while its user has a socket).
#[derive(Default)]
pub struct Presence {
    users: Mutex<HashMap<UserId, (u32, u32)>>,
}

impl Presence {
    /// Applies a change to a user's counts; returns the new status if it changed.
    fn update(&self, user: &UserId, f: impl FnOnce(&mut (u32, u32))) -> Option<PresenceStatus> {
        let mut users = self.users.lock().expect("presence lock");
        let entry = users.entry(user.clone()).or_default();
        let before = status_from(entry.0, entry.1);
        f(entry);
        let after = status_from(entry.0, entry.1);
        if entry.0 == 0 {
            users.remove(user);
        }
        (before != after).then_some(after)
    }

    /// Whether the user has a socket open that is not away.
    pub fn is_online(&self, user: &UserId) -> bool {
        self.status_of(user) == PresenceStatus::Online
    }

    /// The user's status now.
    pub fn status_of(&self, user: &UserId) -> PresenceStatus {
        let users = self.users.lock().expect("presence lock");
        users
            .get(user)
            .map_or(PresenceStatus::Offline, |&(s, a)| status_from(s, a))
    }
}

#[async_trait::async_trait]
impl PresenceBook for Presence {
    async fn change(&self, user: &UserId, change: Change) -> Option<PresenceStatus> {
        self.update(user, |c| change.apply(c))
    }

    async fn statuses(&self, users: &[UserId]) -> Vec<PresenceStatus> {
        users.iter().map(|u| self.status_of(u)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_follows_the_sockets() {
        let presence = Presence::default();
        let ada = UserId("ada".into());
        assert_eq!(
            presence.update(&ada, |c| c.0 += 1),
            Some(PresenceStatus::Online)
        );
        assert_eq!(presence.update(&ada, |c| c.0 += 1), None, "a second tab");
        assert_eq!(presence.update(&ada, |c| c.1 += 1), None, "one tab away");
        assert_eq!(
            presence.update(&ada, |c| c.1 += 1),
            Some(PresenceStatus::Away)
        );
        assert!(!presence.is_online(&ada));
        assert_eq!(
            presence.update(&ada, |c| {
                c.0 -= 1;
                c.1 -= 1;
            }),
            None
        );
        assert_eq!(
            presence.update(&ada, |c| {
                c.0 -= 1;
                c.1 -= 1;
            }),
            Some(PresenceStatus::Offline)
        );
        assert!(
            presence.users.lock().unwrap().is_empty(),
            "nothing kept for the gone"
        );
    }
}
