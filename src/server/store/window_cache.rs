//! The SQLite store's memory: the recent windows of the channels in use and the users seen
//! lately, each a least-recently-used cache with a bound (bytes for windows, entries for
//! users), so that memory follows what is active, not everything ever written. What falls
//! out is read from disk again when next needed.

use super::hot::{HotChannel, SharedChannel};
use crate::protocol::{UserId, UserInfo};
use lru::LruCache;
use std::sync::{Arc, Mutex};

/// Recent windows by channel key, within a byte budget.
pub struct WindowCache {
    budget: usize,
    windows: Mutex<LruCache<String, SharedChannel>>,
}

impl WindowCache {
    /// A cache of windows holding about `budget` bytes at most (always at least one window).
    pub fn new(budget: usize) -> Self {
        WindowCache {
            budget,
            windows: Mutex::new(LruCache::unbounded()),
        }
    }

    /// The channel's window, if cached (marks it used).
    pub fn get(&self, key: &str) -> Option<SharedChannel> {
        self.windows.lock().expect("cache lock").get(key).cloned()
    }

    /// The channel's window, if cached, without marking it used.
    pub fn peek(&self, key: &str) -> Option<SharedChannel> {
        self.windows.lock().expect("cache lock").peek(key).cloned()
    }

    /// Caches a window just loaded; returns the cached one.
    pub fn insert(&self, key: String, hot: HotChannel) -> SharedChannel {
        let shared = Arc::new(Mutex::new(hot));
        self.windows
            .lock()
            .expect("cache lock")
            .put(key, shared.clone());
        self.trim();
        shared
    }

    /// Drops least recently used windows until the cache is within its budget.
    pub fn trim(&self) {
        let mut windows = self.windows.lock().expect("cache lock");
        let mut total: usize = windows
            .iter()
            .map(|(_, hot)| hot.lock().expect("channel lock").bytes())
            .sum();
        while total > self.budget && windows.len() > 1 {
            match windows.pop_lru() {
                Some((_, hot)) => total -= hot.lock().expect("channel lock").bytes(),
                None => break,
            }
        }
    }

    /// Windows cached now, and about how many bytes they hold.
    pub fn usage(&self) -> (usize, usize) {
        let windows = self.windows.lock().expect("cache lock");
        let bytes = windows
            .iter()
            .map(|(_, hot)| hot.lock().expect("channel lock").bytes())
            .sum();
        (windows.len(), bytes)
    }
}

/// Users by id and by token hash, at most `capacity` of each.
pub struct UserCache {
    by_id: LruCache<UserId, UserInfo>,
    by_token: LruCache<String, UserId>,
}

impl UserCache {
    /// A cache of at most `capacity` users.
    pub fn new(capacity: usize) -> Self {
        let capacity = std::num::NonZeroUsize::new(capacity.max(1)).expect("at least one");
        UserCache {
            by_id: LruCache::new(capacity),
            by_token: LruCache::new(capacity),
        }
    }

    /// Adds or refreshes a user (and the hash of their token, when known).
    pub fn insert(&mut self, token_hash: Option<String>, user: &UserInfo) {
        if let Some(hash) = token_hash {
            self.by_token.put(hash, user.id.clone());
        }
        self.by_id.put(user.id.clone(), user.clone());
    }

    /// The user holding the token with this hash.
    pub fn by_token(&mut self, token_hash: &str) -> Option<UserInfo> {
        let id = self.by_token.get(token_hash)?.clone();
        self.by_id.get(&id).cloned()
    }

    /// The user with this id.
    pub fn by_id(&mut self, id: &UserId) -> Option<UserInfo> {
        self.by_id.get(id).cloned()
    }

    /// Forgets a token (revoked).
    pub fn forget_token(&mut self, token_hash: &str) {
        self.by_token.pop(token_hash);
    }

    /// Users cached now.
    pub fn count(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Author, ChannelInfo, Message, MessageId};

    fn window(name: &str, body_bytes: usize) -> HotChannel {
        let mut hot = HotChannel::new(
            ChannelInfo {
                name: name.into(),
                created_at: chrono::Utc::now(),
            },
            100,
        );
        hot.push(Message {
            id: MessageId(format!("{name}-1")),
            channel: name.into(),
            seq: 1,
            author: Author {
                id: UserId("u".into()),
                name: "U".into(),
            },
            body: "x".repeat(body_bytes),
            sent_at: chrono::Utc::now(),
            client_id: None,
        });
        hot
    }

    #[test]
    fn windows_past_the_budget_are_dropped_least_recent_first() {
        let cache = WindowCache::new(25_000);
        cache.insert("a".into(), window("a", 10_000));
        cache.insert("b".into(), window("b", 10_000));
        assert!(cache.get("a").is_some(), "a is now the most recent");
        cache.insert("c".into(), window("c", 10_000));
        assert!(cache.peek("b").is_none(), "b was the least recent");
        assert!(cache.peek("a").is_some() && cache.peek("c").is_some());
        let (count, bytes) = cache.usage();
        assert_eq!(count, 2);
        assert!(bytes <= 25_000);
    }

    #[test]
    fn users_are_bounded_in_entries() {
        let mut users = UserCache::new(2);
        for i in 0..5 {
            let user = UserInfo {
                id: UserId(format!("u{i}")),
                name: None,
            };
            users.insert(Some(format!("t{i}")), &user);
        }
        assert_eq!(users.count(), 2);
        assert!(users.by_token("t0").is_none());
        assert!(users.by_token("t4").is_some());
    }
}
