//! The URLs of Flack's pages, shared by the server (redirects after form posts) and the
//! client (links): one place that knows how a conversation is addressed in a URL.

use crate::protocol::{ConversationId, ConversationInfo, ConversationKind, MessageId};

/// A channel's page, by name.
pub fn channel_path(name: &str) -> String {
    format!("/c/{name}")
}

/// A direct conversation's page, by id.
pub fn direct_path(id: ConversationId) -> String {
    format!("/d/{id}")
}

/// The page of a channel or direct conversation (a thread's is [`thread_path`]).
pub fn conversation_path(info: &ConversationInfo) -> String {
    match (&info.name, info.kind) {
        (Some(name), _) => channel_path(name),
        (None, ConversationKind::Direct) => direct_path(info.id),
        (None, _) => format!("/d/{}", info.id),
    }
}

/// The thread of a message, opened beside its conversation's page.
pub fn thread_path(conversation: &ConversationInfo, parent: &MessageId) -> String {
    format!("{}/t/{}", conversation_path(conversation), parent.0)
}

/// One parameter of a URL's query string (`?a=1&b=2`), decoded.
#[cfg(feature = "ssr")]
pub fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
