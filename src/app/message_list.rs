//! The messages of a conversation, oldest at the top: grouped by author and divided by day
//! (see `message_groups`), a "New" divider above the first unread one, following the newest
//! while the reader is there, with "Jump to latest" when they are not, and older pages loaded
//! as they scroll up.

use super::chat_state::{ConversationLog, Pending, PendingState};
use super::message::MessageItem;
use super::message_groups::places;
use super::workspace::Me;
use super::{time, ChatClient};
use crate::api::get_older;
use crate::paths::conversation_path;
use crate::protocol::MessageId;
use leptos::prelude::*;
use leptos::task::spawn_local;

/// How close to the bottom (in pixels) still counts as reading the newest messages.
const AT_BOTTOM_PX: i32 = 48;

/// The messages, oldest at the top. Stays at the newest while the reader is there (or has
/// just written something); scrolled away from it, "Jump to latest" leads back. Scrolling to
/// the top (or "Load older") fetches the page before, keeping the reader's place.
///
/// Groups and day dividers (`message_groups`) are rendered by the server as a class and a
/// `data-day` attribute (drawn by CSS); in the browser one effect sets them on the list's
/// elements after each change, in the reader's time zone. Doing it in the DOM rather than
/// through reactive attributes keeps the WebAssembly bundle within its budget.
#[component]
pub fn MessageList(log: RwSignal<ConversationLog>, label: String) -> impl IntoView {
    let client = expect_context::<ChatClient>();
    let me = use_context::<Me>();
    let read_seq = log.with_untracked(|l| l.read_seq);
    let me_id = me.and_then(|m| m.get_untracked()).map(|u| u.id);
    // The first message by someone else after what was read when the page opened.
    let first_unread = log.with_untracked(|l| {
        l.member
            .then(|| {
                l.messages
                    .iter()
                    .find(|m| m.seq > read_seq && Some(&m.author.id) != me_id.as_ref())
                    .map(|m| m.id.clone())
            })
            .flatten()
    });
    let conversation = log.with_untracked(|l| l.info.clone());
    // The scrolling wrapper is the live region; the `<ol>` inside stays a list (a `role` on
    // the `<ol>` itself would orphan every `<li>`).
    let list = NodeRef::<leptos::html::Div>::new();
    let loading = RwSignal::new(false);
    let to_bottom = move || {
        if let Some(list) = list.get_untracked() {
            list.set_scroll_top(list.scroll_height());
        }
    };

    // After each change, in the browser: set each message's group, day and time in the
    // reader's time zone (the server rendered them in UTC), then follow the newest message if
    // the reader is at the bottom or has just written one (not when older pages arrive).
    // Effects run only once the page has hydrated, so the DOM may change here. One effect
    // setting attributes, rather than reactive attributes and text on every message, keeps
    // the WebAssembly bundle within its budget.
    // What it keeps: the newest message and pending count it last showed (`None` until it
    // has shown any: a run before the list is in the page must not count as one).
    Effect::new(move |before: Option<Option<(Option<u64>, usize)>>| {
        let before = before.flatten();
        let l = log.read();
        let newest = (l.messages.last().map(|m| m.seq), l.pending.len());
        let Some(el) = list.get() else {
            return before;
        };
        let places = places(&l.messages, time::offset_minutes, time::now_ms());
        let mut shown = l.messages.iter().zip(places);
        let mut item = el
            .first_element_child()
            .and_then(|ol| ol.first_element_child());
        while let Some(li) = item {
            if li.has_attribute("data-id") {
                let Some((message, place)) = shown.next() else {
                    break;
                };
                // Only the group's mark: other classes (a mention of the reader) stay.
                let _ = li.class_list().toggle_with_force("cont", !place.head);
                let _ = match place.day {
                    Some(day) => li.set_attribute("data-day", &day),
                    None => li.remove_attribute("data-day"),
                };
                // Once per message: the server's UTC label becomes the local time.
                if let Ok(Some(at)) = li.query_selector("time.sent:not([data-local])") {
                    at.set_text_content(Some(&time::local_label(&message.sent_at)));
                    let _ = at.set_attribute("title", &time::local_full(&message.sent_at));
                    let _ = at.set_attribute("data-local", "");
                }
            }
            item = li.next_element_sibling();
        }
        drop(l);
        // The button is hidden exactly while the reader is at the bottom.
        let at_bottom = el
            .next_element_sibling()
            .is_none_or(|jump| jump.has_attribute("hidden"));
        if before != Some(newest) && (before.is_none_or(|(_, p)| newest.1 > p) || at_bottom) {
            to_bottom();
        }
        Some(newest)
    });
    // On the server, the same, rendered into each message.
    #[cfg(feature = "ssr")]
    let place_of = {
        let by_id = log.with_untracked(|l| {
            let places = places(&l.messages, |_| 0, time::now_ms());
            l.messages
                .iter()
                .map(|m| m.id.clone())
                .zip(places)
                .collect::<std::collections::HashMap<_, _>>()
        });
        move |id: &MessageId| by_id.get(id).cloned()
    };
    #[cfg(not(feature = "ssr"))]
    let place_of = |_: &MessageId| None;

    let load_older = move || {
        let Some(before) = log.with_untracked(|l| l.has_older.then(|| l.oldest_seq()).flatten())
        else {
            return;
        };
        if loading.get_untracked() {
            return;
        }
        loading.set(true);
        let conversation = log.with_untracked(|l| l.id());
        let height_before = list.get_untracked().map(|el| el.scroll_height());
        spawn_local(async move {
            match get_older(conversation.0, before).await {
                Ok(page) => {
                    // The server says whether more exist before this page.
                    log.update(|l| l.prepend_older(page.messages, page.has_older));
                    // Keep the reader looking at the same message; only then may a scroll to
                    // the top ask for the next page (before it, the list is still at the top
                    // and a scroll event would load a second page at once).
                    request_animation_frame(move || {
                        if let (Some(el), Some(before)) = (list.get_untracked(), height_before) {
                            el.set_scroll_top(el.scroll_top() + el.scroll_height() - before);
                        }
                        loading.set(false);
                    });
                }
                Err(e) => {
                    client.last_error.set(Some(e.to_string()));
                    loading.set(false);
                }
            }
        });
    };
    let on_scroll = move |_| {
        let Some(el) = list.get_untracked() else {
            return;
        };
        if let Some(jump) = el.next_element_sibling() {
            let at_bottom =
                el.scroll_height() - el.scroll_top() - el.client_height() <= AT_BOTTOM_PX;
            let _ = jump.toggle_attribute_with_force("hidden", at_bottom);
        }
        if el.scroll_top() <= 0 {
            load_older();
        }
    };
    let older_link = move || {
        log.with(|l| {
            l.has_older
                .then(|| l.oldest_seq())
                .flatten()
                .map(|seq| format!("{}?before={seq}", conversation_path(&l.info)))
        })
    };

    view! {
        <div
            class="messages"
            role="log"
            aria-label=label
            tabindex="0"
            node_ref=list
            on:scroll=on_scroll
        >
            <ol class="message-list">
            {move || {
                older_link()
                    .map(|href| {
                        view! {
                            <li class="older">
                                <a
                                    href=href
                                    on:click=move |ev| {
                                        ev.prevent_default();
                                        load_older();
                                    }
                                >
                                    {move || {
                                        if loading.get() { "Loading…" } else { "Load older messages" }
                                    }}
                                </a>
                            </li>
                        }
                    })
            }}
            <For
                each=move || log.with(|l| l.messages.clone())
                // A change (edit, reaction, reply) redraws the message.
                key=|m| (m.id.clone(), m.change)
                children=move |message| {
                    let place = place_of(&message.id);
                    let unread = first_unread.as_ref() == Some(&message.id);
                    let conversation = conversation.clone();
                    view! {
                        {unread.then(|| view! {
                            <li class="new-divider" role="separator" aria-label="New messages">"New"</li>
                        })}
                        <MessageItem message conversation place me in_thread=false/>
                    }
                    .into_any()
                }
            />
            <For
                each=move || log.with(|l| l.pending.clone())
                // Redrawn when its state changes; a string of the state (`Debug`) would pull
                // the escaping machinery of `{:?}` into the bundle.
                key=|p| {
                    let state = match &p.state {
                        PendingState::Sending => 0,
                        PendingState::Sent => 1,
                        PendingState::Failed(_) => 2,
                    };
                    (p.client_id.clone(), state)
                }
                children=move |pending| view! { <PendingItem pending/> }.into_any()
            />
            </ol>
        </div>
        <button type="button" class="jump" hidden on:click=move |_| to_bottom()>
            "Jump to latest"
        </button>
    }
}

/// One of the user's own messages on its way: sending, sent, or failed with a retry.
#[component]
fn PendingItem(pending: Pending) -> impl IntoView {
    let client = expect_context::<ChatClient>();
    let me = use_context::<Me>().and_then(|me| me.get_untracked());
    let (state, note) = match &pending.state {
        PendingState::Sending => ("sending", "Sending…".to_string()),
        PendingState::Sent => ("sent", "Sent".to_string()),
        PendingState::Failed(reason) => ("failed", format!("Not sent: {reason}")),
    };
    let failed = matches!(pending.state, PendingState::Failed(_));
    let client_id = pending.client_id.clone();
    view! {
        <li class="pending" data-state=state data-client-id=pending.client_id.clone()>
            <div class="meta">
                <span class="author">{me.as_ref().and_then(|u| u.name.clone())}</span>
                <span class="tag">{me.as_ref().map(|u| u.id.tag())}</span>
                <span class="delivery" role=failed.then_some("alert")>{note}</span>
            </div>
            <div class="body">{pending.body}</div>
            {failed
                .then(|| {
                    view! {
                        <button type="button" class="retry" on:click=move |_| client.retry(client_id.clone())>
                            "Retry"
                        </button>
                    }
                })}
        </li>
    }
}
