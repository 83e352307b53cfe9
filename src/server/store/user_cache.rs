//! The users seen lately, a least-recently-used cache with a bound in entries, so that
//! identity checks rarely read the disk and memory follows who is active.

use crate::protocol::{UserId, UserInfo};
use lru::LruCache;

/// Users by id and by token hash, at most `capacity` of each.
pub struct UserCache {
    by_id: LruCache<UserId, UserInfo>,
    by_token: LruCache<String, UserId>,
    /// A capacity of 0 keeps nothing (several nodes: another may change a user).
    keeps: bool,
}

impl UserCache {
    /// A cache of at most `capacity` users (0: none).
    pub fn new(capacity: usize) -> Self {
        let keeps = capacity > 0;
        let capacity = std::num::NonZeroUsize::new(capacity.max(1)).expect("at least one");
        UserCache {
            by_id: LruCache::new(capacity),
            by_token: LruCache::new(capacity),
            keeps,
        }
    }

    /// Adds or refreshes a user (and the hash of their token, when known).
    pub fn insert(&mut self, token_hash: Option<String>, user: &UserInfo) {
        if !self.keeps {
            return;
        }
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

    /// Forgets a user (changed elsewhere): the next look-up, by id or token, reads the store.
    pub fn forget(&mut self, id: &UserId) {
        self.by_id.pop(id);
    }

    /// Users cached now.
    pub fn count(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_of_none_keeps_nothing() {
        let ada = UserInfo {
            id: UserId("ada".into()),
            name: Some("Ada".into()),
        };
        let mut kept = UserCache::new(2);
        kept.insert(Some("h".into()), &ada);
        assert_eq!(kept.by_token("h"), Some(ada.clone()));
        let mut none = UserCache::new(0);
        none.insert(Some("h".into()), &ada);
        assert_eq!(none.by_token("h"), None);
        assert_eq!(none.by_id(&ada.id), None);
    }
}
