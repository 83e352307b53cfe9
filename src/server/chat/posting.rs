//! Posting: messages and replies in threads, with their mentions resolved against the
//! conversation's members. A post to a public channel one is not in joins it first, in the
//! same commit.

use super::{settle, Answer, Chat, Publish, Write};
use crate::error::AppError;
use crate::protocol::{
    mention_candidates, mention_matches, validate_client_id, validate_message_body, Author,
    ConversationId, MessageId, ServerEvent, UserId, UserInfo, EVERYONE_MENTIONS, MAX_MENTIONS,
    MEMBERS_SHOWN,
};
use crate::server::access;
use crate::server::hub::Frame;
use crate::server::store::{Admission, Appended, NewMessage};
use tokio::sync::oneshot;

/// Who a body mentions among `members`: ids (longest matching name first, at most
/// [`MAX_MENTIONS`], never the author) and whether it mentions everyone.
pub fn resolve_mentions(body: &str, members: &[Author], author: &UserId) -> (Vec<UserId>, bool) {
    let mut by_length: Vec<&Author> = members.iter().collect();
    by_length.sort_by_key(|m| std::cmp::Reverse(m.name.len()));
    let (mut ids, mut all) = (Vec::new(), false);
    for text in mention_candidates(body) {
        if EVERYONE_MENTIONS
            .iter()
            .any(|word| mention_matches(text, word))
        {
            all = true;
            continue;
        }
        if let Some(member) = by_length.iter().find(|m| mention_matches(text, &m.name)) {
            if &member.id != author && !ids.contains(&member.id) && ids.len() < MAX_MENTIONS {
                ids.push(member.id.clone());
            }
        }
    }
    (ids, all)
}

/// What a stored post tells whom: the message to the conversation's open sockets, and for
/// a reply its parent's new reply count to the parent's conversation; and (the second
/// part) a small activity note for every member's own stream (their unread counts), one
/// frame for all of them.
pub(super) fn published(appended: &Appended) -> (Vec<Publish>, Option<Frame>) {
    let message = &appended.message;
    let mut out = vec![Publish::change(
        message.conversation,
        message.change,
        &ServerEvent::Message {
            message: message.clone(),
        },
    )];
    if let Some(parent) = &appended.parent {
        out.push(Publish::change(
            parent.conversation,
            parent.change,
            &ServerEvent::Changed {
                message: parent.clone(),
            },
        ));
        return (out, None); // replies do not count as unread in the channel
    }
    let activity = Frame::about(
        message.conversation,
        &ServerEvent::Activity {
            conversation: message.conversation,
            seq: message.seq,
            change: message.change,
            author: message.author.id.clone(),
            mentions: message.mentions.clone(),
            mentions_all: message.mentions_all,
        },
    );
    (out, Some(activity))
}

impl Chat {
    /// The author of a post: the user with the display name they have now.
    pub(super) fn author(user: &UserInfo) -> Result<Author, AppError> {
        let name = user.name.clone().ok_or(AppError::NoDisplayName)?;
        Ok(Author {
            id: user.id.clone(),
            name,
        })
    }

    /// Who a body mentions in the conversation that decides access (a thread's parent's).
    pub(super) async fn mentions(
        &self,
        body: &str,
        governing: ConversationId,
        author: &UserId,
    ) -> Result<(Vec<UserId>, bool), AppError> {
        if !body.contains('@') {
            return Ok((Vec::new(), false));
        }
        let members = self.store.members(governing, MEMBERS_SHOWN).await?;
        Ok(resolve_mentions(body, &members, author))
    }

    /// Stores a message from `user` and sends it to the conversation; answers once it is
    /// committed. A `client_id` the user sent before returns the original (`fresh: false`)
    /// and sends nothing again.
    pub async fn post(
        &self,
        user: &UserInfo,
        conversation: ConversationId,
        body: &str,
        client_id: Option<String>,
    ) -> Result<Appended, AppError> {
        let answer = self
            .submit_post(user, conversation, body, client_id)
            .await?;
        settle(answer).await
    }

    /// Checks a message and queues it for storing, in order; the answer comes when it is
    /// committed. Lets one connection keep many messages in flight without reordering them.
    pub async fn submit_post(
        &self,
        user: &UserInfo,
        conversation: ConversationId,
        body: &str,
        client_id: Option<String>,
    ) -> Result<Answer<Appended>, AppError> {
        let author = Self::author(user)?;
        let body = validate_message_body(body)?;
        let client_id = client_id.as_deref().map(validate_client_id).transpose()?;
        let sendable =
            access::sendable(self.store.as_ref(), &self.access, &user.id, conversation).await?;
        self.spend_write(&user.id).await?;
        // Joining stores with the post (one commit), numbered just before it.
        let admission = if sendable.joins_on_post {
            self.check_membership_room(&user.id).await?;
            Admission::Joins
        } else {
            Admission::MemberOf(sendable.governing)
        };
        let (mentions, mentions_all) = self.mentions(&body, sendable.governing, &user.id).await?;
        let (reply, answer) = oneshot::channel();
        let message = NewMessage {
            conversation,
            author,
            body,
            client_id,
            mentions,
            mentions_all,
            admission,
        };
        self.enqueue(Write::Post { message, reply }).await?;
        Ok(answer)
    }

    /// Replies to a message in its thread (starting it on the first reply); with
    /// `also_to_channel` the text is posted in the parent's conversation too.
    pub async fn reply(
        &self,
        user: &UserInfo,
        parent: &MessageId,
        body: &str,
        client_id: Option<String>,
        also_to_channel: bool,
    ) -> Result<Appended, AppError> {
        let author = Self::author(user)?;
        let body = validate_message_body(body)?;
        let client_id = client_id.as_deref().map(validate_client_id).transpose()?;
        let (parent_message, readable) =
            access::readable_message(self.store.as_ref(), &user.id, parent).await?;
        if readable.info.kind == crate::protocol::ConversationKind::Thread {
            return Err(AppError::NestedThread);
        }
        self.spend_write(&user.id).await?;
        if readable.joins_on_post() {
            self.join_unchecked(readable.info.id, &author).await?;
        }
        let (mentions, mentions_all) = self
            .mentions(&body, readable.governing.id, &user.id)
            .await?;
        let new = NewMessage {
            conversation: parent_message.conversation,
            author,
            body: body.clone(),
            client_id: client_id.clone(),
            mentions,
            mentions_all,
            admission: Admission::Unchecked,
        };
        let parent = parent.clone();
        let appended = self
            .run(move |store| {
                Box::pin(async move {
                    let result = store.reply(&parent, new).await;
                    let publish = match &result {
                        Ok(appended) if appended.fresh => published(appended).0,
                        _ => Vec::new(),
                    };
                    (result, publish)
                })
            })
            .await?;
        if also_to_channel && appended.fresh {
            let echo = client_id.map(|id| format!("{id}:channel"));
            let echo = echo.filter(|id| validate_client_id(id).is_ok());
            self.post(user, parent_message.conversation, &body, echo)
                .await?;
        }
        Ok(appended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, name: &str) -> Author {
        Author {
            id: UserId(id.into()),
            name: name.into(),
        }
    }

    #[test]
    fn mentions_match_whole_member_names_longest_first() {
        let members = [
            member("1", "Ada"),
            member("2", "Ada Lovelace"),
            member("3", "Bo"),
            member("4", "Cy"),
        ];
        let me = UserId("4".into());
        let (ids, all) = resolve_mentions(
            "hi @ada lovelace and @Bo, not @Bob or me@Bo or @Cy",
            &members,
            &me,
        );
        assert_eq!(ids, [UserId("2".into()), UserId("3".into())]);
        assert!(!all);
        let (ids, all) = resolve_mentions("@here lunch? @channel", &members, &me);
        assert!(ids.is_empty() && all);
        let (ids, _) = resolve_mentions("@Ada, @Ada again", &members, &me);
        assert_eq!(ids, [UserId("1".into())], "once each");
        assert_eq!(
            resolve_mentions("no mentions", &members, &me),
            (vec![], false)
        );
    }
}
