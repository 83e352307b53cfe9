//! Flack's wire protocol: the types the server and every client share, the limits, and the
//! validators that enforce them. Both the WebSocket at `/ws` and the server functions speak these.
//!
//! Frames are JSON text objects tagged by `"type"`. A client sends [`ClientEvent`]s and receives
//! [`ServerEvent`]s. The README's "Wire protocol" section walks through a whole session.

use crate::error::AppError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The most recent messages a channel keeps in memory, and the most a join returns.
pub const HISTORY_WINDOW: usize = 100;
/// Channels listed on one page of "Browse channels".
pub const CHANNEL_PAGE: usize = 50;
/// The longest message body, in characters (Unicode scalar values).
pub const MAX_MESSAGE_CHARS: usize = 4000;
/// The longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 32;
/// The longest channel name, in characters.
pub const MAX_CHANNEL_NAME_CHARS: usize = 32;
/// The longest client-chosen message id, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 64;
/// The largest WebSocket frame the server reads; bigger ones close the socket with code 1009.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Close code: the client sent faster than its rate limit for too long.
pub const CLOSE_FLOOD: u16 = 4029;
/// Close code: the client did not read its events fast enough (it may reconnect and catch up).
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// Close code: the identity was signed out (a new one is needed to reconnect).
pub const CLOSE_SIGNED_OUT: u16 = 4001;

/// An opaque user id issued by the server (32 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub String);

impl UserId {
    /// A short tag shown next to a display name so that two people of the same name are told
    /// apart (`#` and the id's first four hex digits).
    pub fn tag(&self) -> String {
        format!("#{}", self.0.get(..4).unwrap_or(&self.0))
    }
}

/// An opaque message id issued by the server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(pub String);

/// Who a user is, as others see them. `name` is `None` until they choose a display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The server-issued id.
    pub id: UserId,
    /// The chosen display name, if any.
    pub name: Option<String>,
}

/// The author of a message: id and the display name they had when they sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    /// The author's user id.
    pub id: UserId,
    /// The author's display name at sending time.
    pub name: String,
}

/// A channel as listed in the sidebar.
///
/// ```json
/// {"name":"general","created_at":"2026-11-22T10:00:00Z"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// The name as its creator typed it (unique case-insensitively).
    pub name: String,
    /// When it was created (UTC).
    pub created_at: DateTime<Utc>,
}

/// One chat message. Every field but `body` and `client_id` is assigned by the server.
///
/// ```json
/// {"id":"5f0c…","channel":"general","seq":42,"author":{"id":"9a1b…","name":"Ada"},
///  "body":"hello","sent_at":"2026-11-22T10:00:00.123Z","client_id":"c-17"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Server-assigned unique id.
    pub id: MessageId,
    /// The channel's name.
    pub channel: String,
    /// Position in the channel: the first message is 1 and each next one is one more.
    pub seq: u64,
    /// Who sent it.
    pub author: Author,
    /// The text, exactly as sent (clients render it as text, never as HTML).
    pub body: String,
    /// When the server accepted it (UTC).
    pub sent_at: DateTime<Utc>,
    /// The sender's own id for this message, if it gave one (echoed so it can match its ack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// A channel and its most recent messages, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelHistory {
    /// The channel.
    pub channel: ChannelInfo,
    /// Up to [`HISTORY_WINDOW`] messages, in increasing `seq`.
    pub messages: Vec<Message>,
}

/// What a client sends over the WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientEvent {
    /// Open a channel: from now on its events arrive on this socket (one open channel per
    /// socket; subscribing again replaces it). The server answers with [`ServerEvent::Subscribed`].
    ///
    /// `{"type":"subscribe","channel":"general"}` joins fresh (the recent window);
    /// `{"type":"subscribe","channel":"general","after_seq":41}` catches up after a reconnect.
    Subscribe {
        /// The channel's name (any case).
        channel: String,
        /// The last sequence number this client has seen in that channel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_seq: Option<u64>,
        /// The oldest sequence number this client still shows: deletions are reported from
        /// there on (by default, a window's worth before `after_seq`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        oldest_seq: Option<u64>,
    },
    /// Post a message: `{"type":"send","channel":"general","body":"hi","client_id":"c-17"}`.
    /// The sender gets an [`ServerEvent::Ack`] and everyone subscribed a [`ServerEvent::Message`].
    Send {
        /// The channel's name (any case).
        channel: String,
        /// The text, at most [`MAX_MESSAGE_CHARS`] characters.
        body: String,
        /// The client's own id for this message, echoed in the ack.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    /// Delete one of one's own messages: `{"type":"delete","message_id":"5f0c…"}`.
    Delete {
        /// The message's id.
        message_id: MessageId,
    },
}

/// What the server sends over the WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent {
    /// First frame on every socket: who the server thinks you are.
    /// `{"type":"hello","user":{"id":"9a1b…","name":"Ada"}}`
    Hello {
        /// The authenticated user.
        user: UserInfo,
    },
    /// The answer to a subscribe, and the resync after a socket fell behind.
    ///
    /// `messages` are those with `seq > after_seq` (in order). `removed` lists sequence numbers
    /// at or below `after_seq`, still inside the window, whose messages were deleted meanwhile.
    /// With `reset: true` the client missed more than the window holds: it must drop what it
    /// shows and show `messages` (the whole recent window) instead.
    /// `{"type":"subscribed","channel":"general","messages":[…],"removed":[],"reset":false}`
    Subscribed {
        /// The channel's name.
        channel: String,
        /// New messages, oldest first.
        messages: Vec<Message>,
        /// Sequence numbers of messages deleted meanwhile.
        removed: Vec<u64>,
        /// Whether the client must replace what it shows.
        reset: bool,
    },
    /// A new message in the open channel. `{"type":"message","message":{…}}`
    Message {
        /// The message.
        message: Message,
    },
    /// The sender's confirmation that a message was stored.
    /// `{"type":"ack","client_id":"c-17","message_id":"5f0c…","channel":"general","seq":42}`
    Ack {
        /// The client's id for it, if it gave one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// The server's id for it.
        message_id: MessageId,
        /// Its channel.
        channel: String,
        /// Its sequence number.
        seq: u64,
    },
    /// A message in the open channel was deleted by its author.
    /// `{"type":"message_deleted","channel":"general","message_id":"5f0c…","seq":42}`
    MessageDeleted {
        /// Its channel.
        channel: String,
        /// Its id.
        message_id: MessageId,
        /// Its sequence number.
        seq: u64,
    },
    /// A request failed; the socket stays open. `client_id` names the failed send, if any.
    /// `{"type":"error","error":{"code":"message_too_long","max":4000},
    ///   "message":"Messages are at most 4000 characters."}`
    Error {
        /// The typed error.
        error: AppError,
        /// The same, as a sentence for people.
        message: String,
        /// The client id of the send that failed, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
}

impl ServerEvent {
    /// An error event with its human-readable sentence filled in.
    pub fn error(error: AppError, client_id: Option<String>) -> Self {
        let message = error.to_string();
        ServerEvent::Error {
            error,
            message,
            client_id,
        }
    }
}

/// Unicode format characters (general category Cf): bidirectional overrides and isolates,
/// zero-width spaces and joiners, invisible operators, tags. They change how the text around
/// them is shown without being seen themselves.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{0600}'..='\u{0605}' | '\u{061C}' | '\u{06DD}' | '\u{070F}'
        | '\u{0890}'..='\u{0891}' | '\u{08E2}' | '\u{180E}' | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{110BD}' | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

/// Characters that show as nothing: white space, format characters, Hangul fillers, the
/// blank Braille pattern, variation selectors and the combining grapheme joiner.
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || is_format(c)
        || matches!(c,
            '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' | '\u{2800}' | '\u{034F}'
            | '\u{17B4}' | '\u{17B5}' | '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}')
}

/// Checks and normalises a display name: trimmed, 1 to [`MAX_DISPLAY_NAME_CHARS`] characters,
/// no control or format characters (so no bidirectional overrides or zero-width tricks; the
/// zero-width joiner of emoji sequences is kept), and something visible.
pub fn validate_display_name(raw: &str) -> Result<String, AppError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(AppError::NameEmpty);
    }
    if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(AppError::NameTooLong {
            max: MAX_DISPLAY_NAME_CHARS,
        });
    }
    let hidden = |c: char| c.is_control() || (is_format(c) && c != '\u{200D}');
    if name.chars().any(hidden) || name.chars().all(is_invisible) {
        return Err(AppError::NameInvalid);
    }
    Ok(name.to_string())
}

/// Checks and normalises a channel name: trimmed, 1 to [`MAX_CHANNEL_NAME_CHARS`] ASCII letters,
/// digits, `-` and `_` (so it is safe in a URL as it is).
pub fn validate_channel_name(raw: &str) -> Result<String, AppError> {
    let name = raw.trim().trim_start_matches('#');
    let ok = !name.is_empty()
        && name.len() <= MAX_CHANNEL_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(name.to_string())
    } else {
        Err(AppError::ChannelNameInvalid {
            max: MAX_CHANNEL_NAME_CHARS,
        })
    }
}

/// The key two channel names clash on: trimmed and lower-cased.
pub fn channel_key(name: &str) -> String {
    name.trim().trim_start_matches('#').to_ascii_lowercase()
}

/// Checks a message body: not blank, at most [`MAX_MESSAGE_CHARS`] characters. Trailing
/// whitespace is dropped; everything else, including leading indentation, is kept.
pub fn validate_message_body(raw: &str) -> Result<String, AppError> {
    let body = raw.trim_end();
    if body.trim_start().is_empty() {
        return Err(AppError::MessageEmpty);
    }
    if body.chars().count() > MAX_MESSAGE_CHARS {
        return Err(AppError::MessageTooLong {
            max: MAX_MESSAGE_CHARS,
        });
    }
    if body.contains('\0') {
        return Err(AppError::MessageHasNul);
    }
    Ok(body.to_string())
}

/// Checks a client-chosen message id: 1 to [`MAX_CLIENT_ID_BYTES`] printable ASCII characters.
pub fn validate_client_id(raw: &str) -> Result<String, AppError> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_CLIENT_ID_BYTES
        && raw.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(raw.to_string())
    } else {
        Err(AppError::ClientIdInvalid {
            max: MAX_CLIENT_ID_BYTES,
        })
    }
}

/// Decodes one text frame from a client, turning any failure into a typed error.
pub fn decode_client_event(text: &str) -> Result<ClientEvent, AppError> {
    serde_json::from_str(text).map_err(|e| AppError::BadFrame {
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(validate_display_name("  Ada ").unwrap(), "Ada");
        assert_eq!(validate_display_name("   "), Err(AppError::NameEmpty));
        let long = "x".repeat(MAX_DISPLAY_NAME_CHARS + 1);
        assert!(matches!(
            validate_display_name(&long),
            Err(AppError::NameTooLong { .. })
        ));
        // Characters, not bytes: 32 accented letters fit.
        assert!(validate_display_name(&"é".repeat(MAX_DISPLAY_NAME_CHARS)).is_ok());
        assert!(validate_display_name("a\u{7}b").is_err());
    }

    #[test]
    fn display_names_refuse_hidden_and_reordering_characters() {
        for bad in [
            "Ada\u{202E}nimda",    // right-to-left override
            "\u{2066}Ada\u{2069}", // isolates
            "Ad\u{200B}a",         // zero-width space
            "\u{200B}\u{200C}",    // nothing visible
            "\u{3164}",            // Hangul filler
            "\u{2800}\u{2800}",    // blank Braille
            "\u{FE0F}",
        ] {
            assert_eq!(
                validate_display_name(bad),
                Err(AppError::NameInvalid),
                "{bad:?}"
            );
        }
        // Emoji sequences keep their joiner; other scripts are fine.
        assert!(validate_display_name("👩\u{200D}💻 Ada").is_ok());
        assert!(validate_display_name("שרה").is_ok());
        assert!(validate_display_name("李雷").is_ok());
    }

    #[test]
    fn bodies_refuse_nul() {
        assert_eq!(validate_message_body("a\0b"), Err(AppError::MessageHasNul));
        assert!(validate_message_body("tab\tand\u{202E}override are text").is_ok());
    }

    #[test]
    fn channel_names_follow_the_rules() {
        assert_eq!(validate_channel_name(" #Dev-Ops_2 ").unwrap(), "Dev-Ops_2");
        for bad in ["", "   ", "has space", "ünïcode", "<b>", &"a".repeat(33)] {
            assert!(
                validate_channel_name(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert_eq!(channel_key("  General "), channel_key("general"));
    }

    #[test]
    fn message_bodies_are_bounded_but_kept_verbatim() {
        assert_eq!(validate_message_body("  a\nb  \n").unwrap(), "  a\nb");
        assert_eq!(validate_message_body(" \n\t"), Err(AppError::MessageEmpty));
        assert!(validate_message_body(&"x".repeat(MAX_MESSAGE_CHARS)).is_ok());
        assert_eq!(
            validate_message_body(&"x".repeat(MAX_MESSAGE_CHARS + 1)),
            Err(AppError::MessageTooLong {
                max: MAX_MESSAGE_CHARS
            })
        );
        let html = "<img src=x onerror=alert(1)>";
        assert_eq!(validate_message_body(html).unwrap(), html);
    }

    #[test]
    fn client_ids_are_short_printable_ascii() {
        assert!(validate_client_id("c-17").is_ok());
        assert!(validate_client_id("").is_err());
        assert!(validate_client_id("with space").is_err());
        assert!(validate_client_id(&"a".repeat(65)).is_err());
    }

    #[test]
    fn documented_client_frames_decode() {
        let cases = [
            (
                r#"{"type":"subscribe","channel":"general"}"#,
                ClientEvent::Subscribe {
                    channel: "general".into(),
                    after_seq: None,
                    oldest_seq: None,
                },
            ),
            (
                r#"{"type":"subscribe","channel":"general","after_seq":41}"#,
                ClientEvent::Subscribe {
                    channel: "general".into(),
                    after_seq: Some(41),
                    oldest_seq: None,
                },
            ),
            (
                r#"{"type":"send","channel":"general","body":"hi","client_id":"c-17"}"#,
                ClientEvent::Send {
                    channel: "general".into(),
                    body: "hi".into(),
                    client_id: Some("c-17".into()),
                },
            ),
            (
                r#"{"type":"delete","message_id":"5f0c"}"#,
                ClientEvent::Delete {
                    message_id: MessageId("5f0c".into()),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(decode_client_event(text).unwrap(), want);
            let again = serde_json::to_string(&want).unwrap();
            assert_eq!(decode_client_event(&again).unwrap(), want);
        }
    }

    #[test]
    fn malformed_frames_are_typed_errors() {
        for bad in [
            "",
            "not json",
            "{}",
            r#"{"type":"shout","channel":"x"}"#,
            r#"{"type":"send","channel":"x"}"#,
            r#"{"type":"subscribe","channel":"x","after_seq":-1}"#,
        ] {
            assert!(
                matches!(decode_client_event(bad), Err(AppError::BadFrame { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn server_error_events_carry_a_sentence() {
        let ev = ServerEvent::error(AppError::NotAuthor, None);
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["type"], "error");
        assert_eq!(json["error"]["code"], "not_author");
        assert_eq!(json["message"], "Only its author can delete a message.");
    }

    #[test]
    fn user_tags_tell_namesakes_apart() {
        let a = UserId("0123abcd".into());
        let b = UserId("9876abcd".into());
        assert_eq!(a.tag(), "#0123");
        assert_ne!(a.tag(), b.tag());
    }
}
