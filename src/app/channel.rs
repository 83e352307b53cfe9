//! A channel's page: its recent messages (live), older ones on demand, and the composer.
//! `/c/:name?before=SEQ` shows an older page instead (how "Load older" works without
//! JavaScript).

use super::chat_state::{ChannelLog, Pending, PendingState};
use super::workspace::Me;
use super::{channel_path, prefs, time, ChatClient, Hydrated};
use crate::api::{get_channel, get_older, DeleteMessage, PostMessage};
use crate::error::AppError;
use crate::protocol::{ChannelHistory, Message, MessageId, HISTORY_WINDOW};
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_params_map, use_query_map};

/// `/c/:name`: loads the channel (server-rendered), then follows it live.
#[component]
pub fn ChannelPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let page = move || {
        let name = params.read().get("name").unwrap_or_default();
        let before = query
            .read()
            .get("before")
            .and_then(|b| b.parse::<u64>().ok());
        (name, before)
    };
    let history = Resource::new(page, |(name, before)| async move {
        match before {
            Some(before) => get_older(name, before).await.map(|h| (h, true)),
            None => get_channel(name).await.map(|h| (h, false)),
        }
    });
    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match history.await {
                    Ok((history, false)) => view! { <ChannelView history/> }.into_any(),
                    Ok((history, true)) => view! { <ArchiveView history/> }.into_any(),
                    Err(error) => view! { <MissingChannel error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn MissingChannel(error: AppError) -> impl IntoView {
    if matches!(error, AppError::NoSuchChannel { .. }) {
        Effect::new(|_| prefs::forget_last_channel());
    }
    view! {
        <section class="empty">
            <p role="alert" class="error">{error.to_string()}</p>
        </section>
    }
}

/// The live channel: follows new messages, sends, loads older pages as the user scrolls up.
#[component]
fn ChannelView(history: ChannelHistory) -> impl IntoView {
    let client = expect_context::<ChatClient>();
    let name = history.channel.name.clone();
    let log = RwSignal::new(ChannelLog::new(history));
    {
        let name = name.clone();
        Effect::new(move |_| {
            prefs::set_last_channel(&name);
            client.open_channel(log);
        });
    }
    on_cleanup(move || client.close_channel(log));

    view! {
        <section class="channel">
            <h1>"#" {name.clone()}</h1>
            <MessageList log label=format!("Messages in #{name}")/>
            <Composer channel=name/>
        </section>
    }
}

/// An older page of a channel (no live updates), with links to page further.
#[component]
fn ArchiveView(history: ChannelHistory) -> impl IntoView {
    let name = history.channel.name.clone();
    let log = RwSignal::new(ChannelLog::new(history));
    view! {
        <section class="channel">
            <h1>"#" {name.clone()}</h1>
            <MessageList log label=format!("Older messages in #{name}")/>
            <p class="archive-note">
                <a href=channel_path(&name)>"Back to the newest messages"</a>
            </p>
        </section>
    }
}

/// The messages, oldest at the top. Stays at the newest while the reader is there; scrolling
/// to the top (or "Load older") fetches the page before, keeping the reader's place.
#[component]
fn MessageList(log: RwSignal<ChannelLog>, label: String) -> impl IntoView {
    let client = expect_context::<ChatClient>();
    let me = use_context::<Me>();
    let hydrated = use_context::<Hydrated>().map(|h| h.0);
    // The scrolling wrapper is the live region; the `<ol>` inside stays a list (a `role` on
    // the `<ol>` itself would orphan every `<li>`).
    let list = NodeRef::<leptos::html::Div>::new();
    let loading = RwSignal::new(false);

    // Follow the newest message (and one's own pending ones), not older pages.
    let newest =
        Memo::new(move |_| log.with(|l| (l.messages.last().map(|m| m.seq), l.pending.len())));
    Effect::new(move |_| {
        newest.track();
        if let Some(list) = list.get() {
            list.set_scroll_top(list.scroll_height());
        }
    });

    let load_older = move || {
        let Some(before) = log.with_untracked(|l| l.has_older.then(|| l.oldest_seq()).flatten())
        else {
            return;
        };
        if loading.get_untracked() {
            return;
        }
        loading.set(true);
        let channel = log.with_untracked(|l| l.name().to_string());
        let height_before = list.get_untracked().map(|el| el.scroll_height());
        spawn_local(async move {
            match get_older(channel, before).await {
                Ok(page) => {
                    log.update(|l| l.prepend_older(page.messages, HISTORY_WINDOW));
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
        if list.get_untracked().is_some_and(|el| el.scroll_top() <= 0) {
            load_older();
        }
    };
    let older_link = move || {
        log.with(|l| {
            l.has_older
                .then(|| l.oldest_seq())
                .flatten()
                .map(|seq| format!("{}?before={seq}", channel_path(l.name())))
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
                key=|m| m.id.clone()
                children=move |message| view! { <MessageItem message log me hydrated/> }.into_any()
            />
            <For
                each=move || log.with(|l| l.pending.clone())
                key=|p| (p.client_id.clone(), format!("{:?}", p.state))
                children=move |pending| view! { <PendingItem pending/> }.into_any()
            />
            </ol>
        </div>
    }
}

#[component]
fn MessageItem(
    message: Message,
    log: RwSignal<ChannelLog>,
    /// Looked up once by the list, not per message: context lookups walk the owner tree.
    me: Option<Me>,
    hydrated: Option<ReadSignal<bool>>,
) -> impl IntoView {
    let mine = me.is_some_and(|me| me.is(&message.author.id));
    let Message {
        id,
        seq,
        author,
        body,
        sent_at,
        ..
    } = message;
    let dom_id = id.0.clone();
    view! {
        <li class="message" data-id=dom_id data-seq=seq>
            <div class="meta">
                <span class="author">{author.name}</span>
                <span class="tag" title="User tag: tells people of the same name apart">
                    {author.id.tag()}
                </span>
                <Timestamp at=sent_at hydrated/>
            </div>
            <div class="body">{body}</div>
            {mine.then(|| view! { <DeleteButton id log/> })}
        </li>
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

/// A message's time: UTC from the server, the reader's local time once hydrated.
#[component]
fn Timestamp(at: DateTime<Utc>, hydrated: Option<ReadSignal<bool>>) -> impl IntoView {
    let local = move || hydrated.is_some_and(|h| h.get());
    let iso = time::iso(&at);
    let label = move || {
        if local() {
            time::local_label(&at)
        } else {
            time::utc_label(&at)
        }
    };
    let title = {
        let iso = iso.clone();
        move || {
            if local() {
                time::local_full(&at)
            } else {
                iso.clone()
            }
        }
    };
    view! {
        <time datetime=iso title=title>
            {label}
        </time>
    }
}

/// Deletes one's own message (a form post without JavaScript).
#[component]
fn DeleteButton(id: MessageId, log: RwSignal<ChannelLog>) -> impl IntoView {
    let delete = ServerAction::<DeleteMessage>::new();
    let client = expect_context::<ChatClient>();
    {
        let id = id.clone();
        Effect::new(move |_| match delete.value().get() {
            // The socket will say so too; removing now keeps the UI honest if it is down.
            Some(Ok(())) => log.update(|l| l.apply_deleted(&id)),
            Some(Err(e)) => client.last_error.set(Some(e.to_string())),
            None => {}
        });
    }
    view! {
        <ActionForm action=delete>
            <input type="hidden" name="message_id" value=id.0/>
            <button type="submit" class="delete" aria-label="Delete message" title="Delete message">
                "×"
            </button>
        </ActionForm>
    }
}

/// Writes messages. With JavaScript a message shows at once and goes over the socket (or
/// HTTP); without, the form posts to the server function. Enter sends; Shift+Enter starts a
/// new line.
#[component]
fn Composer(channel: String) -> impl IntoView {
    let client = expect_context::<ChatClient>();
    let textarea = NodeRef::<leptos::html::Textarea>::new();
    let post = ServerAction::<PostMessage>::new();

    // Focus lands in the composer whenever a channel opens: on the next frame, once the
    // (possibly transitioning) view is in the document.
    Effect::new(move |_| {
        if let Some(el) = textarea.get() {
            request_animation_frame(move || {
                let _ = el.focus();
            });
        }
    });

    let send = {
        let channel = channel.clone();
        move || {
            let Some(el) = textarea.get_untracked() else {
                return;
            };
            let body = el.value();
            if body.trim().is_empty() {
                return;
            }
            client.last_error.set(None);
            client.send_message(channel.clone(), body);
            el.set_value("");
        }
    };
    let on_submit = {
        let send = send.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            send();
        }
    };
    let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
            ev.prevent_default();
            send();
        }
    };
    // Without JavaScript the form posts to the server function; its error comes back in the URL.
    let error = move || {
        client.last_error.get().or_else(|| {
            post.value()
                .get()
                .and_then(Result::err)
                .map(|e| e.to_string())
        })
    };

    view! {
        <form class="composer" method="post" action=PostMessage::url() on:submit=on_submit>
            <input type="hidden" name="channel" value=channel.clone()/>
            <label for="composer" class="visually-hidden">"Message"</label>
            <textarea
                id="composer"
                name="body"
                rows="2"
                placeholder=format!("Message #{channel}")
                node_ref=textarea
                on:keydown=on_keydown
            ></textarea>
            <button type="submit">"Send"</button>
            {move || error().map(|e| view! { <p role="alert" class="error">{e}</p> })}
        </form>
    }
}
