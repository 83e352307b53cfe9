//! A conversation's page (a channel at `/c/:name`, a direct message at `/d/:id`): its recent
//! messages (live), older ones on demand, the composer, the members, and a message's thread
//! beside it (`…/t/:message`). `?before=SEQ` shows an older page instead (how "Load older"
//! works without JavaScript), `?edit=ID` an edit form for one's own message.

use super::chat_state::ConversationLog;
use super::message::{Editing, MessageItem, Picking};
use super::message_list::MessageList;
use super::workspace::Me;
use super::{prefs, ChatClient};
use crate::api::{
    get_channel, get_conversation, get_members, get_older, get_thread, Membership, PostMessage,
    ReplyMessage,
};
use crate::error::AppError;
use crate::paths::{conversation_path, thread_path};
use crate::protocol::{
    mention_candidates, Author, ClientEvent, ConversationHistory, ConversationId, ConversationInfo,
    ConversationKind, MessageId, ThreadView,
};
use leptos::either::EitherOf3;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_params_map, use_query_map};

/// What a page shows: the live conversation (or an older page of it: `true`), and the thread
/// open beside it, loaded together so the server sends the page whole.
type Loaded = Result<(ConversationHistory, bool, Option<ThreadView>), AppError>;

async fn load(
    history: Result<ConversationHistory, AppError>,
    before: Option<u64>,
    thread: Option<String>,
) -> Loaded {
    let history = history?;
    if let Some(before) = before {
        let older = get_older(history.conversation.id.0, before).await?;
        return Ok((older, true, None));
    }
    let thread = match thread {
        Some(parent) => Some(get_thread(parent).await?),
        None => None,
    };
    Ok((history, false, thread))
}

/// `/c/:name`: loads the channel (server-rendered), then follows it live.
#[component]
pub fn ChannelPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let page = move || {
        let name = params.read().get("name").unwrap_or_default();
        let thread = params.read().get("message");
        let before = query
            .read()
            .get("before")
            .and_then(|b| b.parse::<u64>().ok());
        (name, before, thread)
    };
    let history = Resource::new(page, |(name, before, thread)| async move {
        load(get_channel(name).await, before, thread).await
    });
    view! { <Page history/> }
}

/// `/d/:id`: a direct conversation, by id.
#[component]
pub fn DirectPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let page = move || {
        let id = params.read().get("id").and_then(|i| i.parse::<u64>().ok());
        let thread = params.read().get("message");
        let before = query
            .read()
            .get("before")
            .and_then(|b| b.parse::<u64>().ok());
        (id, before, thread)
    };
    let history = Resource::new(page, |(id, before, thread)| async move {
        let Some(id) = id else {
            return Err(AppError::NoSuchConversation);
        };
        load(get_conversation(id).await, before, thread).await
    });
    view! { <Page history/> }
}

#[component]
fn Page(history: Resource<Loaded>) -> impl IntoView {
    // For the conversation and the thread beside it alike.
    provide_context(Editing(RwSignal::new(None)));
    provide_context(Picking(RwSignal::new(None)));
    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match history.await {
                    Ok((history, false, thread)) => EitherOf3::A(view! {
                        <div class="conversation-and-thread">
                            <ConversationView history=history.clone()/>
                            {thread.map(|view_| view! {
                                <ThreadPanel initial=view_ conversation=history.conversation.clone()/>
                            })}
                        </div>
                    }),
                    Ok((history, true, _)) => EitherOf3::B(view! { <ArchiveView history/> }),
                    Err(error) => EitherOf3::C(view! { <Missing error/> }),
                }
            })}
        </Transition>
    }
}

#[component]
fn Missing(error: AppError) -> impl IntoView {
    if matches!(
        error,
        AppError::NoSuchChannel { .. } | AppError::NoSuchConversation
    ) {
        Effect::new(|_| prefs::forget_last_conversation());
    }
    view! {
        <section class="empty">
            <p role="alert" class="error">{error.to_string()}</p>
        </section>
    }
}

/// The live conversation: follows new messages, sends, loads older pages as the user
/// scrolls up, and shows who is typing.
#[component]
fn ConversationView(history: ConversationHistory) -> impl IntoView {
    let client = expect_context::<ChatClient>();
    let me = use_context::<Me>();
    let info = history.conversation.clone();
    let member = history.member;
    let title = info.title(me.and_then(|m| m.get_untracked()).map(|u| u.id).as_ref());
    let log = RwSignal::new(ConversationLog::new(history));
    {
        let path = conversation_path(&info);
        Effect::new(move |_| {
            prefs::set_last_conversation(&path);
            client.open_conversation(log);
            // A conversation picked from the phone's "Conversations" menu: fold the menu away.
            if let Ok(Some(menu)) = document().query_selector(".conversations[open]") {
                let _ = menu.remove_attribute("open");
            }
        });
    }
    on_cleanup(move || client.close_conversation(log));
    let id = info.id;
    let typing = move || {
        let names: Vec<String> = client.typing.with(|list| {
            list.iter()
                .filter(|(c, _, _)| *c == id)
                .map(|(_, a, _)| a.name.clone())
                .collect()
        });
        match names.len() {
            0 => String::new(),
            1 => format!("{} is typing…", names[0]),
            2 => format!("{} and {} are typing…", names[0], names[1]),
            _ => "Several people are typing…".to_string(),
        }
    };
    view! {
        <section class="channel" data-conversation=id.0>
            <ConversationHeader info=info.clone() title=title.clone() member/>
            <MessageList log label=format!("Messages in {title}")/>
            <p class="typing" aria-live="polite">{typing}</p>
            <Composer conversation=id placeholder=format!("Message {title}") log/>
        </section>
    }
}

/// The title, and what one can do with the conversation: see its members, join, leave,
/// invite.
#[component]
fn ConversationHeader(info: ConversationInfo, title: String, member: bool) -> impl IntoView {
    let client = expect_context::<ChatClient>();
    let (open, set_open) = signal(false);
    let members = RwSignal::new(Vec::<crate::protocol::Member>::new());
    let id = info.id;
    let kind = info.kind;
    let load_members = move || {
        spawn_local(async move {
            match get_members(id.0).await {
                Ok(list) => members.set(list),
                Err(e) => client.last_error.set(Some(e.to_string())),
            }
        });
    };
    // A membership change heard over the socket refreshes an open panel.
    Effect::new(move |_| {
        if client
            .members
            .with(|m| m.as_ref().is_some_and(|(c, _)| *c == id))
            && open.get_untracked()
        {
            load_members();
        }
    });
    let channel = kind.is_channel();
    view! {
        <header class="conversation-header">
            <h1>{title}</h1>
            <button
                type="button"
                class="link members-toggle"
                aria-expanded=move || open.get().to_string()
                on:click=move |_| {
                    let now = !open.get_untracked();
                    set_open.set(now);
                    if now {
                        load_members();
                    }
                }
            >
                "Members"
            </button>
            {(channel && !member && kind == ConversationKind::Public).then(|| view! {
                <form method="post" action=Membership::url() class="inline">
                    <input type="hidden" name="conversation" value=id.0/>
                    <button type="submit">"Join channel"</button>
                </form>
            })}
            {(channel && member).then(|| view! {
                <a class="link" href=format!("/people?invite={}", id.0)>"Add people"</a>
                <form method="post" action=Membership::url() class="inline" on:submit=|_| prefs::forget_last_conversation()>
                    <input type="hidden" name="conversation" value=id.0/>
                    <input type="hidden" name="leave" value="yes"/>
                    <button type="submit" class="link">"Leave"</button>
                </form>
            })}
            <super::url_error::UrlError path=Membership::PATH/>
            <Show when=move || open.get()>
                <ul class="members" aria-label="Members">
                    {move || members.get().into_iter().map(|m| {
                        let status = if m.online { "online" } else { "offline" };
                        view! {
                            <li>
                                <span class="presence" role="img" data-status=status aria-label=status title=status></span>
                                <a href=format!("/people?q={}", m.user.name)>{m.user.name.clone()}</a>
                                <span class="tag">{m.user.id.tag()}</span>
                            </li>
                        }
                    }).collect_view()}
                </ul>
            </Show>
        </header>
    }
}

/// An older page of a conversation (no live updates), with links to page further.
#[component]
fn ArchiveView(history: ConversationHistory) -> impl IntoView {
    let me = use_context::<Me>();
    let title = history
        .conversation
        .title(me.and_then(|m| m.get_untracked()).map(|u| u.id).as_ref());
    let path = conversation_path(&history.conversation);
    let log = RwSignal::new(ConversationLog::new(history));
    view! {
        <section class="channel">
            <h1>{title.clone()}</h1>
            <MessageList log label=format!("Older messages in {title}")/>
            <p class="archive-note">
                <a href=path>"Back to the newest messages"</a>
            </p>
        </section>
    }
}

/// A message's thread beside its conversation: the parent, the replies, and a composer
/// (a plain form without JavaScript). In the browser it is loaded again whenever the
/// parent's reply count changes.
#[component]
fn ThreadPanel(initial: ThreadView, conversation: ConversationInfo) -> impl IntoView {
    let client = expect_context::<ChatClient>();
    let me = use_context::<Me>();
    let parent = initial.parent.id.clone();
    let shown = RwSignal::new(initial);
    {
        let parent = parent.clone();
        Effect::new(move |_| client.thread_parent.set(Some((parent.clone(), 0))));
    }
    on_cleanup(move || client.thread_parent.set(None));
    // The parent changed (a reply was counted): read the thread again.
    {
        let parent = parent.clone();
        Effect::new(move |seen: Option<u64>| {
            let bump = client
                .thread_parent
                .with(|p| p.as_ref().map_or(0, |(_, n)| *n));
            if seen.is_some_and(|seen| seen != bump) {
                let parent = parent.clone();
                spawn_local(async move {
                    match get_thread(parent.0).await {
                        Ok(view_) => shown.set(view_),
                        Err(e) => client.last_error.set(Some(e.to_string())),
                    }
                });
            }
            bump
        });
    }
    let close = conversation_path(&conversation);
    let here = thread_path(&conversation, &parent);
    let info = conversation.clone();
    let body = move || {
        let view_ = shown.get();
        let replies = view_.thread.map(|t| t.messages).unwrap_or_default();
        let info = info.clone();
        view! {
            <ol class="message-list thread-parent">
                <MessageItem message=view_.parent conversation=info.clone() place=None me in_thread=true/>
            </ol>
            <p class="replies-count">{format!("{} replies", replies.len())}</p>
            <ol class="message-list replies" aria-label="Replies">
                {replies.into_iter().map(|m| view! {
                    <MessageItem message=m conversation=info.clone() place=None me in_thread=true/>
                }).collect_view()}
            </ol>
        }
    };
    view! {
        <aside class="thread" aria-label="Thread">
            <header class="thread-header">
                <h2>"Thread"</h2>
                <a href=close class="link">"Close thread"</a>
            </header>
            {body}
            <ReplyComposer parent=parent.clone() back=here/>
        </aside>
    }
}

/// Replies in a thread: over the socket with JavaScript, a form post without.
#[component]
fn ReplyComposer(parent: MessageId, back: String) -> impl IntoView {
    let client = expect_context::<ChatClient>();
    let textarea = NodeRef::<leptos::html::Textarea>::new();
    let also = NodeRef::<leptos::html::Input>::new();
    let send = {
        let parent = parent.clone();
        move || {
            let Some(el) = textarea.get_untracked() else {
                return;
            };
            let body = el.value();
            if body.trim().is_empty() {
                return;
            }
            let also_to_channel = also.get_untracked().is_some_and(|a| a.checked());
            client.act(ClientEvent::Reply {
                message_id: parent.clone(),
                body,
                client_id: Some(uuid::Uuid::new_v4().simple().to_string()),
                also_to_channel,
            });
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
    let _ = back;
    view! {
        <form class="composer reply-composer" method="post" action=ReplyMessage::url() on:submit=on_submit>
            <input type="hidden" name="message_id" value=parent.0.clone()/>
            <label for="reply" class="visually-hidden">"Reply"</label>
            <textarea id="reply" name="body" rows="2" placeholder="Reply…" node_ref=textarea on:keydown=on_keydown></textarea>
            <label class="check">
                <input type="checkbox" name="also_to_channel" value="on" node_ref=also/>
                "Also send to the conversation"
            </label>
            <button type="submit">"Reply"</button>
            <super::url_error::UrlError path=ReplyMessage::PATH/>
        </form>
    }
}

/// Writes messages. With JavaScript a message shows at once and goes over the socket (or
/// HTTP); without, the form posts to the server function. Enter sends; Shift+Enter starts a
/// new line; Up in an empty composer edits one's last message; `@` suggests members.
#[component]
fn Composer(
    conversation: ConversationId,
    placeholder: String,
    log: RwSignal<ConversationLog>,
) -> impl IntoView {
    let client = expect_context::<ChatClient>();
    let me = use_context::<Me>();
    let editing = expect_context::<Editing>();
    let textarea = NodeRef::<leptos::html::Textarea>::new();
    let typed_at = StoredValue::new(0.0f64);
    let members = RwSignal::new(None::<Vec<Author>>);
    let suggestions = RwSignal::new(Vec::<Author>::new());

    // Focus lands in the composer whenever a conversation opens.
    Effect::new(move |_| {
        if let Some(el) = textarea.get() {
            request_animation_frame(move || {
                let _ = el.focus();
            });
        }
    });

    let send = move || {
        let Some(el) = textarea.get_untracked() else {
            return;
        };
        let body = el.value();
        if body.trim().is_empty() {
            return;
        }
        client.last_error.set(None);
        client.send_message(conversation, body);
        el.set_value("");
        suggestions.set(Vec::new());
    };
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        send();
    };
    // The word being typed after an `@`, if the caret is in one.
    let mention_prefix = move || -> Option<String> {
        let el = textarea.get_untracked()?;
        let value = el.value();
        let caret = el
            .selection_start()
            .ok()
            .flatten()
            .unwrap_or(value.len() as u32) as usize;
        let before = value.get(..caret.min(value.len()))?;
        let at = before.rfind('@')?;
        let typed = &before[at + 1..];
        (mention_candidates(&before[at..]).next().is_some() || typed.is_empty())
            .then(|| typed.to_string())
            .filter(|t| !t.contains('\n') && t.chars().count() <= 32)
    };
    let suggest = move || {
        let Some(prefix) = mention_prefix() else {
            suggestions.set(Vec::new());
            return;
        };
        let matching = |list: Vec<Author>, prefix: &str| -> Vec<Author> {
            let prefix = prefix.to_lowercase();
            list.into_iter()
                .filter(|a| a.name.to_lowercase().starts_with(&prefix))
                .take(6)
                .collect()
        };
        let Some(list) = members.get_untracked() else {
            // The first `@`: fetch the members once, then suggest for what is typed by then.
            spawn_local(async move {
                if let Ok(list) = get_members(conversation.0).await {
                    let list: Vec<Author> = list.into_iter().map(|m| m.user).collect();
                    members.set(Some(list.clone()));
                    if let Some(prefix) = mention_prefix() {
                        suggestions.set(matching(list, &prefix));
                    }
                }
            });
            return;
        };
        suggestions.set(matching(list, &prefix));
    };
    let pick = move |name: String| {
        let Some(el) = textarea.get_untracked() else {
            return;
        };
        let value = el.value();
        let caret = el
            .selection_start()
            .ok()
            .flatten()
            .unwrap_or(value.len() as u32) as usize;
        let caret = caret.min(value.len());
        if let Some(at) = value[..caret].rfind('@') {
            let text = format!("{}@{name} {}", &value[..at], &value[caret..]);
            el.set_value(&text);
        }
        suggestions.set(Vec::new());
        let _ = el.focus();
    };
    let on_input = move |_| {
        let now = super::notify::now_ms();
        if now - typed_at.get_value() > 3000.0 {
            typed_at.set_value(now);
            client.typing_in(conversation);
        }
        suggest();
    };
    let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
        let key = ev.key();
        if (key == "Tab" || key == "Enter") && !suggestions.with_untracked(Vec::is_empty) {
            ev.prevent_default();
            if let Some(first) = suggestions.get_untracked().first() {
                pick(first.name.clone());
            }
            return;
        }
        if key == "Escape" {
            suggestions.set(Vec::new());
            return;
        }
        if key == "Enter" && !ev.shift_key() && !ev.is_composing() {
            ev.prevent_default();
            send();
            return;
        }
        if key == "ArrowUp"
            && textarea
                .get_untracked()
                .is_some_and(|el| el.value().is_empty())
        {
            let mine = me
                .and_then(|m| m.get_untracked())
                .and_then(|u| log.with_untracked(|l| l.last_by(&u.id).map(|m| m.id.clone())));
            if let Some(id) = mine {
                ev.prevent_default();
                editing.0.set(Some(id));
            }
        }
    };
    let error = move || client.last_error.get();

    view! {
        <form class="composer" method="post" action=PostMessage::url() on:submit=on_submit>
            <input type="hidden" name="conversation" value=conversation.0/>
            <label for="composer" class="visually-hidden">"Message"</label>
            <textarea
                id="composer"
                name="body"
                rows="2"
                placeholder=placeholder
                node_ref=textarea
                on:keydown=on_keydown
                on:input=on_input
                aria-autocomplete="list"
                aria-controls="mention-suggestions"
            ></textarea>
            <button type="submit">"Send"</button>
            <ul id="mention-suggestions" class="suggestions" role="listbox" aria-label="People to mention">
                {move || suggestions.get().into_iter().map(|a| {
                    let name = a.name.clone();
                    view! {
                        <li role="option" aria-selected="false">
                            <button type="button" on:click=move |_| pick(name.clone())>
                                {a.name.clone()} <span class="tag">{a.id.tag()}</span>
                            </button>
                        </li>
                    }
                }).collect_view()}
            </ul>
            <super::url_error::UrlError path=PostMessage::PATH/>
            {move || error().map(|e| view! { <p role="alert" class="error">{e}</p> })}
        </form>
    }
}
