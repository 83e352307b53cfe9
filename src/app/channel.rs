//! A channel's page: its recent messages (live), and the composer.

use super::chat_state::ChannelLog;
use super::workspace::Me;
use super::{prefs, time, ChatClient, Hydrated};
use crate::api::{get_channel, post_message, DeleteMessage, PostMessage};
use crate::error::AppError;
use crate::protocol::{ChannelHistory, ClientEvent, Message, MessageId};
use chrono::{DateTime, Utc};
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos::task::spawn_local;
use leptos_router::hooks::use_params_map;

/// `/c/:name`: loads the channel (server-rendered), then follows it live.
#[component]
pub fn ChannelPage() -> impl IntoView {
    let params = use_params_map();
    let name = move || params.read().get("name").unwrap_or_default();
    let history = Resource::new(name, get_channel);
    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match history.await {
                    Ok(history) => view! { <ChannelView history/> }.into_any(),
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

/// The messages, oldest at the top, kept scrolled to the newest.
#[component]
fn MessageList(log: RwSignal<ChannelLog>, label: String) -> impl IntoView {
    let list = NodeRef::<leptos::html::Ol>::new();
    Effect::new(move |_| {
        log.track();
        if let Some(list) = list.get() {
            list.set_scroll_top(list.scroll_height());
        }
    });
    view! {
        <ol class="messages" role="log" aria-label=label node_ref=list>
            <For
                each=move || log.with(|l| l.messages.clone())
                key=|m| m.id.clone()
                children=move |message| view! { <MessageItem message log/> }.into_any()
            />
        </ol>
    }
}

#[component]
fn MessageItem(message: Message, log: RwSignal<ChannelLog>) -> impl IntoView {
    let mine = use_context::<Me>().is_some_and(|me| me.0.id == message.author.id);
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
                <Timestamp at=sent_at/>
            </div>
            <div class="body">{body}</div>
            {mine.then(|| view! { <DeleteButton id log/> })}
        </li>
    }
}

/// A message's time: UTC from the server, the reader's local time once hydrated.
#[component]
fn Timestamp(at: DateTime<Utc>) -> impl IntoView {
    let hydrated = use_context::<Hydrated>().map(|h| h.0);
    let local = move || hydrated.is_some_and(|h| h.get());
    let label = move || {
        if local() {
            time::local_label(&at)
        } else {
            time::utc_label(&at)
        }
    };
    let title = move || {
        if local() {
            time::local_full(&at)
        } else {
            time::iso(&at)
        }
    };
    view! {
        <time datetime=time::iso(&at) title=title>
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

/// Writes and sends messages: over the socket when it is open, by HTTP otherwise, and as a
/// plain form post without JavaScript. Enter sends; Shift+Enter starts a new line.
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
            let event = ClientEvent::Send {
                channel: channel.clone(),
                body: body.clone(),
                client_id: None,
            };
            if !client.send(&event) {
                let channel = channel.clone();
                spawn_local(async move {
                    if let Err(e) = post_message(channel, body).await {
                        client.last_error.set(Some(e.to_string()));
                    }
                });
            }
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
