//! The rules of Flack in one place: validation, ownership, ordering and fan-out. Server
//! functions and the WebSocket both go through [`Chat`], so they behave the same.

use super::hub::{Frame, Hub, Subscription, Topic};
use super::store::{NewMessage, Store};
use crate::error::AppError;
use crate::protocol::{
    channel_key, validate_channel_name, validate_client_id, validate_display_name,
    validate_message_body, Author, ChannelHistory, ChannelInfo, Message, MessageId, ServerEvent,
    UserId, UserInfo,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Flack's application service: a [`Store`] and a [`Hub`] kept in step.
pub struct Chat {
    store: Arc<dyn Store>,
    hub: Arc<dyn Hub>,
    window: usize,
    /// Held while a message is stored and published, so subscribers see sequence order.
    order: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Chat {
    /// Wires a store and a hub; `window` is how many recent messages a join returns.
    pub fn new(store: Arc<dyn Store>, hub: Arc<dyn Hub>, window: usize) -> Self {
        Chat {
            store,
            hub,
            window,
            order: Mutex::default(),
        }
    }

    /// The store, for identity look-ups.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// Subscribes to a topic's events.
    pub fn subscribe(&self, topic: &Topic) -> Subscription {
        self.hub.subscribe(topic)
    }

    /// Sets a user's display name after checking it.
    pub async fn set_display_name(&self, user: &UserId, raw: &str) -> Result<UserInfo, AppError> {
        let name = validate_display_name(raw)?;
        self.store.set_display_name(user, name).await
    }

    /// Creates a channel and tells every socket.
    pub async fn create_channel(&self, raw: &str) -> Result<ChannelInfo, AppError> {
        let name = validate_channel_name(raw)?;
        let channel = self.store.create_channel(name).await?;
        let event = ServerEvent::ChannelCreated {
            channel: channel.clone(),
        };
        self.hub.publish(&Topic::Lobby, Frame::new(None, &event));
        tracing::info!(channel = %channel.name, "channel created");
        Ok(channel)
    }

    /// Creates each channel that does not exist yet (start-up defaults).
    pub async fn ensure_channels(&self, names: &[String]) -> Result<(), AppError> {
        for name in names {
            match self.create_channel(name).await {
                Ok(_) | Err(AppError::ChannelTaken { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Every channel.
    pub async fn channels(&self) -> Result<Vec<ChannelInfo>, AppError> {
        self.store.channels().await
    }

    /// A channel with its recent messages.
    pub async fn history(&self, name: &str) -> Result<ChannelHistory, AppError> {
        let channel = self
            .store
            .channel(name)
            .await?
            .ok_or_else(|| AppError::NoSuchChannel {
                name: name.to_string(),
            })?;
        let messages = self.store.recent(&channel.name, self.window).await?;
        Ok(ChannelHistory { channel, messages })
    }

    /// What a subscriber that last saw `after_seq` missed (`None`: it saw nothing yet).
    pub async fn catch_up(
        &self,
        channel: &str,
        after_seq: Option<u64>,
    ) -> Result<ServerEvent, AppError> {
        let name = self
            .store
            .channel(channel)
            .await?
            .ok_or_else(|| AppError::NoSuchChannel {
                name: channel.to_string(),
            })?
            .name;
        let event = match after_seq {
            None => ServerEvent::Subscribed {
                messages: self.store.recent(&name, self.window).await?,
                channel: name,
                removed: Vec::new(),
                reset: true,
            },
            Some(after) => {
                let up = self.store.since(&name, after).await?;
                ServerEvent::Subscribed {
                    channel: name,
                    messages: up.messages,
                    removed: up.removed,
                    reset: up.reset,
                }
            }
        };
        Ok(event)
    }

    /// Stores a message from `user` and sends it to the channel's subscribers.
    pub async fn post(
        &self,
        user: &UserInfo,
        channel: &str,
        body: &str,
        client_id: Option<String>,
    ) -> Result<Message, AppError> {
        let name = user.name.clone().ok_or(AppError::NoDisplayName)?;
        let body = validate_message_body(body)?;
        let client_id = client_id.as_deref().map(validate_client_id).transpose()?;
        let key = channel_key(channel);
        let lock = self.order_lock(&key);
        let _in_order = lock.lock().await;
        let message = self
            .store
            .append(NewMessage {
                channel: channel.to_string(),
                author: Author {
                    id: user.id.clone(),
                    name,
                },
                body,
                client_id,
            })
            .await?;
        let event = ServerEvent::Message {
            message: message.clone(),
        };
        self.hub
            .publish(&Topic::Channel(key), Frame::new(Some(message.seq), &event));
        Ok(message)
    }

    /// Deletes `user`'s own message and tells the channel.
    pub async fn delete(&self, user: &UserId, id: &MessageId) -> Result<Message, AppError> {
        let message = self.store.delete(id, user).await?;
        let event = ServerEvent::MessageDeleted {
            channel: message.channel.clone(),
            message_id: message.id.clone(),
            seq: message.seq,
        };
        self.hub.publish(
            &Topic::Channel(channel_key(&message.channel)),
            Frame::new(None, &event),
        );
        Ok(message)
    }

    fn order_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.order
            .lock()
            .expect("order lock")
            .entry(key.to_string())
            .or_default()
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::hub::MemoryHub;
    use crate::server::store::MemoryStore;

    fn chat() -> Chat {
        Chat::new(
            Arc::new(MemoryStore::new(100)),
            Arc::new(MemoryHub::new(256)),
            100,
        )
    }

    async fn named(chat: &Chat, token: &str, name: &str) -> UserInfo {
        chat.store()
            .create_user(token.into(), Some(name.into()))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn posting_validates_and_fans_out_once_serialized() {
        let chat = chat();
        chat.create_channel("general").await.unwrap();
        let ada = named(&chat, "a", "Ada").await;
        let mut sub = chat.subscribe(&Topic::Channel("general".into()));
        let m = chat.post(&ada, "General", "hi <b>", None).await.unwrap();
        let frame = sub.recv().await.unwrap();
        assert_eq!(frame.seq, Some(m.seq));
        let event: ServerEvent = serde_json::from_str(frame.text.as_str()).unwrap();
        assert_eq!(event, ServerEvent::Message { message: m });
        assert_eq!(
            chat.post(&ada, "general", "  ", None).await,
            Err(AppError::MessageEmpty)
        );
        assert!(sub.try_recv().is_err(), "nothing invalid is broadcast");
    }

    #[tokio::test]
    async fn nameless_users_cannot_post() {
        let chat = chat();
        chat.create_channel("general").await.unwrap();
        let anon = chat.store().create_user("x".into(), None).await.unwrap();
        assert_eq!(
            chat.post(&anon, "general", "hi", None).await,
            Err(AppError::NoDisplayName)
        );
    }

    #[tokio::test]
    async fn channel_creation_reaches_the_lobby() {
        let chat = chat();
        let mut lobby = chat.subscribe(&Topic::Lobby);
        chat.create_channel(" #Random ").await.unwrap();
        let frame = lobby.recv().await.unwrap();
        assert!(frame.text.as_str().contains(r#""name":"Random""#));
        assert!(matches!(
            chat.create_channel("random").await,
            Err(AppError::ChannelTaken { .. })
        ));
        assert!(lobby.try_recv().is_err());
    }

    #[tokio::test]
    async fn concurrent_posts_are_published_in_sequence_order() {
        let chat = Arc::new(chat());
        chat.create_channel("race").await.unwrap();
        let mut sub = chat.subscribe(&Topic::Channel("race".into()));
        let mut tasks = Vec::new();
        for t in 0..8 {
            let chat = chat.clone();
            let user = named(&chat, &format!("t{t}"), &format!("u{t}")).await;
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    chat.post(&user, "race", &format!("{t}-{i}"), None)
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        for want in 1..=200u64 {
            assert_eq!(sub.recv().await.unwrap().seq, Some(want));
        }
    }
}
