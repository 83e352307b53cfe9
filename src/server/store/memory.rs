//! The in-memory [`Store`]: nothing on disk, the most recent `window` messages per channel.

use super::hot::HotChannel;
use super::{Appended, CatchUp, NewMessage, Store};
use crate::error::AppError;
use crate::protocol::{channel_key, ChannelInfo, Message, MessageId, UserId, UserInfo};
use async_trait::async_trait;
use chrono::Utc;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// Holds everything in memory; each channel has its own lock, so channels never contend.
pub struct MemoryStore {
    window: usize,
    users: RwLock<Users>,
    channels: RwLock<HashMap<String, Arc<Mutex<HotChannel>>>>,
    /// Which channel (key) holds each message still in a window.
    message_channel: Mutex<HashMap<MessageId, String>>,
}

#[derive(Default)]
struct Users {
    by_id: HashMap<UserId, UserInfo>,
    by_token: HashMap<String, UserId>,
}

impl MemoryStore {
    /// A store keeping at most `window` messages per channel.
    pub fn new(window: usize) -> Self {
        MemoryStore {
            window: window.max(1),
            users: RwLock::default(),
            channels: RwLock::default(),
            message_channel: Mutex::default(),
        }
    }

    fn hot(&self, channel: &str) -> Result<Arc<Mutex<HotChannel>>, AppError> {
        self.channels
            .read()
            .expect("channels lock")
            .get(&channel_key(channel))
            .cloned()
            .ok_or_else(|| AppError::NoSuchChannel {
                name: channel.to_string(),
            })
    }

    fn append_one(&self, new: NewMessage) -> Result<Appended, AppError> {
        let hot = self.hot(&new.channel)?;
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

/// A fresh id for a user or a message.
pub(super) fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
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
        id: MessageId(new_id()),
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
        let mut users = self.users.write().expect("users lock");
        users.by_token.insert(token_hash, user.id.clone());
        users.by_id.insert(user.id.clone(), user.clone());
        Ok(user)
    }

    async fn user_by_token(&self, token_hash: &str) -> Result<Option<UserInfo>, AppError> {
        let users = self.users.read().expect("users lock");
        Ok(users
            .by_token
            .get(token_hash)
            .and_then(|id| users.by_id.get(id))
            .cloned())
    }

    async fn user(&self, id: &UserId) -> Result<Option<UserInfo>, AppError> {
        Ok(self
            .users
            .read()
            .expect("users lock")
            .by_id
            .get(id)
            .cloned())
    }

    async fn set_display_name(&self, id: &UserId, name: String) -> Result<UserInfo, AppError> {
        let mut users = self.users.write().expect("users lock");
        let user = users.by_id.get_mut(id).ok_or(AppError::Unauthenticated)?;
        user.name = Some(name);
        Ok(user.clone())
    }

    async fn create_channel(&self, name: String) -> Result<ChannelInfo, AppError> {
        let mut channels = self.channels.write().expect("channels lock");
        let key = channel_key(&name);
        if let Some(existing) = channels.get(&key) {
            let name = existing.lock().expect("channel lock").info.name.clone();
            return Err(AppError::ChannelTaken { name });
        }
        let info = ChannelInfo {
            name,
            created_at: Utc::now(),
        };
        let hot = HotChannel::new(info.clone(), self.window);
        channels.insert(key, Arc::new(Mutex::new(hot)));
        Ok(info)
    }

    async fn channels(&self) -> Result<Vec<ChannelInfo>, AppError> {
        let channels = self.channels.read().expect("channels lock");
        let mut list: Vec<(String, ChannelInfo)> = channels
            .iter()
            .map(|(key, hot)| (key.clone(), hot.lock().expect("channel lock").info.clone()))
            .collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(list.into_iter().map(|(_, info)| info).collect())
    }

    async fn channel(&self, name: &str) -> Result<Option<ChannelInfo>, AppError> {
        match self.hot(name) {
            Ok(hot) => Ok(Some(hot.lock().expect("channel lock").info.clone())),
            Err(AppError::NoSuchChannel { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn append_batch(&self, batch: Vec<NewMessage>) -> Vec<Result<Appended, AppError>> {
        batch.into_iter().map(|new| self.append_one(new)).collect()
    }

    async fn recent(&self, channel: &str, limit: usize) -> Result<Vec<Message>, AppError> {
        Ok(self
            .hot(channel)?
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
            .hot(channel)?
            .lock()
            .expect("channel lock")
            .before(before_seq, limit))
    }

    async fn since(
        &self,
        channel: &str,
        after_seq: u64,
        _oldest_seq: u64,
    ) -> Result<CatchUp, AppError> {
        Ok(self
            .hot(channel)?
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
            let hot = self.hot(&key)?;
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
