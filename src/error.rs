//! The one error type Flack returns, to the browser (server functions), to WebSocket clients
//! (`error` events) and inside the server. Each variant carries what a user needs to fix it.

use leptos::server_fn::codec::JsonEncoding;
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
    /// A channel name broke the naming rules.
    #[error("Channel names are 1 to {max} characters: letters, digits, '-' and '_'.")]
    ChannelNameInvalid {
        /// The length limit, in characters.
        max: usize,
    },
    /// A channel with this name (compared case-insensitively) exists already.
    #[error("A channel named #{name} already exists.")]
    ChannelTaken {
        /// The existing channel's name.
        name: String,
    },
    /// No channel has this name.
    #[error("There is no channel named #{name}.")]
    NoSuchChannel {
        /// The name that was asked for.
        name: String,
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
    #[error("Only its author can delete a message.")]
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
    /// A WebSocket frame could not be understood.
    #[error("Malformed frame: {detail}")]
    BadFrame {
        /// What the decoder said.
        detail: String,
    },
    /// Anything else: a transport failure, a bug. Details are logged on the server.
    #[error("Something went wrong: {detail}")]
    Internal {
        /// A short description.
        detail: String,
    },
}

impl AppError {
    /// Wraps an unexpected failure.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        AppError::Internal {
            detail: detail.to_string(),
        }
    }

    /// The HTTP status that best describes this error.
    #[cfg(feature = "ssr")]
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            AppError::NameEmpty
            | AppError::NameTooLong { .. }
            | AppError::ChannelNameInvalid { .. }
            | AppError::MessageEmpty
            | AppError::MessageTooLong { .. }
            | AppError::ClientIdInvalid { .. }
            | AppError::BadFrame { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::ChannelTaken { .. } => StatusCode::CONFLICT,
            AppError::NoSuchChannel { .. } | AppError::NoSuchMessage => StatusCode::NOT_FOUND,
            AppError::NotAuthor | AppError::ForeignOrigin => StatusCode::FORBIDDEN,
            AppError::NoDisplayName => StatusCode::PRECONDITION_REQUIRED,
            AppError::Unauthenticated => StatusCode::UNAUTHORIZED,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::internal(value)
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
    fn messages_name_the_limit() {
        let e = AppError::NameTooLong { max: 32 };
        assert!(e.to_string().contains("32"));
    }
}
