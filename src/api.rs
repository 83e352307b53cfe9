//! Server functions: what pages call over HTTP, and what plain form posts reach when the
//! browser runs no JavaScript. Each lives at `/api/<name>`; all go through
//! [`crate::server::chat::Chat`], like the WebSocket.

use crate::error::AppError;
use crate::protocol::{ChannelHistory, ChannelInfo, Message, UserInfo};
use leptos::prelude::*;

#[cfg(feature = "ssr")]
mod ssr {
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
#[server(endpoint = "get_me")]
pub async fn get_me() -> Result<UserInfo, AppError> {
    ssr::with_status(ssr::caller().await.map(|(_, user)| user))
}

/// Sets the caller's display name.
#[server(endpoint = "set_display_name")]
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

/// The caller's sidebar: the default channels and those they opened lately, by name.
#[server(endpoint = "list_channels")]
pub async fn list_channels() -> Result<Vec<ChannelInfo>, AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            state.chat.sidebar(&user).await
        }
        .await,
    )
}

/// One page of every channel ("Browse channels"), by name, after `after`.
#[server(endpoint = "browse_channels")]
pub async fn browse_channels(
    #[server(default)] after: Option<String>,
) -> Result<Vec<ChannelInfo>, AppError> {
    let state = expect_context::<crate::server::state::AppState>();
    ssr::with_status(state.chat.browse(after.as_deref()).await)
}

/// Creates a channel and sends the browser to it.
#[server(endpoint = "create_channel")]
pub async fn create_channel(name: String) -> Result<ChannelInfo, AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            let channel = state
                .chat
                .create_channel(&user, &name, ssr::client_ip())
                .await?;
            leptos_axum::redirect(&crate::app::channel_path(&channel.name));
            Ok(channel)
        }
        .await,
    )
}

/// A channel and its most recent messages (remembered as a visit, for the sidebar).
#[server(endpoint = "get_channel")]
pub async fn get_channel(channel: String) -> Result<ChannelHistory, AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            let history = state.chat.history(&channel).await?;
            state.chat.visited(&user, &history.channel.name).await;
            Ok(history)
        }
        .await,
    )
}

/// Up to 100 messages older than `before_seq`, oldest first (scrolling back in history).
#[server(endpoint = "get_older")]
pub async fn get_older(channel: String, before_seq: u64) -> Result<ChannelHistory, AppError> {
    let state = expect_context::<crate::server::state::AppState>();
    ssr::with_status(state.chat.older(&channel, before_seq).await)
}

/// Posts a message as the caller: the form fallback without JavaScript, and the browser's
/// path when the socket is down. A `client_id` sent before returns the original message.
#[server(endpoint = "post_message")]
pub async fn post_message(
    channel: String,
    body: String,
    #[server(default)] client_id: Option<String>,
) -> Result<Message, AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            state
                .chat
                .post(&user, &channel, &body, client_id)
                .await
                .map(|appended| appended.message)
        }
        .await,
    )
}

/// Deletes one of the caller's own messages.
#[server(endpoint = "delete_message")]
pub async fn delete_message(message_id: String) -> Result<(), AppError> {
    ssr::with_status(
        async {
            let (state, user) = ssr::caller().await?;
            state
                .chat
                .delete(&user.id, &crate::protocol::MessageId(message_id))
                .await
                .map(|_| ())
        }
        .await,
    )
}
