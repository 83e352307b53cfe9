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
/// The most people in one direct conversation (the sender included).
pub const MAX_DIRECT_MEMBERS: usize = 8;
/// Unread counts stop here (the sidebar shows "999+").
pub const MAX_UNREAD_COUNT: u32 = 999;
/// Reactors listed by name per emoji (the count covers everyone).
pub const MAX_REACTORS_SHOWN: usize = 20;
/// Different emoji on one message at most.
pub const MAX_REACTIONS_PER_MESSAGE: usize = 24;
/// The longest reaction, in bytes (one emoji, with its modifiers and joiners).
pub const MAX_EMOJI_BYTES: usize = 32;
/// People one message can mention by name at most (more are left unmentioned).
pub const MAX_MENTIONS: usize = 50;
/// Members listed in a conversation's members panel at most.
pub const MEMBERS_SHOWN: usize = 500;
/// Close code: the client sent faster than its rate limit for too long.
pub const CLOSE_FLOOD: u16 = 4029;
/// Close code: the client did not read its events fast enough (it may reconnect and catch up).
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// Close code: the identity was signed out (a new one is needed to reconnect).
pub const CLOSE_SIGNED_OUT: u16 = 4001;
/// Close code: the server is shutting down or restarting (the WebSocket standard's "service
/// restart"); the client reconnects at once, without waiting, and reaches another node.
pub const CLOSE_SERVICE_RESTART: u16 = 1012;

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

/// The author of a message (or a member): id and display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    /// The user id.
    pub id: UserId,
    /// The display name (a message keeps the one its author had when sending it).
    pub name: String,
}

/// A conversation's id, issued by the server: channels, direct messages and threads alike.
/// Names are attributes of channels, resolved to an id once at the edge (a URL, a form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConversationId(pub u64);

impl std::fmt::Display for ConversationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a conversation is, which decides who may read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    /// A named channel anyone may find, read and join.
    Public,
    /// A named channel only its members see.
    Private,
    /// A conversation between 2 to [`MAX_DIRECT_MEMBERS`] people, only they see it.
    Direct,
    /// The replies to one message; readable by whoever may read that message.
    Thread,
}

impl ConversationKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationKind::Public => "public",
            ConversationKind::Private => "private",
            ConversationKind::Direct => "direct",
            ConversationKind::Thread => "thread",
        }
    }

    /// The kind stored under this name.
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "public" => ConversationKind::Public,
            "private" => ConversationKind::Private,
            "direct" => ConversationKind::Direct,
            "thread" => ConversationKind::Thread,
            _ => return None,
        })
    }

    /// Whether it is a named channel (public or private).
    pub fn is_channel(self) -> bool {
        matches!(self, ConversationKind::Public | ConversationKind::Private)
    }
}

/// The message a thread answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadParent {
    /// The conversation the message is in.
    pub conversation: ConversationId,
    /// The message.
    pub message: MessageId,
}

/// A conversation as clients list and open it.
///
/// ```json
/// {"id":7,"kind":"public","name":"general","created_at":"2026-11-22T10:00:00Z"}
/// {"id":9,"kind":"direct","people":[{"id":"9a1b…","name":"Ada"},{"id":"3c4d…","name":"Bo"}],
///  "created_at":"2026-11-22T10:00:00Z"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationInfo {
    /// Its id.
    pub id: ConversationId,
    /// What it is.
    pub kind: ConversationKind,
    /// A channel's name as its creator typed it (unique case-insensitively); none for others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A direct conversation's members (its title), in id order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub people: Vec<Author>,
    /// A thread's parent message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ThreadParent>,
    /// When it was created (UTC).
    #[serde(deserialize_with = "crate::timestamp::read")]
    pub created_at: DateTime<Utc>,
}

impl ConversationInfo {
    /// How people see it named: `#general`, or the other members' names for a direct one.
    pub fn title(&self, me: Option<&UserId>) -> String {
        match (&self.name, self.kind) {
            (Some(name), _) => format!("#{name}"),
            (None, ConversationKind::Direct) => {
                let others: Vec<&str> = self
                    .people
                    .iter()
                    .filter(|p| Some(&p.id) != me)
                    .map(|p| p.name.as_str())
                    .collect();
                if others.is_empty() {
                    self.people
                        .first()
                        .map_or_else(|| "Direct message".into(), |p| format!("{} (you)", p.name))
                } else {
                    others.join(", ")
                }
            }
            (None, _) => "Thread".into(),
        }
    }
}

/// A conversation in the sidebar: what it is and how much of it this user has not read.
///
/// ```json
/// {"conversation":{"id":7,"kind":"public","name":"general",…},"last_seq":42,"read_seq":40,
///  "unread":2,"mentions":1}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationSummary {
    /// The conversation.
    pub conversation: ConversationInfo,
    /// The sequence number of its newest message (0 if none).
    pub last_seq: u64,
    /// The newest message this user has read.
    pub read_seq: u64,
    /// Messages by others after `read_seq` (counted up to [`MAX_UNREAD_COUNT`]).
    pub unread: u32,
    /// Of those, how many mention this user (or everyone).
    pub mentions: u32,
}

/// One emoji on a message: how many reacted and (the first [`MAX_REACTORS_SHOWN`]) who.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    /// The emoji.
    pub emoji: String,
    /// How many people reacted with it.
    pub count: u32,
    /// Who, in the order they reacted.
    pub users: Vec<Author>,
}

/// The replies to a message, as its parent shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadSummary {
    /// The thread.
    pub conversation: ConversationId,
    /// How many replies it has.
    pub replies: u32,
    /// When the last one was sent.
    #[serde(deserialize_with = "crate::timestamp::read")]
    pub last_reply_at: DateTime<Utc>,
}

/// One chat message, as it stands now. Every field but `body` and `client_id` is assigned by
/// the server.
///
/// ```json
/// {"id":"5f0c…","conversation":7,"seq":42,"change":45,"author":{"id":"9a1b…","name":"Ada"},
///  "body":"hello @Bo","sent_at":"2026-11-22T10:00:00.123Z","edited_at":"2026-11-22T10:01:00Z",
///  "reactions":[{"emoji":"👍","count":1,"users":[{"id":"3c4d…","name":"Bo"}]}],
///  "thread":{"conversation":12,"replies":3,"last_reply_at":"2026-11-22T10:05:00Z"},
///  "mentions":["3c4d…"],"client_id":"c-17"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Server-assigned unique id.
    pub id: MessageId,
    /// The conversation it is in.
    pub conversation: ConversationId,
    /// Its place in the conversation: the change number it was created with. Increasing,
    /// not consecutive (edits and reactions take numbers too).
    pub seq: u64,
    /// The number of the latest change to it (its creation, edit, deletion, a reaction or a
    /// reply); a client that holds a lower one holds an older state.
    pub change: u64,
    /// Who sent it.
    pub author: Author,
    /// The text, exactly as sent (clients render it as text, never as HTML). Empty once deleted.
    pub body: String,
    /// When the server accepted it (UTC).
    #[serde(deserialize_with = "crate::timestamp::read")]
    pub sent_at: DateTime<Utc>,
    /// When its author last edited it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::timestamp::read_optional"
    )]
    pub edited_at: Option<DateTime<Utc>>,
    /// Whether its author deleted it (it then carries no text).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Reactions, in the order their first reactor added them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<Reaction>,
    /// Replies in its thread, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<ThreadSummary>,
    /// Members it mentions by `@name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<UserId>,
    /// Whether it says `@channel`, `@here` or `@everyone`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mentions_all: bool,
    /// The sender's own id for this message, if it gave one (echoed so it can match its ack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// A plain message for unit tests: id `m<seq>`, body `body <seq>`, change number `seq`.
#[cfg(test)]
impl Message {
    pub fn sample(
        conversation: ConversationId,
        seq: u64,
        author: Author,
        sent_at: DateTime<Utc>,
    ) -> Message {
        Message {
            id: MessageId(format!("m{seq}")),
            conversation,
            seq,
            change: seq,
            author,
            body: format!("body {seq}"),
            sent_at,
            edited_at: None,
            deleted: false,
            reactions: Vec::new(),
            thread: None,
            mentions: Vec::new(),
            mentions_all: false,
            client_id: None,
        }
    }
}

impl Message {
    /// Whether it mentions this user (by name, or everyone).
    pub fn mentions_user(&self, user: &UserId) -> bool {
        self.mentions_all || self.mentions.contains(user)
    }
}

/// A conversation and its most recent messages, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationHistory {
    /// The conversation.
    pub conversation: ConversationInfo,
    /// Up to the server's history window of messages (deleted ones left out), in increasing
    /// `seq`.
    pub messages: Vec<Message>,
    /// Whether older messages exist before the first of `messages`.
    pub has_older: bool,
    /// The conversation's latest change number: a socket resumes after it.
    pub last_change: u64,
    /// The newest message the reader had read before this load (for the "New" divider).
    #[serde(default)]
    pub read_seq: u64,
    /// Whether the reader is a member (else they are previewing a public channel).
    #[serde(default)]
    pub member: bool,
}

/// A message's thread as its page shows it: the parent, the conversation it is in, and the
/// replies (none yet: `thread` is `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadView {
    /// The message replied to.
    pub parent: Message,
    /// The conversation the parent is in.
    pub conversation: ConversationInfo,
    /// The thread and its replies, once there is one.
    pub thread: Option<ConversationHistory>,
}

/// A member of a conversation, as the members panel shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Who.
    pub user: Author,
    /// Whether they have a connected client now.
    pub online: bool,
}

/// What a client sends over the WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientEvent {
    /// Open a conversation: from now on its events arrive on this socket (one open
    /// conversation per socket; subscribing again replaces it). The server answers with
    /// [`ServerEvent::Subscribed`]. A channel may be named instead of given by id.
    ///
    /// `{"type":"subscribe","conversation":7}` joins fresh (the recent window);
    /// `{"type":"subscribe","conversation":7,"after_change":45}` catches up after a reconnect;
    /// `{"type":"subscribe","channel":"general"}` opens a channel by name.
    Subscribe {
        /// The conversation's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation: Option<ConversationId>,
        /// Or a channel's name (any case).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        /// The last change number this client applied in that conversation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_change: Option<u64>,
    },
    /// Post a message:
    /// `{"type":"send","conversation":7,"body":"hi","client_id":"c-17"}`.
    /// The sender gets an [`ServerEvent::Ack`] and everyone subscribed a [`ServerEvent::Message`].
    /// Posting to a public channel one is not in joins it.
    Send {
        /// The conversation (a thread's id posts a reply to it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation: Option<ConversationId>,
        /// Or a channel's name (any case), for clients that address channels by name:
        /// `{"type":"send","channel":"general","body":"hi"}`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        /// The text, at most [`MAX_MESSAGE_CHARS`] characters.
        body: String,
        /// The client's own id for this message, echoed in the ack.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    /// Reply in a message's thread (starting the thread on the first reply):
    /// `{"type":"reply","message_id":"5f0c…","body":"agreed","client_id":"c-18"}`.
    /// With `"also_to_channel":true` the reply is posted in the parent's conversation too.
    Reply {
        /// The message replied to.
        message_id: MessageId,
        /// The text.
        body: String,
        /// The client's own id for the reply.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// Also post it in the parent's conversation.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        also_to_channel: bool,
    },
    /// Change the text of one's own message: `{"type":"edit","message_id":"5f0c…","body":"hi!"}`.
    Edit {
        /// The message's id.
        message_id: MessageId,
        /// The new text.
        body: String,
    },
    /// Delete one of one's own messages: `{"type":"delete","message_id":"5f0c…"}`.
    Delete {
        /// The message's id.
        message_id: MessageId,
    },
    /// Add (`"on":true`) or take back (`"on":false`) one's reaction:
    /// `{"type":"react","message_id":"5f0c…","emoji":"👍","on":true}`.
    React {
        /// The message's id.
        message_id: MessageId,
        /// One emoji (at most [`MAX_EMOJI_BYTES`] bytes).
        emoji: String,
        /// Add or remove.
        on: bool,
    },
    /// Mark a conversation read up to a message: `{"type":"read","conversation":7,"seq":42}`.
    /// Every device of the user hears [`ServerEvent::ReadMoved`].
    Read {
        /// The conversation.
        conversation: ConversationId,
        /// The newest message read.
        seq: u64,
    },
    /// "I am typing" in a conversation: `{"type":"typing","conversation":7}`. Throttled,
    /// never stored, dropped first under load.
    Typing {
        /// The conversation.
        conversation: ConversationId,
    },
    /// Whether this tab is in use (`"away":true` when hidden): `{"type":"presence","away":true}`.
    Presence {
        /// The tab is hidden or idle.
        away: bool,
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
    /// Without `reset`, `messages` are the current state of every message changed after the
    /// client's `after_change` (new ones, edited, deleted — `"deleted":true` — reacted to),
    /// in change order; the client applies each over what it holds. With `reset: true` (a
    /// fresh join, or a gap wider than the server replays) the client must drop what it shows
    /// and show `messages`, the recent window. `members` is set when membership changed.
    /// `{"type":"subscribed","conversation":{"id":7,…},"messages":[…],"last_change":45,
    ///   "reset":false,"has_older":true}`
    Subscribed {
        /// The conversation.
        conversation: ConversationInfo,
        /// Messages, oldest change first.
        messages: Vec<Message>,
        /// The conversation's change number this answer brings the client to.
        last_change: u64,
        /// Whether the client must replace what it shows.
        reset: bool,
        /// With `reset`: whether older messages exist before the window.
        #[serde(default)]
        has_older: bool,
        /// The members now, when membership changed after `after_change`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        members: Option<Vec<Author>>,
    },
    /// A new message in the open conversation. `{"type":"message","message":{…}}`
    Message {
        /// The message.
        message: Message,
    },
    /// A message in the open conversation changed (edited, deleted, reacted to, replied to):
    /// its whole new state. `{"type":"changed","message":{…,"change":46,"edited_at":"…"}}`
    Changed {
        /// The message as it is now.
        message: Message,
    },
    /// The sender's confirmation that a message was stored.
    /// `{"type":"ack","client_id":"c-17","message_id":"5f0c…","conversation":7,"seq":42}`
    Ack {
        /// The client's id for it, if it gave one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// The server's id for it.
        message_id: MessageId,
        /// Its conversation.
        conversation: ConversationId,
        /// Its sequence number.
        seq: u64,
    },
    /// The membership of the open conversation changed (change number `change`):
    /// `{"type":"members","conversation":7,"change":47,"members":[{"id":"9a1b…","name":"Ada"}]}`
    Members {
        /// The conversation.
        conversation: ConversationId,
        /// The change number of this membership change.
        change: u64,
        /// Who is a member now.
        members: Vec<Author>,
    },
    /// On the user's own stream: a new message in a conversation of theirs that this socket
    /// does not have open. `mention` says whether it mentions them.
    /// `{"type":"activity","conversation":9,"seq":50,"change":50,"author":"3c4d…","mention":true}`
    Activity {
        /// The conversation.
        conversation: ConversationId,
        /// The new message's sequence number.
        seq: u64,
        /// Its change number.
        change: u64,
        /// Who wrote it.
        author: UserId,
        /// The user ids it mentions.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mentions: Vec<UserId>,
        /// Whether it mentions everyone.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        mentions_all: bool,
    },
    /// On the user's own stream: they joined (or were added to) a conversation, e.g. someone
    /// started a direct message with them. `{"type":"joined","summary":{…}}`
    Joined {
        /// The conversation, with its unread counts.
        summary: ConversationSummary,
    },
    /// On the user's own stream: they left a conversation (on any device).
    /// `{"type":"left","conversation":7}`
    Left {
        /// The conversation.
        conversation: ConversationId,
    },
    /// On the user's own stream: their read position moved (on any device).
    /// `{"type":"read_moved","conversation":7,"seq":42}`
    ReadMoved {
        /// The conversation.
        conversation: ConversationId,
        /// The newest message read.
        seq: u64,
    },
    /// Someone is typing in the open conversation (for the next few seconds).
    /// `{"type":"typing","conversation":7,"user":{"id":"3c4d…","name":"Bo"}}`
    Typing {
        /// The conversation.
        conversation: ConversationId,
        /// Who.
        user: Author,
    },
    /// Someone came online, went away or went offline.
    /// `{"type":"presence","user":"3c4d…","status":"online"}`
    Presence {
        /// Who.
        user: UserId,
        /// `online`, `away` or `offline`.
        status: PresenceStatus,
    },
    /// The user's own stream fell behind and lost events: refetch the sidebar (unread
    /// counts, conversations). `{"type":"refresh"}`
    Refresh,
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

/// Whether someone is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    /// A client of theirs is connected and in use.
    Online,
    /// Connected, but every tab is hidden.
    Away,
    /// No client connected.
    Offline,
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

/// Whether a character can be part of an emoji: pictographs, symbols, regional indicators,
/// skin tones, joiners, variation selectors, keycaps and tag characters.
fn is_emoji_part(c: char) -> bool {
    matches!(c,
        '\u{1F000}'..='\u{1FAFF}' | '\u{2600}'..='\u{27BF}' | '\u{2190}'..='\u{21FF}'
        | '\u{2300}'..='\u{23FF}' | '\u{2B00}'..='\u{2BFF}' | '\u{25A0}'..='\u{25FF}'
        | '\u{2900}'..='\u{297F}' | '\u{3030}' | '\u{303D}' | '\u{3297}' | '\u{3299}'
        | '\u{00A9}' | '\u{00AE}' | '\u{203C}' | '\u{2049}' | '\u{2122}' | '\u{2139}'
        | '\u{200D}' | '\u{FE0F}' | '\u{20E3}' | '\u{E0020}'..='\u{E007F}')
}

/// Checks a reaction: one emoji (a sequence of emoji characters, or a keycap like `1️⃣`),
/// at most [`MAX_EMOJI_BYTES`] bytes. Words, letters and blanks are refused.
pub fn validate_emoji(raw: &str) -> Result<String, AppError> {
    let emoji = raw.trim();
    let keycap = emoji.contains('\u{20E3}');
    let ok = !emoji.is_empty()
        && emoji.len() <= MAX_EMOJI_BYTES
        && emoji.chars().count() <= 10
        && emoji
            .chars()
            .all(|c| is_emoji_part(c) || (keycap && (c.is_ascii_digit() || c == '#' || c == '*')))
        && emoji
            .chars()
            .any(|c| !matches!(c, '\u{200D}' | '\u{FE0F}' | '\u{E0020}'..='\u{E007F}'));
    if ok {
        Ok(emoji.to_string())
    } else {
        Err(AppError::ReactionInvalid {
            max: MAX_EMOJI_BYTES,
        })
    }
}

/// The words after `@` that mention everyone in a conversation.
pub const EVERYONE_MENTIONS: [&str; 3] = ["channel", "here", "everyone"];

/// The `@` mentions in a body: each `@` followed by a name ends where the name could end
/// (the caller matches candidates against member names, longest first). Returns the text
/// after each `@`, up to [`MAX_DISPLAY_NAME_CHARS`] characters.
pub fn mention_candidates(body: &str) -> impl Iterator<Item = &str> {
    body.match_indices('@').filter_map(move |(at, _)| {
        let before = body[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric()) {
            return None; // an e-mail address, not a mention
        }
        let rest = &body[at + 1..];
        let end = rest
            .char_indices()
            .nth(MAX_DISPLAY_NAME_CHARS)
            .map_or(rest.len(), |(i, _)| i);
        let rest = &rest[..end];
        (!rest.is_empty()).then_some(rest)
    })
}

/// Whether `text` (what follows an `@`) starts with `name`, ending there (not inside a word).
pub fn mention_matches(text: &str, name: &str) -> bool {
    let Some(head) = text.get(..name.len()) else {
        return false;
    };
    head.eq_ignore_ascii_case(name)
        && !text[name.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-')
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
        let m = || MessageId("5f0c".into());
        let cases = [
            (
                r#"{"type":"subscribe","conversation":7}"#,
                ClientEvent::Subscribe {
                    conversation: Some(ConversationId(7)),
                    channel: None,
                    after_change: None,
                },
            ),
            (
                r#"{"type":"subscribe","conversation":7,"after_change":45}"#,
                ClientEvent::Subscribe {
                    conversation: Some(ConversationId(7)),
                    channel: None,
                    after_change: Some(45),
                },
            ),
            (
                r#"{"type":"subscribe","channel":"general"}"#,
                ClientEvent::Subscribe {
                    conversation: None,
                    channel: Some("general".into()),
                    after_change: None,
                },
            ),
            (
                r#"{"type":"send","conversation":7,"body":"hi","client_id":"c-17"}"#,
                ClientEvent::Send {
                    conversation: Some(ConversationId(7)),
                    channel: None,
                    body: "hi".into(),
                    client_id: Some("c-17".into()),
                },
            ),
            (
                r#"{"type":"reply","message_id":"5f0c","body":"agreed","client_id":"c-18"}"#,
                ClientEvent::Reply {
                    message_id: m(),
                    body: "agreed".into(),
                    client_id: Some("c-18".into()),
                    also_to_channel: false,
                },
            ),
            (
                r#"{"type":"edit","message_id":"5f0c","body":"hi!"}"#,
                ClientEvent::Edit {
                    message_id: m(),
                    body: "hi!".into(),
                },
            ),
            (
                r#"{"type":"delete","message_id":"5f0c"}"#,
                ClientEvent::Delete { message_id: m() },
            ),
            (
                r#"{"type":"react","message_id":"5f0c","emoji":"👍","on":true}"#,
                ClientEvent::React {
                    message_id: m(),
                    emoji: "👍".into(),
                    on: true,
                },
            ),
            (
                r#"{"type":"read","conversation":7,"seq":42}"#,
                ClientEvent::Read {
                    conversation: ConversationId(7),
                    seq: 42,
                },
            ),
            (
                r#"{"type":"typing","conversation":7}"#,
                ClientEvent::Typing {
                    conversation: ConversationId(7),
                },
            ),
            (
                r#"{"type":"presence","away":true}"#,
                ClientEvent::Presence { away: true },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(decode_client_event(text).unwrap(), want);
            let again = serde_json::to_string(&want).unwrap();
            assert_eq!(decode_client_event(&again).unwrap(), want);
        }
    }

    #[test]
    fn reactions_are_single_emoji() {
        for good in ["👍", "❤️", "👩‍💻", "🇫🇷", "1️⃣", "👍🏽", "✅"] {
            assert!(validate_emoji(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            " ",
            "a",
            "ok",
            "<b>",
            "👍 a",
            "\u{200D}",
            &"😀".repeat(9),
            "1",
        ] {
            assert_eq!(
                validate_emoji(bad),
                Err(AppError::ReactionInvalid {
                    max: MAX_EMOJI_BYTES
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn mention_candidates_skip_addresses() {
        let found: Vec<&str> = mention_candidates("@Ada hi, mail me@x.org, @ Bo").collect();
        assert_eq!(found.len(), 2);
        assert!(found[0].starts_with("Ada"));
        assert!(mention_matches("Ada, hi", "ada"));
        assert!(!mention_matches("Adam", "Ada"));
    }

    #[test]
    fn direct_titles_name_the_others() {
        let p = |id: &str, name: &str| Author {
            id: UserId(id.into()),
            name: name.into(),
        };
        let info = ConversationInfo {
            id: ConversationId(9),
            kind: ConversationKind::Direct,
            name: None,
            people: vec![p("a", "Ada"), p("b", "Bo"), p("c", "Cy")],
            parent: None,
            created_at: Utc::now(),
        };
        assert_eq!(info.title(Some(&UserId("a".into()))), "Bo, Cy");
        let alone = ConversationInfo {
            people: vec![p("a", "Ada")],
            ..info
        };
        assert_eq!(alone.title(Some(&UserId("a".into()))), "Ada (you)");
    }

    #[test]
    fn malformed_frames_are_typed_errors() {
        for bad in [
            "",
            "not json",
            "{}",
            r#"{"type":"shout","channel":"x"}"#,
            r#"{"type":"send","conversation":7}"#,
            r#"{"type":"subscribe","conversation":-1}"#,
            r#"{"type":"react","message_id":"m","emoji":"👍"}"#,
            r#"{"type":"read","conversation":"seven","seq":1}"#,
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
        assert_eq!(
            json["message"],
            "Only its author can edit or delete a message."
        );
    }

    #[test]
    fn user_tags_tell_namesakes_apart() {
        let a = UserId("0123abcd".into());
        let b = UserId("9876abcd".into());
        assert_eq!(a.tag(), "#0123");
        assert_ne!(a.tag(), b.tag());
    }
}
