//! The WebSockets open now: who holds them (by token, so "Sign out" can close every socket of
//! a token, and a node shutting down can close them all) and what they hold (bytes queued for
//! writing, summed over every socket).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Notify};

/// One socket's id and what tells it its token was revoked.
type Listener = (u64, Arc<Notify>);

/// A close code and its reason, for every socket at once.
pub type CloseAll = (u16, &'static str);

/// Every open socket, by the hash of the token it was opened with.
pub struct Sockets {
    next_id: AtomicU64,
    by_token: Mutex<HashMap<String, Vec<Listener>>>,
    /// Set once, when every socket (those open and any opened later) is to close.
    close_all: watch::Sender<Option<CloseAll>>,
    /// Bytes queued for writing, over every socket.
    queued_bytes: Arc<AtomicUsize>,
    /// What happened to sockets under load, since the start.
    pub counters: Arc<Counters>,
}

/// What overload did to sockets, counted since the start (logged every minute).
#[derive(Debug, Default)]
pub struct Counters {
    /// A socket's writer fell behind its channel and handed it back.
    pub lagged: AtomicU64,
    /// Catch-ups that filled such a gap.
    pub replays: AtomicU64,
    /// Pages sent to sockets too far behind for one catch-up.
    pub replay_pages: AtomicU64,
    /// Sockets reset to the recent window (the store no longer held the gap).
    pub resets: AtomicU64,
    /// Sockets cut off as too slow (4008).
    pub slow_cutoffs: AtomicU64,
    /// Sockets closed for flooding (4029).
    pub flood_closes: AtomicU64,
}

impl Counters {
    /// The counts, for a log line: lagged, replays, pages, resets, slow, flood.
    pub fn snapshot(&self) -> [u64; 6] {
        [
            &self.lagged,
            &self.replays,
            &self.replay_pages,
            &self.resets,
            &self.slow_cutoffs,
            &self.flood_closes,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

impl Default for Sockets {
    fn default() -> Self {
        Sockets {
            next_id: AtomicU64::default(),
            by_token: Mutex::default(),
            close_all: watch::Sender::new(None),
            queued_bytes: Arc::default(),
            counters: Arc::default(),
        }
    }
}

/// One socket's registration; unregisters when dropped.
pub struct Registered {
    sockets: Arc<Sockets>,
    token_hash: String,
    id: u64,
    /// Notified when the token is revoked.
    pub revoked: Arc<Notify>,
    close_all: watch::Receiver<Option<CloseAll>>,
}

impl Registered {
    /// Resolves with the code and reason once [`Sockets::close_all`] is called (at once if it
    /// was called before this socket opened).
    pub async fn closing(&self) -> CloseAll {
        let mut close_all = self.close_all.clone();
        let close = match close_all.wait_for(Option::is_some).await {
            Ok(close) => *close,
            // The sender lives as long as `Sockets`, which this registration holds.
            Err(_) => None,
        };
        match close {
            Some(close) => close,
            None => std::future::pending().await,
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut by_token = self.sockets.by_token.lock().expect("sockets lock");
        if let Some(list) = by_token.get_mut(&self.token_hash) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                by_token.remove(&self.token_hash);
            }
        }
    }
}

impl Sockets {
    /// Registers a socket opened with the token hashing to `token_hash`.
    pub fn register(self: &Arc<Self>, token_hash: &str) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let revoked = Arc::new(Notify::new());
        self.by_token
            .lock()
            .expect("sockets lock")
            .entry(token_hash.to_string())
            .or_default()
            .push((id, revoked.clone()));
        Registered {
            sockets: self.clone(),
            token_hash: token_hash.to_string(),
            id,
            revoked,
            close_all: self.close_all.subscribe(),
        }
    }

    /// Tells every socket, open now or opened from now on, to close with `code` and `reason`
    /// (a node shutting down: 1012, "service restart"); how many were open. The first call
    /// wins.
    pub fn close_all(&self, code: u16, reason: &'static str) -> usize {
        self.close_all.send_if_modified(|close| {
            if close.is_some() {
                return false;
            }
            *close = Some((code, reason));
            true
        });
        self.open()
    }

    /// Tells every socket of this token that it was revoked; how many there were.
    pub fn revoke(&self, token_hash: &str) -> usize {
        let list = self
            .by_token
            .lock()
            .expect("sockets lock")
            .remove(token_hash)
            .unwrap_or_default();
        for (_, revoked) in &list {
            revoked.notify_one();
        }
        list.len()
    }

    /// Sockets open now.
    pub fn open(&self) -> usize {
        self.by_token
            .lock()
            .expect("sockets lock")
            .values()
            .map(Vec::len)
            .sum()
    }

    /// The counter of bytes queued over every socket (each socket adds and removes its own).
    pub fn queued_bytes(&self) -> Arc<AtomicUsize> {
        self.queued_bytes.clone()
    }

    /// Bytes queued for writing now, over every socket.
    pub fn queued_bytes_now(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn revoking_a_token_tells_each_of_its_sockets() {
        let sockets = Arc::new(Sockets::default());
        let a1 = sockets.register("a");
        let a2 = sockets.register("a");
        let _b = sockets.register("b");
        assert_eq!(sockets.open(), 3);
        assert_eq!(sockets.revoke("a"), 2);
        a1.revoked.notified().await;
        a2.revoked.notified().await;
        drop(a1);
        assert_eq!(sockets.open(), 1);
        assert_eq!(sockets.revoke("a"), 0);
    }

    #[tokio::test]
    async fn closing_all_tells_open_and_later_sockets() {
        let sockets = Arc::new(Sockets::default());
        let before = sockets.register("a");
        let other = sockets.register("b");
        assert_eq!(sockets.close_all(1012, "restart"), 2);
        assert_eq!(before.closing().await, (1012, "restart"));
        assert_eq!(other.closing().await, (1012, "restart"));
        let after = sockets.register("c");
        assert_eq!(after.closing().await, (1012, "restart"));
        sockets.close_all(4000, "second");
        assert_eq!(
            after.closing().await,
            (1012, "restart"),
            "the first call wins"
        );
    }
}
