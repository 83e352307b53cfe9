//! One message as the list shows it: author (a link to message them), time, "(edited)",
//! the text with mentions highlighted, reactions as buttons (plain form posts without
//! JavaScript, socket actions with it), a reaction picker, its thread, and for one's own
//! messages Edit and Delete.

use super::message_groups::Place;
use super::workspace::Me;
use super::{time, ChatClient};
use crate::api::{DeleteMessage, EditMessage, React};
use crate::paths::thread_path;
use crate::protocol::{
    mention_matches, ClientEvent, ConversationInfo, Message, MessageId, Reaction, EVERYONE_MENTIONS,
};
use chrono::{DateTime, Utc};
use leptos::either::Either;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_router::hooks::use_query_map;

/// Which message is being edited in place (with JavaScript), for the whole page.
#[derive(Clone, Copy)]
pub struct Editing(pub RwSignal<Option<MessageId>>);

/// Which message has the reaction picker open (with JavaScript), for the whole page.
#[derive(Clone, Copy)]
pub struct Picking(pub RwSignal<Option<MessageId>>);

/// Emoji offered by the picker (any other can be typed).
const COMMON_EMOJI: [&str; 8] = ["👍", "❤️", "😂", "🎉", "🙏", "👀", "✅", "🔥"];

#[component]
pub fn MessageItem(
    message: Message,
    conversation: ConversationInfo,
    /// Its group and day, when rendered by the server (the browser sets them in the DOM).
    place: Option<Place>,
    /// Looked up once by the list, not per message: context lookups walk the owner tree.
    me: Option<Me>,
    /// Shown in a thread (no thread link of its own).
    in_thread: bool,
) -> impl IntoView {
    let me_user = me.and_then(|m| m.get_untracked());
    let mine = me_user.as_ref().is_some_and(|u| u.id == message.author.id);
    let mentions_me = me_user
        .as_ref()
        .is_some_and(|u| message.mentions_user(&u.id) && !mine);
    let my_name = me_user.as_ref().and_then(|u| u.name.clone());
    let editing = use_context::<Editing>();
    let query = use_query_map();
    let id = message.id.clone();
    let edit_here = {
        let id = id.clone();
        move || {
            editing.is_some_and(|e| e.0.get().as_ref() == Some(&id))
                || query.read().get("edit").as_deref() == Some(id.0.as_str())
        }
    };
    let picking = use_context::<Picking>();
    let pick_here = {
        let id = id.clone();
        move || {
            picking.is_some_and(|p| p.0.get().as_ref() == Some(&id))
                || query.read().get("react").as_deref() == Some(id.0.as_str())
        }
    };
    let thread_link = (!in_thread && conversation.kind != crate::protocol::ConversationKind::Thread)
        .then(|| {
            let href = thread_path(&conversation, &message.id);
            let label = match &message.thread {
                Some(t) if t.replies == 1 => "1 reply".to_string(),
                Some(t) => format!("{} replies", t.replies),
                None => "Reply in thread".to_string(),
            };
            let last = message.thread.as_ref().map(|t| t.last_reply_at);
            let has = message.thread.is_some();
            view! {
                <a class="thread-link" class:has-replies=has href=href>
                    {label}
                    {last.map(|at| view! { <span class="last-reply">" · last reply "<Timestamp at/></span> })}
                </a>
            }
        });
    // A thread with replies shows under the message; "Reply in thread" is an action.
    let (thread_below, thread_link) = if message.thread.is_some() {
        (thread_link, None)
    } else {
        (None, thread_link)
    };
    let Message {
        seq,
        author,
        body,
        sent_at,
        edited_at,
        reactions,
        mentions_all,
        mentions,
        ..
    } = message;
    let dom_id = id.0.clone();
    let body_view = {
        let body = body.clone();
        let mentioned_someone = mentions_all || !mentions.is_empty();
        move || highlight(&body, my_name.as_deref(), mentioned_someone)
    };
    let edit_id = id.clone();
    // The rest of a group keeps its author and tag for screen readers only; the day divider
    // is drawn (and read out) from `data-day` by CSS. The server renders both; in the
    // browser the list's effect sets them.
    #[cfg(feature = "ssr")]
    let grouped = {
        let (cont, day) = place.map_or((false, None), |p| (!p.head, p.day));
        view! { <{..} class:cont=cont data-day=day/> }
    };
    #[cfg(not(feature = "ssr"))]
    #[allow(clippy::let_unit_value)] // nothing to spread: an empty set of attributes
    let grouped = {
        let _ = place;
    };
    view! {
        <li class="message" {..grouped} class:mentions-me=mentions_me data-id=dom_id data-seq=seq>
            <div class="meta">
                <a class="author" href=format!("/people?q={}", author.name) title="Send a direct message">
                    {author.name.clone()}
                </a>
                <span class="tag" title="User tag: tells people of the same name apart">
                    {author.id.tag()}
                </span>
                // UTC as the server renders it; the list's effect shows the local time.
                <time class="sent" datetime=time::iso(&sent_at) title=time::iso(&sent_at)>
                    {time::utc_label(&sent_at)}
                </time>
                {edited_at.map(|_| view! { <span class="edited">"(edited)"</span> })}
            </div>
            {move || {
                if mine && edit_here() {
                    Either::Left(view! { <EditForm id=edit_id.clone() body=body.clone()/> })
                } else {
                    Either::Right(view! { <div class="body">{body_view.clone()}</div> })
                }
            }}
            <Reactions id=id.clone() reactions me/>
            {thread_below}
            <div class="actions">
                <PickerToggle id=id.clone() open=pick_here.clone()/>
                {
                    let id = id.clone();
                    move || pick_here().then(|| view! { <ReactionPicker id=id.clone()/> })
                }
                {thread_link}
                {mine.then(|| view! { <EditButton id=id.clone()/> <DeleteButton id=id.clone()/> })}
            </div>
        </li>
    }
}

/// The text with `@mentions` of the reader (and `@channel`, `@here`, `@everyone`) marked.
fn highlight(body: &str, me: Option<&str>, any: bool) -> Vec<Either<String, impl IntoView>> {
    if !any || !body.contains('@') {
        return vec![Either::Left(body.to_string())];
    }
    let mut out = Vec::new();
    let mut rest = 0;
    for (at, _) in body.match_indices('@') {
        if at < rest {
            continue;
        }
        let after = &body[at + 1..];
        let word = EVERYONE_MENTIONS
            .iter()
            .map(|w| w.to_string())
            .chain(me.map(str::to_string))
            .find(|w| mention_matches(after, w));
        if let Some(word) = word {
            out.push(Either::Left(body[rest..at].to_string()));
            let end = at + 1 + word.len();
            out.push(Either::Right(
                view! { <mark class="mention">{body[at..end].to_string()}</mark> },
            ));
            rest = end;
        }
    }
    out.push(Either::Left(body[rest..].to_string()));
    out
}

/// A time shown outside the list's own messages (the last reply of a thread): UTC, as the
/// server renders it; the full local time is in the list's effect's reach only for `.sent`.
#[component]
pub fn Timestamp(at: DateTime<Utc>) -> impl IntoView {
    let iso = time::iso(&at);
    view! {
        <time datetime=iso.clone() title=iso>
            {time::utc_label(&at)}
        </time>
    }
}

/// A reaction form: a plain post without JavaScript, a socket action with it.
#[component]
fn ReactForm(id: MessageId, emoji: String, on: bool, children: Children) -> impl IntoView {
    let client = expect_context::<ChatClient>();
    let picking = use_context::<Picking>();
    let on_submit = {
        let (id, emoji) = (id.clone(), emoji.clone());
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            if let Some(picking) = picking {
                picking.0.set(None);
            }
            client.act(ClientEvent::React {
                message_id: id.clone(),
                emoji: emoji.clone(),
                on,
            });
        }
    };
    view! {
        <form method="post" action=React::url() class="react" on:submit=on_submit>
            <input type="hidden" name="message_id" value=id.0/>
            <input type="hidden" name="emoji" value=emoji/>
            <input type="hidden" name="on" value=on.to_string()/>
            {children()}
        </form>
    }
}

/// Each emoji with its count; pressed if the reader reacted with it (pressing takes it back).
#[component]
fn Reactions(id: MessageId, reactions: Vec<Reaction>, me: Option<Me>) -> impl IntoView {
    if reactions.is_empty() {
        return None;
    }
    let me_id = me.and_then(|m| m.get_untracked()).map(|u| u.id);
    Some(view! {
        <ul class="reactions" aria-label="Reactions">
            {reactions.into_iter().map(|r| {
                let mine = me_id.as_ref().is_some_and(|me| r.users.iter().any(|u| &u.id == me));
                let names: Vec<String> = r.users.iter().map(|u| u.name.clone()).collect();
                let more = r.count as usize - names.len().min(r.count as usize);
                let who = if more > 0 { format!("{} and {more} more", names.join(", ")) } else { names.join(", ") };
                let label = format!(
                    "{} {}: {who}. {}",
                    r.emoji,
                    r.count,
                    if mine { "Press to remove your reaction." } else { "Press to react too." }
                );
                view! {
                    <li>
                        <ReactForm id=id.clone() emoji=r.emoji.clone() on=!mine>
                            <button type="submit" class="reaction" aria-pressed=mine.to_string() aria-label=label.clone() title=who.clone()>
                                <span class="emoji">{r.emoji.clone()}</span>
                                " "
                                <span class="count">{r.count}</span>
                            </button>
                        </ReactForm>
                    </li>
                }
            }).collect_view()}
        </ul>
    })
}

/// "Add reaction" opens the picker under one message at a time: in place with JavaScript;
/// without it, a link to this page with the picker open (`?react=ID`). Rendering a picker
/// per message would send every page ten forms per message.
#[component]
fn PickerToggle(id: MessageId, open: impl Fn() -> bool + Send + Sync + 'static) -> impl IntoView {
    let picking = use_context::<Picking>();
    let href = format!("?react={}", id.0);
    view! {
        <a
            class="react-open"
            href=href
            aria-label="Add reaction"
            title="Add reaction"
            aria-expanded=move || open().to_string()
            on:click=move |ev| {
                if let Some(picking) = picking {
                    ev.prevent_default();
                    picking.0.update(|p| {
                        *p = if p.as_ref() == Some(&id) { None } else { Some(id.clone()) };
                    });
                }
            }
        >
            "☺+"
        </a>
    }
}

/// The picker: common emoji, or any typed one.
#[component]
fn ReactionPicker(id: MessageId) -> impl IntoView {
    let client = expect_context::<ChatClient>();
    let picking = use_context::<Picking>();
    let input = NodeRef::<leptos::html::Input>::new();
    let on_typed = {
        let id = id.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            if let Some(el) = input.get_untracked() {
                let emoji = el.value();
                if !emoji.trim().is_empty() {
                    client.act(ClientEvent::React {
                        message_id: id.clone(),
                        emoji,
                        on: true,
                    });
                    el.set_value("");
                    if let Some(picking) = picking {
                        picking.0.set(None);
                    }
                }
            }
        }
    };
    let close = move |ev: leptos::ev::MouseEvent| {
        if let Some(picking) = picking {
            ev.prevent_default();
            picking.0.set(None);
        }
    };
    let field = format!("emoji-{}", id.0);
    view! {
        <div class="react-picker" role="group" aria-label="Pick a reaction">
            {COMMON_EMOJI.iter().map(|e| view! {
                <ReactForm id=id.clone() emoji=e.to_string() on=true>
                    <button type="submit" aria-label=format!("React with {e}")>{*e}</button>
                </ReactForm>
            }).collect_view()}
            <form method="post" action=React::url() class="react typed" on:submit=on_typed>
                <input type="hidden" name="message_id" value=id.0.clone()/>
                <input type="hidden" name="on" value="true"/>
                <label for=field.clone() class="visually-hidden">"Any emoji"</label>
                <input id=field name="emoji" node_ref=input size="4" placeholder="🙂" autocomplete="off"/>
                <button type="submit">"Add"</button>
            </form>
            <a class="link" href="?" on:click=close>"Close"</a>
        </div>
    }
}

/// "Edit": in place with JavaScript; without it, a link to this page with the edit form.
#[component]
fn EditButton(id: MessageId) -> impl IntoView {
    let editing = use_context::<Editing>();
    let href = format!("?edit={}", id.0);
    view! {
        <a
            class="edit"
            href=href
            title="Edit this message"
            on:click=move |ev| {
                if let Some(editing) = editing {
                    ev.prevent_default();
                    editing.0.set(Some(id.clone()));
                }
            }
        >
            "Edit"
        </a>
    }
}

/// Editing one's own message: Enter saves, Escape cancels.
#[component]
fn EditForm(id: MessageId, body: String) -> impl IntoView {
    let client = expect_context::<ChatClient>();
    let editing = use_context::<Editing>();
    let textarea = NodeRef::<leptos::html::Textarea>::new();
    Effect::new(move |_| {
        if let Some(el) = textarea.get() {
            request_animation_frame(move || {
                let _ = el.focus();
            });
        }
    });
    let stop = move || {
        if let Some(editing) = editing {
            editing.0.set(None);
        }
    };
    let save = {
        let id = id.clone();
        move || {
            if let Some(el) = textarea.get_untracked() {
                client.act(ClientEvent::Edit {
                    message_id: id.clone(),
                    body: el.value(),
                });
            }
            stop();
        }
    };
    let on_submit = {
        let save = save.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            save();
        }
    };
    let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
        if ev.key() == "Escape" {
            ev.prevent_default();
            stop();
        } else if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
            ev.prevent_default();
            save();
        }
    };
    let field = format!("edit-{}", id.0);
    view! {
        <form method="post" action=EditMessage::url() class="edit-form" on:submit=on_submit>
            <input type="hidden" name="message_id" value=id.0.clone()/>
            <label for=field.clone() class="visually-hidden">"Edit message"</label>
            <textarea id=field name="body" rows="2" node_ref=textarea on:keydown=on_keydown>{body}</textarea>
            <button type="submit">"Save"</button>
            <button type="button" class="link" on:click=move |_| stop()>"Cancel"</button>
            <super::url_error::UrlError path=EditMessage::PATH/>
        </form>
    }
}

/// Deletes one's own message: a form post without JavaScript, a socket action with it.
#[component]
fn DeleteButton(id: MessageId) -> impl IntoView {
    let client = expect_context::<ChatClient>();
    let on_submit = {
        let id = id.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            client.act(ClientEvent::Delete {
                message_id: id.clone(),
            });
        }
    };
    view! {
        <form method="post" action=DeleteMessage::url() class="delete-form" on:submit=on_submit>
            <input type="hidden" name="message_id" value=id.0/>
            <button type="submit" class="delete" aria-label="Delete message" title="Delete message">
                "×"
            </button>
        </form>
    }
}
