//! The in-memory [`Store`]: nothing on disk, the most recent `window` messages per channel.

use super::{CatchUp, NewMessage, Store};
use crate::error::AppError;
use crate::protocol::{channel_key, ChannelInfo, Message, MessageId, UserId, UserInfo};
use async_trait::async_trait;
use chrono::Utc;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

/// Sends of removed sequence numbers beyond this become a reset instead.
const MAX_REMOVED: usize = 1000;

/// Holds everything in memory; each channel has its own lock, so channels never contend.
pub struct MemoryStore {
    window: usize,
    users: RwLock<Users>,
    channels: RwLock<HashMap<String, Arc<Mutex<ChannelLog>>>>,
    /// Which channel (key) holds each message still in a window.
    message_channel: Mutex<HashMap<MessageId, String>>,
}

#[derive(Default)]
struct Users {
    by_id: HashMap<UserId, UserInfo>,
    by_token: HashMap<String, UserId>,
}

struct ChannelLog {
    info: ChannelInfo,
    /// The last sequence number handed out.
    last_seq: u64,
    /// Every sequence number up to this one has left the window by eviction.
    evicted_upto: u64,
    messages: VecDeque<Message>,
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

    fn log(&self, channel: &str) -> Result<Arc<Mutex<ChannelLog>>, AppError> {
        self.channels
            .read()
            .expect("channels lock")
            .get(&channel_key(channel))
            .cloned()
            .ok_or_else(|| AppError::NoSuchChannel {
                name: channel.to_string(),
            })
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
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
        let log = ChannelLog {
            info: info.clone(),
            last_seq: 0,
            evicted_upto: 0,
            messages: VecDeque::with_capacity(self.window),
        };
        channels.insert(key, Arc::new(Mutex::new(log)));
        Ok(info)
    }

    async fn channels(&self) -> Result<Vec<ChannelInfo>, AppError> {
        let channels = self.channels.read().expect("channels lock");
        let mut list: Vec<(String, ChannelInfo)> = channels
            .iter()
            .map(|(key, log)| (key.clone(), log.lock().expect("channel lock").info.clone()))
            .collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(list.into_iter().map(|(_, info)| info).collect())
    }

    async fn channel(&self, name: &str) -> Result<Option<ChannelInfo>, AppError> {
        match self.log(name) {
            Ok(log) => Ok(Some(log.lock().expect("channel lock").info.clone())),
            Err(AppError::NoSuchChannel { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn append(&self, new: NewMessage) -> Result<Message, AppError> {
        let log = self.log(&new.channel)?;
        let (message, evicted) = {
            let mut log = log.lock().expect("channel lock");
            // Time never runs backwards within a channel, even if the clock does.
            let now = Utc::now();
            let sent_at = log
                .messages
                .back()
                .map_or(now, |last| last.sent_at.max(now));
            log.last_seq += 1;
            let message = Message {
                id: MessageId(new_id()),
                channel: log.info.name.clone(),
                seq: log.last_seq,
                author: new.author,
                body: new.body,
                sent_at,
                client_id: new.client_id,
            };
            log.messages.push_back(message.clone());
            let evicted = if log.messages.len() > self.window {
                let old = log.messages.pop_front().expect("non-empty");
                log.evicted_upto = old.seq;
                Some(old.id)
            } else {
                None
            };
            (message, evicted)
        };
        let mut index = self.message_channel.lock().expect("index lock");
        index.insert(message.id.clone(), channel_key(&message.channel));
        if let Some(old) = evicted {
            index.remove(&old);
        }
        Ok(message)
    }

    async fn recent(&self, channel: &str, limit: usize) -> Result<Vec<Message>, AppError> {
        let log = self.log(channel)?;
        let log = log.lock().expect("channel lock");
        let skip = log.messages.len().saturating_sub(limit);
        Ok(log.messages.iter().skip(skip).cloned().collect())
    }

    async fn since(&self, channel: &str, after_seq: u64) -> Result<CatchUp, AppError> {
        let log = self.log(channel)?;
        let log = log.lock().expect("channel lock");
        let whole = || CatchUp {
            messages: log.messages.iter().cloned().collect(),
            removed: Vec::new(),
            reset: true,
        };
        // Behind the window, or ahead of this channel's history (the server lost its memory).
        if after_seq < log.evicted_upto || after_seq > log.last_seq {
            return Ok(whole());
        }
        // Sequence numbers are dense, so any gap in (evicted_upto, after_seq] is a deletion.
        let mut removed = Vec::new();
        let mut present = log.messages.iter().map(|m| m.seq).peekable();
        for seq in log.evicted_upto + 1..=after_seq {
            while present.next_if(|&s| s < seq).is_some() {}
            if present.next_if_eq(&seq).is_none() {
                removed.push(seq);
                if removed.len() > MAX_REMOVED {
                    return Ok(whole());
                }
            }
        }
        Ok(CatchUp {
            messages: log
                .messages
                .iter()
                .filter(|m| m.seq > after_seq)
                .cloned()
                .collect(),
            removed,
            reset: false,
        })
    }

    async fn delete(&self, id: &MessageId, by: &UserId) -> Result<Message, AppError> {
        let key = self
            .message_channel
            .lock()
            .expect("index lock")
            .get(id)
            .cloned()
            .ok_or(AppError::NoSuchMessage)?;
        let log = self.log(&key)?;
        let removed = {
            let mut log = log.lock().expect("channel lock");
            let at = log
                .messages
                .iter()
                .position(|m| &m.id == id)
                .ok_or(AppError::NoSuchMessage)?;
            if &log.messages[at].author.id != by {
                return Err(AppError::NotAuthor);
            }
            log.messages.remove(at).expect("position is valid")
        };
        self.message_channel.lock().expect("index lock").remove(id);
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryStore;

    crate::store_contract_tests!(|window| MemoryStore::new(window));
}
