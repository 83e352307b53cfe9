//! A channel's page: its recent messages (live), older ones on demand, and the composer.
//! `/c/:name?before=SEQ` shows an older page instead (how "Load older" works without
//! JavaScript).

use super::chat_state::ChannelLog;
use super::message_list::MessageList;
use super::{channel_path, prefs, ChatClient};
use crate::api::{get_channel, get_older, PostMessage};
use crate::error::AppError;
use crate::protocol::ChannelHistory;
use leptos::either::EitherOf3;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
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
                    Ok((history, false)) => EitherOf3::A(view! { <ChannelView history/> }),
                    Ok((history, true)) => EitherOf3::B(view! { <ArchiveView history/> }),
                    Err(error) => EitherOf3::C(view! { <MissingChannel error/> }),
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
            // A channel picked from the phone's "Conversations" menu: fold the menu away.
            if let Ok(Some(menu)) = document().query_selector(".conversations[open]") {
                let _ = menu.remove_attribute("open");
            }
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
