//! Reading a server frame in the browser, without serde's buffering of tagged enums.
//!
//! [`ServerEvent`] is internally tagged on the wire (`{"type":"message",…}`). serde reads such
//! an enum by first buffering the whole object into a generic tree, then reading the variant
//! from the tree, and that second reader is compiled for every type inside an event (messages,
//! members, conversations…) next to the direct one: about a twentieth of the browser's bundle.
//! The browser instead takes the tag from the frame, wraps the frame as `{"<tag>":{…}}` and
//! reads it as the externally tagged [`ByTag`], which builds a `ServerEvent` directly (serde's
//! `remote`: the compiler checks that every field matches). The wire is unchanged, and the
//! test below holds every event to serde's own reading of it.

use crate::error::AppError;
use crate::protocol::{
    Author, ConversationId, ConversationInfo, ConversationSummary, Message, MessageId,
    PresenceStatus, ServerEvent, UserId, UserInfo,
};
use serde::Deserialize;

impl ServerEvent {
    /// Reads one frame from the server; what serde would make of it, read more cheaply.
    pub fn from_frame(text: &str) -> Result<ServerEvent, serde_json::Error> {
        #[derive(Deserialize)]
        struct Tag<'a> {
            #[serde(rename = "type", borrow)]
            kind: std::borrow::Cow<'a, str>,
        }
        let tag: Tag = serde_json::from_str(text)?;
        if tag.kind == "refresh" {
            return Ok(ServerEvent::Refresh);
        }
        // Tags are snake_case words; anything else names no event (and needs no escaping).
        if !tag
            .kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            return Err(serde::de::Error::custom("unknown event type"));
        }
        let wrapped = format!("{{\"{}\":{text}}}", tag.kind);
        let mut reader = serde_json::Deserializer::from_str(&wrapped);
        let event = ByTag::deserialize(&mut reader)?;
        reader.end()?;
        Ok(event)
    }
}

/// [`ServerEvent`]'s variants, externally tagged. Every `skip_serializing_if` field there is a
/// `default` here. (`refresh` has no fields and is read above.)
#[derive(Deserialize)]
#[serde(remote = "ServerEvent", rename_all = "snake_case")]
#[allow(dead_code)] // serde reads it; the compiler sees only the remote impl
enum ByTag {
    Hello {
        user: UserInfo,
    },
    Subscribed {
        conversation: ConversationInfo,
        messages: Vec<Message>,
        last_change: u64,
        reset: bool,
        #[serde(default)]
        has_older: bool,
        #[serde(default)]
        members: Option<Vec<Author>>,
    },
    Message {
        message: Message,
    },
    Changed {
        message: Message,
    },
    Ack {
        #[serde(default)]
        client_id: Option<String>,
        message_id: MessageId,
        conversation: ConversationId,
        seq: u64,
    },
    Members {
        conversation: ConversationId,
        change: u64,
        members: Vec<Author>,
    },
    Activity {
        conversation: ConversationId,
        seq: u64,
        change: u64,
        author: UserId,
        #[serde(default)]
        mentions: Vec<UserId>,
        #[serde(default)]
        mentions_all: bool,
    },
    Joined {
        summary: ConversationSummary,
    },
    Left {
        conversation: ConversationId,
    },
    ReadMoved {
        conversation: ConversationId,
        seq: u64,
    },
    Typing {
        conversation: ConversationId,
        user: Author,
    },
    Presence {
        user: UserId,
        status: PresenceStatus,
    },
    Error {
        error: AppError,
        message: String,
        #[serde(default)]
        client_id: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const MESSAGE: &str = r#"{"id":"5f0c","conversation":7,"seq":42,"change":46,
        "author":{"id":"9a1b","name":"Ada"},"body":"hi @Bo","sent_at":"2026-11-22T09:05:07.250Z",
        "edited_at":"2026-11-22T09:06:00Z","reactions":[{"emoji":"👍","count":2,
        "users":[{"id":"3c4d","name":"Bo"}]}],"thread":{"conversation":9,"replies":3,
        "last_reply_at":"2026-11-22T10:00:00Z"},"mentions":["3c4d"],"mentions_all":true,
        "client_id":"c-17"}"#;
    const BARE_MESSAGE: &str = r#"{"id":"5f0d","conversation":7,"seq":43,"change":43,
        "author":{"id":"9a1b","name":"Ada"},"body":"","sent_at":"2026-11-22T09:05:07Z",
        "deleted":true}"#;
    const INFO: &str = r#"{"id":7,"kind":"direct","people":[{"id":"9a1b","name":"Ada"}],
        "parent":{"conversation":3,"message":"77aa"},"created_at":"2026-11-01T00:00:00Z"}"#;

    /// One frame of every kind, with every optional field present and absent.
    fn frames() -> Vec<String> {
        [
            r#"{"type":"hello","user":{"id":"9a1b","name":"Ada"}}"#.to_string(),
            r#"{"type":"hello","user":{"id":"9a1b","name":null}}"#.to_string(),
            format!(
                r#"{{"type":"subscribed","conversation":{INFO},"messages":[{MESSAGE},{BARE_MESSAGE}],
                "last_change":46,"reset":true,"has_older":true,"members":[{{"id":"9a1b","name":"Ada"}}]}}"#
            ),
            r#"{"type":"subscribed","conversation":{"id":1,"kind":"public","name":"general",
                "created_at":"2026-11-01T00:00:00Z"},"messages":[],"last_change":0,"reset":false}"#
                .to_string(),
            format!(r#"{{"type":"message","message":{MESSAGE}}}"#),
            format!(r#"{{"type":"changed","message":{BARE_MESSAGE}}}"#),
            r#"{"type":"ack","client_id":"c-17","message_id":"5f0c","conversation":7,"seq":42}"#
                .to_string(),
            r#"{"type":"ack","message_id":"5f0c","conversation":7,"seq":42}"#.to_string(),
            r#"{"type":"members","conversation":7,"change":47,"members":[{"id":"9a1b","name":"Ada"}]}"#
                .to_string(),
            r#"{"type":"activity","conversation":9,"seq":50,"change":50,"author":"3c4d",
                "mentions":["9a1b"],"mentions_all":true}"#
                .to_string(),
            r#"{"type":"activity","conversation":9,"seq":50,"change":51,"author":"3c4d"}"#
                .to_string(),
            format!(
                r#"{{"type":"joined","summary":{{"conversation":{INFO},"last_seq":5,"read_seq":2,
                "unread":3,"mentions":1}}}}"#
            ),
            r#"{"type":"left","conversation":7}"#.to_string(),
            r#"{"type":"read_moved","conversation":7,"seq":42}"#.to_string(),
            r#"{"type":"typing","conversation":7,"user":{"id":"3c4d","name":"Bo"}}"#.to_string(),
            r#"{"type":"presence","user":"3c4d","status":"away"}"#.to_string(),
            r#"{"type":"refresh"}"#.to_string(),
            r#"{"type":"error","error":{"code":"message_too_long","max":4000},
                "message":"Messages are at most 4000 characters.","client_id":"c-18"}"#
                .to_string(),
            r#"{"type":"error","error":{"code":"rate_limited","retry_after_ms":300},"message":"x"}"#
                .to_string(),
        ]
        .into()
    }

    #[test]
    fn every_event_reads_as_serde_reads_it() {
        let mut kinds = HashSet::new();
        for frame in frames() {
            let expected: ServerEvent = serde_json::from_str(&frame)
                .unwrap_or_else(|e| panic!("serde cannot read {frame}: {e}"));
            kinds.insert(std::mem::discriminant(&expected));
            assert_eq!(
                ServerEvent::from_frame(&frame).unwrap(),
                expected,
                "{frame}"
            );
            // And what the server writes (optional fields left out) reads back the same.
            let written = serde_json::to_string(&expected).unwrap();
            assert_eq!(
                ServerEvent::from_frame(&written).unwrap(),
                expected,
                "{written}"
            );
        }
        assert_eq!(kinds.len(), 14, "a frame of every kind of event");
    }

    #[test]
    fn what_serde_refuses_is_refused() {
        for frame in [
            r#"{"type":"nonsense","conversation":7}"#,
            r#"{"conversation":7}"#,
            r#"{"type":"left"}"#,
            r#"{"type":"left","conversation":"seven"}"#,
            r#"{"type":"left","conversation":7} trailing"#,
            "",
        ] {
            assert!(
                serde_json::from_str::<ServerEvent>(frame).is_err(),
                "{frame}"
            );
            assert!(ServerEvent::from_frame(frame).is_err(), "{frame}");
        }
    }
}
