//! Changes to messages already posted: edits and deletions by their author, reactions by
//! anyone who can read them. Each takes its conversation's next change number and reaches
//! its open sockets as the message's whole new state ([`ServerEvent::Changed`]).

use super::{Chat, Publish};
use crate::error::AppError;
use crate::protocol::{
    validate_emoji, validate_message_body, Message, MessageId, ServerEvent, UserInfo,
};
use crate::server::access;

/// What a changed message tells its conversation.
fn changed(message: &Message) -> Vec<Publish> {
    vec![Publish::change(
        message.conversation,
        message.change,
        &ServerEvent::Changed {
            message: message.clone(),
        },
    )]
}

impl Chat {
    /// Replaces the text of `user`'s own message; it is marked edited.
    pub async fn edit(
        &self,
        user: &UserInfo,
        id: &MessageId,
        body: &str,
    ) -> Result<Message, AppError> {
        let body = validate_message_body(body)?;
        let (_, readable) = access::own_message(self.store.as_ref(), &user.id, id).await?;
        self.spend_write(&user.id).await?;
        let (mentions, mentions_all) = self
            .mentions(&body, readable.governing.id, &user.id)
            .await?;
        let id = id.clone();
        self.run(move |store| {
            Box::pin(async move {
                let result = store.edit(&id, body, mentions, mentions_all).await;
                let publish = result.as_ref().map(changed).unwrap_or_default();
                (result, publish)
            })
        })
        .await
    }

    /// Deletes `user`'s own message: its text goes, everyone sees it disappear.
    pub async fn delete(&self, user: &UserInfo, id: &MessageId) -> Result<Message, AppError> {
        access::own_message(self.store.as_ref(), &user.id, id).await?;
        self.spend_write(&user.id).await?;
        let id = id.clone();
        self.run(move |store| {
            Box::pin(async move {
                let result = store.delete(&id).await;
                let publish = result.as_ref().map(changed).unwrap_or_default();
                (result, publish)
            })
        })
        .await
    }

    /// Adds (`on`) or takes back `user`'s reaction to a message they can read; `None` when
    /// that changed nothing (reacting twice, taking back what was not there).
    pub async fn react(
        &self,
        user: &UserInfo,
        id: &MessageId,
        emoji: &str,
        on: bool,
    ) -> Result<Option<Message>, AppError> {
        let author = Self::author(user)?;
        let emoji = validate_emoji(emoji)?;
        access::readable_message(self.store.as_ref(), &user.id, id).await?;
        self.spend_write(&user.id).await?;
        let id = id.clone();
        self.run(move |store| {
            Box::pin(async move {
                let result = store.react(&id, &author, &emoji, on).await;
                let publish = match &result {
                    Ok(Some(message)) => changed(message),
                    _ => Vec::new(),
                };
                (result, publish)
            })
        })
        .await
    }
}
