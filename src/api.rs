//! Server functions: what pages call over HTTP, and what plain form posts reach when the
//! browser runs no JavaScript. Each lives at `/api/<name>`; all go through
//! [`crate::server::chat::Chat`], like the WebSocket.

use crate::error::AppError;
use crate::json_text::JsonAnswer;
use crate::protocol::{
    ConversationHistory, ConversationInfo, ConversationSummary, Member, Message, ThreadView,
    UserInfo,
};
#[cfg(feature = "ssr")]
use crate::protocol::{ConversationId, MessageId, UserId};
use leptos::prelude::*;

#[cfg(feature = "ssr")]
pub(crate) mod ssr {
    use crate::error::AppError;
    use crate::protocol::UserInfo;
    use crate::server::client_addr::ClientIp;
    use crate::server::identity::{of_this_request, CurrentUser, Provisional};
    use crate::server::state::AppState;
    use leptos::prelude::*;

    /// The app state and the caller, or `Unauthenticated`.
    pub async fn caller() -> Result<(AppState, UserInfo), AppError> {
        let state = expect_context::<AppState>();
        let CurrentUser(user) = of_this_request().ok_or(AppError::Unauthenticated)?;
        // The extension was read at the start of the request; the store has the latest name.
        let user = state.chat.store().user(&user.id).await?.unwrap_or(user);
        Ok((state, user))
    }

    /// The token hash of a caller who is not stored yet (see `identity`), if so.
    pub fn provisional() -> Option<String> {
        of_this_request::<Provisional>().map(|Provisional(token_hash)| token_hash)
    }

    /// The caller's address, as budgets see it.
    pub fn client_ip() -> std::net::IpAddr {
        of_this_request::<ClientIp>().map_or(std::net::IpAddr::from([127, 0, 0, 1]), |c| c.0)
    }

    /// Passes a result through, giving failures their proper HTTP status. A plain form post
    /// (no JavaScript) is redirected back to its page instead: with the error in the URL on
    /// failure (Leptos shows it there), to the clean page on success.
    pub fn with_status<T>(result: Result<T, AppError>) -> Result<T, AppError> {
        use axum::http::header::{ACCEPT, LOCATION, REFERER};
        let parts = use_context::<axum::http::request::Parts>();
        let header = |name| {
            parts
                .as_ref()
                .and_then(|p| p.headers.get(name))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        // A browser's form post to this server function, not a page render calling it.
        let form_post = parts.as_ref().is_some_and(|p| {
            p.method == axum::http::Method::POST && p.uri.path().starts_with("/api/")
        }) && header(ACCEPT).is_some_and(|v| v.contains("text/html"));
        let response = expect_context::<leptos_axum::ResponseOptions>();
        match &result {
            Err(error) if !form_post => response.set_status(error.status()),
            // Leptos would send the browser to the page with a stray `?` left behind.
            Ok(_)
                if form_post
                    && response
                        .0
                        .read()
                        .is_ok_and(|r| !r.headers.contains_key(LOCATION)) =>
            {
                if let Some(page) = header(REFERER) {
                    let clean = page.split_once('?').map_or(page.as_str(), |(path, _)| path);
                    leptos_axum::redirect(clean);
                }
            }
            _ => {}
        }
        result
    }
}

/// Who the caller is (the server issues an identity on the first visit).
#[server(endpoint = "get_me", output = JsonAnswer)]
pub async fn get_me() -> Result<UserInfo, AppError> {
    ssr::with_status(ssr::caller().await.map(|(_, user)| user))
}

/// Sets the caller's display name.
#[server(endpoint = "set_display_name", output = JsonAnswer)]
pub async fn set_display_name(name: String) -> Result<UserInfo, AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            state
                .chat
                .set_display_name(&user.id, ssr::provisional(), &name, ssr::client_ip())
                .await
        }
        .await,
    )
}

/// The caller's sidebar: their conversations with unread counts, and the default channels.
#[server(endpoint = "list_conversations", output = JsonAnswer)]
pub async fn list_conversations() -> Result<Vec<ConversationSummary>, AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            state.chat.sidebar(&user).await
        }
        .await,
    )
}

/// One page of the public channels ("Browse channels"), by name, after `after`.
#[server(endpoint = "browse_channels", output = JsonAnswer)]
pub async fn browse_channels(
    #[server(default)] after: Option<String>,
) -> Result<Vec<ConversationInfo>, AppError> {
    let state = expect_context::<crate::server::state::AppState>();
    ssr::with_status(state.chat.browse(after.as_deref()).await)
}

/// Creates a channel (`private` set: only members see it) and sends the browser to it.
#[server(endpoint = "create_channel", output = JsonAnswer)]
pub async fn create_channel(
    name: String,
    #[server(default)] private: Option<String>,
) -> Result<ConversationInfo, AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            let channel = state
                .chat
                .create_channel(&user, &name, private.is_some(), ssr::client_ip())
                .await?;
            leptos_axum::redirect(&crate::paths::conversation_path(&channel));
            Ok(channel)
        }
        .await,
    )
}

/// A channel (by name) and its most recent messages.
#[server(endpoint = "get_channel", output = JsonAnswer)]
pub async fn get_channel(channel: String) -> Result<ConversationHistory, AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            let (readable, _) = state.chat.open(&user, None, Some(&channel)).await?;
            state.chat.history(readable).await
        }
        .await,
    )
}

/// A conversation (by id: direct messages, threads) and its most recent messages.
#[server(endpoint = "get_conversation", output = JsonAnswer)]
pub async fn get_conversation(conversation: u64) -> Result<ConversationHistory, AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            let id = ConversationId(conversation);
            let (readable, _) = state.chat.open(&user, Some(id), None).await?;
            state.chat.history(readable).await
        }
        .await,
    )
}

/// A message's thread: the parent, its conversation, and the replies (if any yet).
#[server(endpoint = "get_thread", output = JsonAnswer)]
pub async fn get_thread(message_id: String) -> Result<ThreadView, AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            state.chat.thread(&user, &MessageId(message_id)).await
        }
        .await,
    )
}

/// Up to a window of messages older than `before_seq`, oldest first (scrolling back).
#[server(endpoint = "get_older", output = JsonAnswer)]
pub async fn get_older(
    conversation: u64,
    before_seq: u64,
) -> Result<ConversationHistory, AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            state
                .chat
                .older(&user, ConversationId(conversation), before_seq)
                .await
        }
        .await,
    )
}

/// Posts a message as the caller: the form fallback without JavaScript, and the browser's
/// path when the socket is down. A `client_id` sent before returns the original message.
#[server(endpoint = "post_message", output = JsonAnswer)]
pub async fn post_message(
    conversation: u64,
    body: String,
    #[server(default)] client_id: Option<String>,
) -> Result<Message, AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            state
                .chat
                .post(&user, ConversationId(conversation), &body, client_id)
                .await
                .map(|appended| appended.message)
        }
        .await,
    )
}

/// Replies in a message's thread (a plain form on the thread page).
#[server(endpoint = "reply_message", output = JsonAnswer)]
pub async fn reply_message(
    message_id: String,
    body: String,
    #[server(default)] client_id: Option<String>,
    #[server(default)] also_to_channel: Option<String>,
) -> Result<Message, AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            let parent = MessageId(message_id);
            state
                .chat
                .reply(&user, &parent, &body, client_id, also_to_channel.is_some())
                .await
                .map(|appended| appended.message)
        }
        .await,
    )
}

/// Replaces the text of one of the caller's own messages (a plain form on the edit page).
#[server(endpoint = "edit_message", output = JsonAnswer)]
pub async fn edit_message(message_id: String, body: String) -> Result<(), AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            let message = state
                .chat
                .edit(&user, &MessageId(message_id), &body)
                .await?;
            if let Some(path) = state.chat.path_of(&user, &message).await {
                leptos_axum::redirect(&path);
            }
            Ok(())
        }
        .await,
    )
}

/// Deletes one of the caller's own messages.
#[server(endpoint = "delete_message", output = JsonAnswer)]
pub async fn delete_message(message_id: String) -> Result<(), AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            state
                .chat
                .delete(&user, &MessageId(message_id))
                .await
                .map(|_| ())
        }
        .await,
    )
}

/// Adds (`on` = "true") or takes back the caller's reaction (plain buttons without
/// JavaScript; the browser reacts over its socket).
#[server(endpoint = "react", output = JsonAnswer)]
pub async fn react(message_id: String, emoji: String, on: String) -> Result<(), AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            state
                .chat
                .react(&user, &MessageId(message_id), &emoji, on == "true")
                .await
                .map(|_| ())
        }
        .await,
    )
}

/// Starts (or opens) a direct conversation with the people whose ids are given
/// (comma-separated) and sends the browser to it.
#[server(endpoint = "open_direct", output = JsonAnswer)]
pub async fn open_direct(people: String) -> Result<ConversationInfo, AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            let ids: Vec<UserId> = people
                .split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .take(crate::protocol::MAX_DIRECT_MEMBERS + 1)
                .map(|id| UserId(id.to_string()))
                .collect();
            let info = state
                .chat
                .open_direct(&user, &ids, ssr::client_ip())
                .await?;
            leptos_axum::redirect(&crate::paths::conversation_path(&info));
            Ok(info)
        }
        .await,
    )
}

/// Named people whose name starts with `prefix` (the "New message" picker).
#[server(endpoint = "find_people", output = JsonAnswer)]
pub async fn find_people(prefix: String) -> Result<Vec<UserInfo>, AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            state.chat.find_people(&user, &prefix).await
        }
        .await,
    )
}

/// Joins a public channel, leaves a channel (`leave` set), or adds someone (`invite` set
/// to their id) to a channel the caller is in; then back to the channel.
#[server(endpoint = "membership", output = JsonAnswer)]
pub async fn membership(
    conversation: u64,
    #[server(default)] leave: Option<String>,
    #[server(default)] invite: Option<String>,
) -> Result<(), AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            let id = ConversationId(conversation);
            match (leave, invite) {
                (Some(_), _) => {
                    state.chat.leave(&user, id).await?;
                    leptos_axum::redirect("/");
                    return Ok(());
                }
                (None, Some(invitee)) => state.chat.invite(&user, id, &UserId(invitee)).await?,
                (None, None) => state.chat.join(&user, id).await?,
            }
            Ok(())
        }
        .await,
    )
}

/// The members of a conversation, each with whether they are online.
#[server(endpoint = "get_members", output = JsonAnswer)]
pub async fn get_members(conversation: u64) -> Result<Vec<Member>, AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            state
                .chat
                .members(&user.id, ConversationId(conversation))
                .await
        }
        .await,
    )
}
