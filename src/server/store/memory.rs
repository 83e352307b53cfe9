//! The in-memory [`Store`]: nothing on disk, the most recent `window` messages per channel.

use super::hot::{HotChannel, HotChannels, UserIndex};
use super::{Appended, CatchUp, MemoryUsage, NewMessage, Store, RECENT_CHANNELS};
use crate::error::AppError;
use crate::protocol::{channel_key, ChannelInfo, Message, MessageId, UserId, UserInfo};
use async_trait::async_trait;
use chrono::Utc;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, RwLock};

/// Holds everything in memory.
pub struct MemoryStore {
    window: usize,
    users: RwLock<UserIndex>,
    channels: HotChannels,
    /// Which channel (key) holds each message still in a window.
    message_channel: Mutex<HashMap<MessageId, String>>,
    secret: Vec<u8>,
    revoked: Mutex<HashSet<String>>,
    /// Channel keys each user opened lately, most recent first.
    visits: Mutex<HashMap<UserId, VecDeque<String>>>,
}

impl MemoryStore {
    /// A store keeping at most `window` messages per channel.
    pub fn new(window: usize) -> Self {
        MemoryStore {
            window: window.max(1),
            users: RwLock::default(),
            channels: HotChannels::default(),
            message_channel: Mutex::default(),
            secret: new_secret(),
            revoked: Mutex::default(),
            visits: Mutex::default(),
        }
    }

    fn append_one(&self, new: NewMessage) -> Result<Appended, AppError> {
        let (_, hot) = self.channels.get(&new.channel)?;
        let (message, evicted) = {
            let mut hot = hot.lock().expect("channel lock");
            if let Some(client_id) = &new.client_id {
                if let Some(sent) = hot.find_sent(&new.author.id, client_id) {
                    return Ok(Appended {
                        message: sent.clone(),
                        fresh: false,
                    });
                }
            }
            let message = next_message(&hot, new);
            (message.clone(), hot.push(message))
        };
        let mut index = self.message_channel.lock().expect("index lock");
        index.insert(message.id.clone(), channel_key(&message.channel));
        if let Some(old) = evicted {
            index.remove(&old.id);
        }
        Ok(Appended {
            message,
            fresh: true,
        })
    }
}

/// A fresh user id: random (its first digits are the user's tag, so they must differ).
pub(super) fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A fresh server secret: 32 random bytes.
pub(super) fn new_secret() -> Vec<u8> {
    use rand::RngCore;
    let mut secret = vec![0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    secret
}

/// A fresh message id: time-ordered (UUIDv7), so that SQLite's index of message ids grows at
/// its end. Random ids put every message of a batch on a different index page, and each of
/// those pages was written to the WAL again on every commit.
pub(super) fn new_message_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// The channel's next message: the next sequence number, and a time that never runs backwards
/// within the channel even if the clock does.
pub(super) fn next_message(hot: &HotChannel, new: NewMessage) -> Message {
    let now = Utc::now();
    let sent_at = hot
        .recent(1)
        .first()
        .map_or(now, |last| last.sent_at.max(now));
    Message {
        id: MessageId(new_message_id()),
        channel: hot.info.name.clone(),
        seq: hot.last_seq + 1,
        author: new.author,
        body: new.body,
        sent_at,
        client_id: new.client_id,
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_user(
        &self,
        token_hash: String,
        name: Option<String>,
    ) -> Result<UserInfo, AppError> {
        let user = UserInfo {
            id: UserId(new_id()),
            name,
        };
        self.users
            .write()
            .expect("users lock")
            .insert(Some(token_hash), &user);
        Ok(user)
    }

    async fn store_user(
        &self,
        id: UserId,
        token_hash: String,
        name: String,
    ) -> Result<UserInfo, AppError> {
        let user = UserInfo {
            id,
            name: Some(name),
        };
        self.users
            .write()
            .expect("users lock")
            .insert(Some(token_hash), &user);
        Ok(user)
    }

    async fn user_by_token(&self, token_hash: &str) -> Result<Option<UserInfo>, AppError> {
        Ok(self.users.read().expect("users lock").by_token(token_hash))
    }

    async fn user(&self, id: &UserId) -> Result<Option<UserInfo>, AppError> {
        Ok(self.users.read().expect("users lock").by_id(id))
    }

    async fn set_display_name(&self, id: &UserId, name: String) -> Result<UserInfo, AppError> {
        let mut users = self.users.write().expect("users lock");
        let mut user = users.by_id(id).ok_or(AppError::Unauthenticated)?;
        user.name = Some(name);
        users.insert(None, &user);
        Ok(user)
    }

    async fn create_channel(&self, name: String) -> Result<ChannelInfo, AppError> {
        let info = ChannelInfo {
            name,
            created_at: Utc::now(),
        };
        self.channels
            .add(HotChannel::new(info.clone(), self.window))?;
        Ok(info)
    }

    async fn channel_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChannelInfo>, AppError> {
        Ok(self.channels.page(after, limit))
    }

    async fn channel_count(&self) -> Result<usize, AppError> {
        Ok(self.channels.count())
    }

    async fn record_visit(&self, user: &UserId, channel: &str) -> Result<(), AppError> {
        let key = channel_key(channel);
        let mut visits = self.visits.lock().expect("visits lock");
        let list = visits.entry(user.clone()).or_default();
        list.retain(|k| *k != key);
        list.push_front(key);
        list.truncate(RECENT_CHANNELS);
        Ok(())
    }

    async fn recent_channels(&self, user: &UserId) -> Result<Vec<ChannelInfo>, AppError> {
        let keys: Vec<String> = self
            .visits
            .lock()
            .expect("visits lock")
            .get(user)
            .map(|list| list.iter().cloned().collect())
            .unwrap_or_default();
        Ok(keys.iter().filter_map(|k| self.channels.info(k)).collect())
    }

    fn memory_usage(&self) -> MemoryUsage {
        let (windows, window_bytes) = self.channels.usage();
        MemoryUsage {
            windows,
            window_bytes,
            users: self.users.read().expect("users lock").count(),
        }
    }

    async fn secret(&self) -> Result<Vec<u8>, AppError> {
        Ok(self.secret.clone())
    }

    async fn revoke_token(&self, id: &UserId, token_hash: &str) -> Result<(), AppError> {
        self.revoked
            .lock()
            .expect("revoked lock")
            .insert(token_hash.to_string());
        self.users
            .write()
            .expect("users lock")
            .forget_token(id, token_hash);
        Ok(())
    }

    async fn token_revoked(&self, token_hash: &str) -> Result<bool, AppError> {
        Ok(self
            .revoked
            .lock()
            .expect("revoked lock")
            .contains(token_hash))
    }

    async fn channel(&self, name: &str) -> Result<Option<ChannelInfo>, AppError> {
        Ok(self.channels.info(name))
    }

    async fn append_batch(&self, batch: Vec<NewMessage>) -> Vec<Result<Appended, AppError>> {
        batch.into_iter().map(|new| self.append_one(new)).collect()
    }

    async fn recent(&self, channel: &str, limit: usize) -> Result<Vec<Message>, AppError> {
        Ok(self
            .channels
            .get(channel)?
            .1
            .lock()
            .expect("channel lock")
            .recent(limit))
    }

    async fn before(
        &self,
        channel: &str,
        before_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>, AppError> {
        // Memory keeps only the window: older messages are gone.
        Ok(self
            .channels
            .get(channel)?
            .1
            .lock()
            .expect("channel lock")
            .before(before_seq, limit))
    }

    async fn after(
        &self,
        channel: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Option<Vec<Message>>, AppError> {
        let (_, hot) = self.channels.get(channel)?;
        let hot = hot.lock().expect("channel lock");
        if !hot.covers(after_seq) {
            return Ok(None);
        }
        let messages = hot
            .recent(usize::MAX)
            .into_iter()
            .filter(|m| m.seq > after_seq)
            .take(limit)
            .collect();
        Ok(Some(messages))
    }

    async fn since(
        &self,
        channel: &str,
        after_seq: u64,
        _oldest_seq: u64,
    ) -> Result<CatchUp, AppError> {
        Ok(self
            .channels
            .get(channel)?
            .1
            .lock()
            .expect("channel lock")
            .since(after_seq))
    }

    async fn delete(&self, id: &MessageId, by: &UserId) -> Result<Message, AppError> {
        let key = self
            .message_channel
            .lock()
            .expect("index lock")
            .get(id)
            .cloned()
            .ok_or(AppError::NoSuchMessage)?;
        let removed = {
            let (_, hot) = self.channels.get(&key)?;
            let mut hot = hot.lock().expect("channel lock");
            let message = hot.find(id).ok_or(AppError::NoSuchMessage)?;
            if &message.author.id != by {
                return Err(AppError::NotAuthor);
            }
            hot.remove(id).ok_or(AppError::NoSuchMessage)?
        };
        self.message_channel.lock().expect("index lock").remove(id);
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryStore;

    crate::store_contract_tests!(|window| async move { MemoryStore::new(window) });
}
