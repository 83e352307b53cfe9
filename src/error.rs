//! The one error type Flack returns, to the browser (server functions), to WebSocket clients
//! (`error` events) and inside the server. Each variant carries what a user needs to fix it.

use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// Everything that can go wrong in Flack, as the client sees it.
///
/// On the wire it is a tagged object: `{"code":"message_too_long","max":4000}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum AppError {
    /// A display name was empty after trimming.
    #[error("Please enter a display name.")]
    NameEmpty,
    /// A display name was longer than allowed.
    #[error("Display names are at most {max} characters.")]
    NameTooLong {
        /// The limit, in characters.
        max: usize,
    },
    /// A display name had control or format characters, or nothing visible.
    #[error("Display names can't contain control or invisible formatting characters.")]
    NameInvalid,
    /// A channel name broke the naming rules.
    #[error("Channel names are 1 to {max} characters: letters, digits, '-' and '_'.")]
    ChannelNameInvalid {
        /// The length limit, in characters.
        max: usize,
    },
    /// A channel with this name (compared case-insensitively) exists already.
    #[error(
        "{}",
        named(
            "A channel named #",
            name,
            " already exists.",
            "That channel name is taken."
        )
    )]
    ChannelTaken {
        /// The existing channel's name.
        #[serde(default)]
        name: String,
    },
    /// No channel has this name.
    #[error(
        "{}",
        named("There is no channel named #", name, ".", "There is no such channel.")
    )]
    NoSuchChannel {
        /// The name that was asked for.
        #[serde(default)]
        name: String,
    },
    /// No conversation with this id exists, or the user may not see it.
    #[error("There is no such conversation, or you are not in it.")]
    NoSuchConversation,
    /// No user with this id exists.
    #[error("There is no such person.")]
    NoSuchUser,
    /// Only members may do this (post in a private channel, invite, …).
    #[error("Only members of this conversation can do that.")]
    NotMember,
    /// This conversation's membership cannot be changed this way.
    #[error("You can't do that in this kind of conversation.")]
    WrongKind,
    /// A direct conversation may have at most this many people.
    #[error("A direct message can include at most {max} people.")]
    TooManyPeople {
        /// The limit, sender included.
        max: usize,
    },
    /// The user belongs to as many conversations as allowed.
    #[error("You are in {max} conversations already; leave one first.")]
    TooManyConversations {
        /// The limit.
        max: usize,
    },
    /// A reaction was not a single emoji.
    #[error("A reaction is one emoji (at most {max} bytes).")]
    ReactionInvalid {
        /// The limit, in bytes.
        max: usize,
    },
    /// A message has as many different reactions as allowed.
    #[error("A message can have at most {max} different reactions.")]
    TooManyReactions {
        /// The limit.
        max: usize,
    },
    /// Replies go to the thread's parent, not to a reply.
    #[error("Replies can't have threads of their own.")]
    NestedThread,
    /// The server holds as many channels as it is configured to.
    #[error("This server has reached its limit of {max} channels.")]
    TooManyChannels {
        /// The limit.
        max: usize,
    },
    /// A message was empty after trimming.
    #[error("A message can't be empty.")]
    MessageEmpty,
    /// A message was longer than allowed.
    #[error("Messages are at most {max} characters.")]
    MessageTooLong {
        /// The limit, in characters.
        max: usize,
    },
    /// A message contained a NUL character.
    #[error("Messages can't contain NUL characters.")]
    MessageHasNul,
    /// A client-chosen message id was not 1–64 printable ASCII characters.
    #[error("A client id is 1 to {max} printable ASCII characters.")]
    ClientIdInvalid {
        /// The length limit, in bytes.
        max: usize,
    },
    /// The message is not (or no longer) held by the server.
    #[error("That message no longer exists.")]
    NoSuchMessage,
    /// Somebody tried to delete a message they did not write.
    #[error("Only its author can edit or delete a message.")]
    NotAuthor,
    /// The user must pick a display name before doing this.
    #[error("Choose a display name first.")]
    NoDisplayName,
    /// The user is sending faster than allowed.
    #[error("You are sending too fast; try again in {retry_after_ms} ms.")]
    RateLimited {
        /// How long to wait before the next message is accepted.
        retry_after_ms: u64,
    },
    /// The request carried no valid identity.
    #[error("You are not signed in; reload the page.")]
    Unauthenticated,
    /// The request came from another site.
    #[error("Requests from other sites are refused.")]
    ForeignOrigin,
    /// The request named a host this server does not serve.
    #[error("This server does not serve that host name.")]
    ForeignHost,
    /// A WebSocket frame could not be understood.
    #[error("Malformed frame: {detail}")]
    BadFrame {
        /// What the decoder said.
        #[serde(default)]
        detail: String,
    },
    /// A request's arguments could not be understood.
    #[error("The request was malformed.")]
    BadRequest,
    /// A request's body was larger than allowed.
    #[error("The request was larger than {max} bytes.")]
    BodyTooLarge {
        /// The limit, in bytes.
        max: usize,
    },
    /// The identity was signed out (its sockets are closed).
    #[error("You signed out.")]
    SignedOut,
    /// The server cannot reach its database (or bus) right now: nothing was changed, and the
    /// same request may be sent again (clients retry sends on their own).
    #[error("The server can't reach its database right now; trying again shortly.")]
    Unavailable,
    /// Anything else: a transport failure, a bug. Details are logged on the server.
    #[error("Something went wrong on the server; please try again.")]
    Internal {
        /// A short description (for logs and API clients; never shown on a page).
        #[serde(default)]
        detail: String,
    },
}

/// "{before}{name}{after}" when `name` is a valid channel name, else `otherwise`: a name is
/// shown only if it could be a channel's, so a crafted error cannot put words on a page.
fn named(before: &str, name: &str, after: &str, otherwise: &str) -> String {
    match crate::protocol::validate_channel_name(name) {
        Ok(name) => format!("{before}{name}{after}"),
        Err(_) => otherwise.to_string(),
    }
}

impl AppError {
    /// Wraps an unexpected failure.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        AppError::Internal {
            detail: detail.to_string(),
        }
    }

    /// The same error without free text (names, details), fit to travel in a URL: what a
    /// page shows from a URL is then a fixed sentence for a code, whatever the link says.
    pub fn without_text(self) -> Self {
        match self {
            AppError::ChannelTaken { .. } => AppError::ChannelTaken {
                name: String::new(),
            },
            AppError::NoSuchChannel { .. } => AppError::NoSuchChannel {
                name: String::new(),
            },
            AppError::BadFrame { .. } => AppError::BadFrame {
                detail: String::new(),
            },
            AppError::Internal { .. } => AppError::Internal {
                detail: String::new(),
            },
            other => other,
        }
    }

    /// The HTTP status that best describes this error.
    #[cfg(feature = "ssr")]
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            AppError::NameEmpty
            | AppError::NameTooLong { .. }
            | AppError::NameInvalid
            | AppError::MessageHasNul
            | AppError::ChannelNameInvalid { .. }
            | AppError::MessageEmpty
            | AppError::MessageTooLong { .. }
            | AppError::ClientIdInvalid { .. }
            | AppError::ReactionInvalid { .. }
            | AppError::NestedThread
            | AppError::WrongKind
            | AppError::BadFrame { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::TooManyPeople { .. }
            | AppError::TooManyConversations { .. }
            | AppError::TooManyReactions { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::BadRequest => StatusCode::BAD_REQUEST,
            AppError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::ChannelTaken { .. } => StatusCode::CONFLICT,
            AppError::TooManyChannels { .. } => StatusCode::INSUFFICIENT_STORAGE,
            AppError::NoSuchChannel { .. }
            | AppError::NoSuchMessage
            | AppError::NoSuchConversation
            | AppError::NoSuchUser => StatusCode::NOT_FOUND,
            AppError::NotAuthor | AppError::NotMember | AppError::ForeignOrigin => {
                StatusCode::FORBIDDEN
            }
            AppError::ForeignHost => StatusCode::MISDIRECTED_REQUEST,
            AppError::NoDisplayName => StatusCode::PRECONDITION_REQUIRED,
            AppError::Unauthenticated | AppError::SignedOut => StatusCode::UNAUTHORIZED,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = crate::json_text::JsonText;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            // What the client sent could not be read: its fault, said without the decoder's
            // words.
            ServerFnErrorErr::Args(_)
            | ServerFnErrorErr::MissingArg(_)
            | ServerFnErrorErr::UnsupportedRequestMethod(_) => AppError::BadRequest,
            other => AppError::internal(other),
        }
    }
}

#[cfg(feature = "ssr")]
impl axum::response::IntoResponse for AppError {
    fn into_response(self) -> axum::response::Response {
        (self.status(), axum::Json(self)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_tagged_on_the_wire() {
        let json = serde_json::to_string(&AppError::MessageTooLong { max: 4000 }).unwrap();
        assert_eq!(json, r#"{"code":"message_too_long","max":4000}"#);
        let back: AppError = serde_json::from_str(&json).unwrap();
        assert_eq!(back, AppError::MessageTooLong { max: 4000 });
    }

    #[test]
    fn errors_fit_for_a_url_carry_no_free_text() {
        let crafted = AppError::Internal {
            detail: "Your account is locked: call +1 555 0100".into(),
        };
        assert!(!crafted.to_string().contains("555"));
        let crafted = AppError::ChannelTaken {
            name: "x already exists. Call +1 555 0100 to".into(),
        };
        assert!(!crafted.to_string().contains("555"));
        assert_eq!(
            AppError::ChannelTaken {
                name: "design".into()
            }
            .to_string(),
            "A channel named #design already exists."
        );
        let json = serde_json::to_string(&crafted.without_text()).unwrap();
        assert_eq!(json, r#"{"code":"channel_taken","name":""}"#);
        let back: AppError = serde_json::from_str(r#"{"code":"internal"}"#).unwrap();
        assert_eq!(back, AppError::internal(""));
        assert_eq!(
            AppError::from_server_fn_error(ServerFnErrorErr::Args("serde said x".into())),
            AppError::BadRequest
        );
    }

    #[test]
    fn messages_name_the_limit() {
        let e = AppError::NameTooLong { max: 32 };
        assert!(e.to_string().contains("32"));
    }
}
