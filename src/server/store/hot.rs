//! What both stores keep in memory: each channel's hot window (its most recent messages) and
//! the user index. The in-memory store is made of these alone; the SQLite store keeps them in
//! front of the disk so that joins and identity checks never touch it.

use super::CatchUp;
use crate::error::AppError;
use crate::protocol::{channel_key, ChannelInfo, Message, MessageId, UserId, UserInfo};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

/// Catch-ups that would list more removed sequence numbers than this reset instead.
pub const MAX_REMOVED: usize = 1000;

/// One channel's recent messages and counters.
#[derive(Debug, Clone)]
pub struct HotChannel {
    /// The channel.
    pub info: ChannelInfo,
    /// The last sequence number handed out.
    pub last_seq: u64,
    /// Every message up to this sequence number has left the window by age.
    pub evicted_upto: u64,
    /// At most `capacity` messages, in increasing `seq`, deleted ones removed.
    messages: VecDeque<Message>,
    capacity: usize,
    /// About how many bytes the window holds (see [`weight`]).
    bytes: usize,
}

/// About how many bytes a message takes in memory: its text and a fixed overhead for the
/// struct, ids and name.
pub fn weight(message: &Message) -> usize {
    const OVERHEAD: usize = 256;
    OVERHEAD
        + message.body.len()
        + message.author.name.len()
        + message.client_id.as_ref().map_or(0, String::len)
}

impl HotChannel {
    /// An empty window for `info`.
    pub fn new(info: ChannelInfo, capacity: usize) -> Self {
        HotChannel {
            info,
            last_seq: 0,
            evicted_upto: 0,
            messages: VecDeque::new(),
            capacity: capacity.max(1),
            bytes: 0,
        }
    }

    /// About how many bytes the window holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends the channel's next message; returns the one that aged out, if any. A message
    /// the window has numbered already (a window loaded again meanwhile) is ignored.
    pub fn push(&mut self, message: Message) -> Option<Message> {
        if message.seq <= self.last_seq {
            return None;
        }
        self.last_seq = self.last_seq.max(message.seq);
        self.bytes += weight(&message);
        self.messages.push_back(message);
        if self.messages.len() > self.capacity {
            let old = self.messages.pop_front()?;
            self.bytes -= weight(&old);
            self.evicted_upto = old.seq;
            return Some(old);
        }
        None
    }

    /// The most recent messages, at most `limit`, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<Message> {
        let skip = self.messages.len().saturating_sub(limit);
        self.messages.iter().skip(skip).cloned().collect()
    }

    /// Removes a message by id.
    pub fn remove(&mut self, id: &MessageId) -> Option<Message> {
        let at = self.messages.iter().position(|m| &m.id == id)?;
        let removed = self.messages.remove(at)?;
        self.bytes -= weight(&removed);
        Some(removed)
    }

    /// A message by id, if still in the window.
    pub fn find(&self, id: &MessageId) -> Option<&Message> {
        self.messages.iter().find(|m| &m.id == id)
    }

    /// The message `author` sent with `client_id`, if still in the window.
    pub fn find_sent(&self, author: &UserId, client_id: &str) -> Option<&Message> {
        self.messages
            .iter()
            .rev()
            .find(|m| &m.author.id == author && m.client_id.as_deref() == Some(client_id))
    }

    /// Whether a catch-up from `after_seq` can be answered from the window alone.
    pub fn covers(&self, after_seq: u64) -> bool {
        after_seq >= self.evicted_upto && after_seq <= self.last_seq
    }

    /// The whole window, as a reset.
    pub fn reset(&self) -> CatchUp {
        CatchUp {
            messages: self.messages.iter().cloned().collect(),
            removed: Vec::new(),
            reset: true,
        }
    }

    /// What a client that saw up to `after_seq` missed, from the window alone: the messages
    /// after it, and (sequence numbers being dense) every gap at or below it as a deletion.
    pub fn since(&self, after_seq: u64) -> CatchUp {
        if !self.covers(after_seq) {
            return self.reset();
        }
        let mut removed = Vec::new();
        let mut present = self.messages.iter().map(|m| m.seq).peekable();
        for seq in self.evicted_upto + 1..=after_seq {
            while present.next_if(|&s| s < seq).is_some() {}
            if present.next_if_eq(&seq).is_none() {
                removed.push(seq);
                if removed.len() > MAX_REMOVED {
                    return self.reset();
                }
            }
        }
        CatchUp {
            messages: self
                .messages
                .iter()
                .filter(|m| m.seq > after_seq)
                .cloned()
                .collect(),
            removed,
            reset: false,
        }
    }

    /// Messages in the window with `seq < before_seq`, at most `limit`, oldest first.
    pub fn before(&self, before_seq: u64, limit: usize) -> Vec<Message> {
        let older: Vec<&Message> = self
            .messages
            .iter()
            .filter(|m| m.seq < before_seq)
            .collect();
        let skip = older.len().saturating_sub(limit);
        older.into_iter().skip(skip).cloned().collect()
    }
}

/// A shared handle to one channel's window.
pub type SharedChannel = Arc<Mutex<HotChannel>>;

/// Every channel's window, by [`channel_key`]; each channel has its own lock, so channels
/// never contend.
#[derive(Default)]
pub struct HotChannels {
    map: RwLock<HashMap<String, SharedChannel>>,
}

impl HotChannels {
    /// The channel named `channel` (any case) and its key.
    pub fn get(&self, channel: &str) -> Result<(String, SharedChannel), AppError> {
        let key = channel_key(channel);
        let hot = self
            .map
            .read()
            .expect("channels lock")
            .get(&key)
            .cloned()
            .ok_or_else(|| AppError::NoSuchChannel {
                name: channel.to_string(),
            })?;
        Ok((key, hot))
    }

    /// The channel's description, if it exists.
    pub fn info(&self, channel: &str) -> Option<ChannelInfo> {
        let (_, hot) = self.get(channel).ok()?;
        let info = hot.lock().expect("channel lock").info.clone();
        Some(info)
    }

    /// Up to `limit` channels whose keys sort after `after`'s, ordered by key.
    pub fn page(&self, after: Option<&str>, limit: usize) -> Vec<ChannelInfo> {
        let after = after.map(channel_key);
        let map = self.map.read().expect("channels lock");
        let mut list: Vec<(&String, &SharedChannel)> = map
            .iter()
            .filter(|(key, _)| after.as_ref().is_none_or(|a| key.as_str() > a.as_str()))
            .collect();
        list.sort_by(|a, b| a.0.cmp(b.0));
        list.into_iter()
            .take(limit)
            .map(|(_, hot)| hot.lock().expect("channel lock").info.clone())
            .collect()
    }

    /// Windows held, and about how many bytes they hold.
    pub fn usage(&self) -> (usize, usize) {
        let map = self.map.read().expect("channels lock");
        let bytes = map
            .values()
            .map(|hot| hot.lock().expect("channel lock").bytes())
            .sum();
        (map.len(), bytes)
    }

    /// How many channels there are.
    pub fn count(&self) -> usize {
        self.map.read().expect("channels lock").len()
    }

    /// Adds a channel; [`AppError::ChannelTaken`] if its name is taken in any case.
    pub fn add(&self, hot: HotChannel) -> Result<(), AppError> {
        let mut map = self.map.write().expect("channels lock");
        let key = channel_key(&hot.info.name);
        if let Some(existing) = map.get(&key) {
            let name = existing.lock().expect("channel lock").info.name.clone();
            return Err(AppError::ChannelTaken { name });
        }
        map.insert(key, Arc::new(Mutex::new(hot)));
        Ok(())
    }
}

/// Users by id and by token hash.
#[derive(Default)]
pub struct UserIndex {
    by_id: HashMap<UserId, UserInfo>,
    by_token: HashMap<String, UserId>,
}

impl UserIndex {
    /// Adds or refreshes a user (and the hash of their token, when known).
    pub fn insert(&mut self, token_hash: Option<String>, user: &UserInfo) {
        if let Some(hash) = token_hash {
            self.by_token.insert(hash, user.id.clone());
        }
        self.by_id.insert(user.id.clone(), user.clone());
    }

    /// The user holding the token with this hash.
    pub fn by_token(&self, token_hash: &str) -> Option<UserInfo> {
        self.by_token
            .get(token_hash)
            .and_then(|id| self.by_id.get(id))
            .cloned()
    }

    /// The user with this id.
    pub fn by_id(&self, id: &UserId) -> Option<UserInfo> {
        self.by_id.get(id).cloned()
    }

    /// Users held.
    pub fn count(&self) -> usize {
        self.by_id.len()
    }

    /// Forgets a token of `id` (revoked).
    pub fn forget_token(&mut self, id: &UserId, token_hash: &str) {
        if self.by_token.get(token_hash) == Some(id) {
            self.by_token.remove(token_hash);
        }
    }
}
