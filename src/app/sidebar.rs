//! The conversation list (a navigation landmark): your channels and direct messages, unread
//! ones in bold with a badge for mentions and direct messages, kept live by the client; links
//! to browse channels and to start a direct message; the form that creates a channel; and
//! "Enable notifications". The document title carries the unread count.

use super::{notify, ChatClient};
use crate::api::{list_conversations, CreateChannel};
use crate::paths::conversation_path;
use crate::protocol::{ConversationKind, ConversationSummary, PresenceStatus};
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_router::hooks::use_location;

/// Your conversations, plus "Browse channels", "New message" and "create a channel".
#[component]
pub fn Sidebar() -> impl IntoView {
    let client = expect_context::<ChatClient>();
    // Loaded once with the page; the client's live list takes over from it.
    let loaded = OnceResource::new(list_conversations());
    let location = use_location();
    let me = use_context::<super::workspace::Me>();

    let summaries = move || {
        let live = client.sidebar.get();
        if live.is_empty() {
            // Until the client takes over (and on the server): the page's own list.
            loaded.get().and_then(Result::ok).unwrap_or_default()
        } else {
            live
        }
    };
    Effect::new(move |_| {
        if let Some(Ok(list)) = loaded.get() {
            if client.sidebar.with_untracked(Vec::is_empty) {
                client.sidebar.set(list);
            }
        }
    });
    // "(3) Flack": the unread conversations' count in the tab's title.
    Effect::new(move |_| {
        let unread: u32 = client.sidebar.with(|l| l.iter().map(|s| s.unread).sum());
        let title = if unread > 0 {
            format!("({unread}) Flack")
        } else {
            "Flack".to_string()
        };
        document().set_title(&title);
    });

    let section = move |direct: bool| {
        let me_id = me.and_then(|m| m.get()).map(|u| u.id);
        let mut list: Vec<ConversationSummary> = summaries()
            .into_iter()
            .filter(|s| (s.conversation.kind == ConversationKind::Direct) == direct)
            .collect();
        list.sort_by_key(|s| s.conversation.title(me_id.as_ref()).to_lowercase());
        list.into_iter()
            .map(|s| {
                let title = s.conversation.title(me_id.as_ref());
                let href = conversation_path(&s.conversation);
                let private = s.conversation.kind == ConversationKind::Private;
                let badge = if direct { s.unread } else { s.mentions };
                let unread = s.unread > 0;
                let other = s
                    .conversation
                    .people
                    .iter()
                    .find(|p| Some(&p.id) != me_id.as_ref())
                    .map(|p| p.id.clone());
                let dot = move || {
                    let other = other.clone()?;
                    let status = client.presence.with(|l| {
                        l.iter().rev().find(|(u, _)| u == &other).map(|(_, s)| *s)
                    });
                    let status = status.unwrap_or(PresenceStatus::Offline);
                    let label = match status {
                        PresenceStatus::Online => "online",
                        PresenceStatus::Away => "away",
                        PresenceStatus::Offline => "offline",
                    };
                    Some(view! { <span class="presence" role="img" data-status=label title=label aria-label=label></span> })
                };
                let label = match (badge, direct) {
                    (0, _) => String::new(),
                    (n, true) => format!("{n} unread"),
                    (n, false) => format!("{n} mentions"),
                };
                let current = {
                    let href = href.clone();
                    move || (location.pathname.get() == href).then_some("page")
                };
                view! {
                    <li class:unread=unread>
                        <a href=href aria-current=current>
                            {direct.then(dot)}
                            {(!direct).then_some(if private { "🔒" } else { "#" })}
                            {title.trim_start_matches('#').to_string()}
                            {(badge > 0).then(|| view! {
                                <span class="badge" role="img" aria-label=label.clone()>{badge.min(999)}</span>
                            })}
                        </a>
                    </li>
                }
            })
            .collect_view()
    };

    // On a phone the list folds behind a "Conversations" button: a `<details>` (a native
    // disclosure button, expanded or collapsed, that works without JavaScript) whose state
    // CSS applies to the rest of the sidebar; wider screens hide the button and show the
    // list. Opening a conversation closes it (`channel.rs`). All static markup, so the bundle
    // pays almost nothing for it.
    view! {
        <aside class="sidebar">
            <details class="conversations">
                <summary>"Conversations"</summary>
            </details>
            <nav aria-label="Your conversations">
                <Transition fallback=|| ()>
                    <h2>"Channels"</h2>
                    <p class="browse-link"><a href="/channels">"Browse channels"</a></p>
                    <ul class="channels">{move || section(false)}</ul>
                    <h2>"Direct messages"</h2>
                    <p class="browse-link"><a href="/people">"New message"</a></p>
                    <ul class="directs">{move || section(true)}</ul>
                </Transition>
            </nav>
            <CreateChannelForm/>
            <NotificationsButton/>
        </aside>
    }
}

/// Creates a channel (a plain form: the server checks the name and opens the new channel).
#[component]
fn CreateChannelForm() -> impl IntoView {
    view! {
        <form method="post" action=CreateChannel::url() class="create-channel">
            <div class="field">
                <label for="new-channel">"Channel name"</label>
                <input id="new-channel" name="name" placeholder="e.g. design" autocomplete="off"/>
                <label class="check">
                    <input type="checkbox" name="private" value="on"/>
                    "Private"
                </label>
                <button type="submit">"Create channel"</button>
            </div>
            <super::url_error::UrlError path=CreateChannel::PATH/>
        </form>
    }
}

/// Asks for permission to notify, only when clicked (never on load).
#[component]
fn NotificationsButton() -> impl IntoView {
    let (shown, set_shown) = signal(false);
    Effect::new(move |_| set_shown.set(notify::askable()));
    view! {
        <Show when=move || shown.get()>
            <button
                type="button"
                class="link enable-notifications"
                on:click=move |_| notify::ask(move |_| set_shown.set(false))
            >
                "Enable notifications"
            </button>
        </Show>
    }
}
