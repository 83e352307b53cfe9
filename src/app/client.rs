//! The client's live state, shared by every component through context: the socket and its
//! status, the sidebar's conversations with their unread counts (kept live from the user's
//! own stream), who is typing and who is online, and the open conversation's log. Actions
//! go over the socket; sending falls back to HTTP while it is down.

use super::chat_state::{ConversationLog, PendingState};
use super::notify;
use super::socket::{ConnectionStatus, Handlers, Socket};
use crate::api::post_message;
use crate::protocol::{
    Author, ClientEvent, ConversationId, ConversationKind, ConversationSummary, MessageId,
    PresenceStatus, ServerEvent, UserId, MAX_UNREAD_COUNT,
};
use leptos::prelude::*;
use leptos::task::spawn_local;
use std::time::Duration;

/// How long a message sent over the socket may wait for its acknowledgement before it is
/// shown as failed (a late acknowledgement still turns it sent).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a send the server could not store (its database out of reach) waits before
/// it goes again.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);
/// How long "… is typing" shows after the last signal.
const TYPING_SHOWN_MS: f64 = 6000.0;

/// Live chat state; cheap to copy.
#[derive(Clone, Copy)]
pub struct ChatClient {
    /// The socket's state.
    pub status: RwSignal<ConnectionStatus>,
    /// The last error the server sent back over the socket.
    pub last_error: RwSignal<Option<String>>,
    /// The sidebar's conversations, live.
    pub sidebar: RwSignal<Vec<ConversationSummary>>,
    /// Who is typing where, until when (milliseconds since the epoch).
    pub typing: RwSignal<Vec<(ConversationId, Author, f64)>>,
    /// Status changes heard since the page loaded.
    pub presence: RwSignal<Vec<(UserId, PresenceStatus)>>,
    /// The open conversation's members, as the server last sent them.
    pub members: RwSignal<Option<(ConversationId, Vec<Author>)>>,
    /// The message whose thread is open beside the conversation, and how often it changed.
    pub thread_parent: RwSignal<Option<(MessageId, u64)>>,
    me: StoredValue<Option<UserId>>,
    open: StoredValue<Option<RwSignal<ConversationLog>>>,
    /// The read position last sent, per open conversation.
    read_sent: StoredValue<(ConversationId, u64)>,
    socket: Socket,
}

impl Default for ChatClient {
    fn default() -> Self {
        Self::new()
    }
}

impl ChatClient {
    /// Fresh state; nothing connects until [`ChatClient::start`].
    pub fn new() -> Self {
        ChatClient {
            status: RwSignal::new(ConnectionStatus::Connecting),
            last_error: RwSignal::new(None),
            sidebar: RwSignal::new(Vec::new()),
            typing: RwSignal::new(Vec::new()),
            presence: RwSignal::new(Vec::new()),
            members: RwSignal::new(None),
            thread_parent: RwSignal::new(None),
            me: StoredValue::new(None),
            open: StoredValue::new(None),
            read_sent: StoredValue::new((ConversationId(0), 0)),
            socket: Socket::new(),
        }
    }

    /// Connects the socket (in the browser; a no-op on the server).
    pub fn start(self) {
        self.socket.connect(Handlers {
            on_event: Box::new(move |event| self.handle(event)),
            on_status: Box::new(move |status| self.status.set(status)),
            on_open: Box::new(move || {
                self.resubscribe();
                self.resend();
                if notify::hidden() {
                    self.socket.send(&ClientEvent::Presence { away: true });
                }
            }),
        });
        notify::on_visibility(move |hidden| {
            self.socket.send(&ClientEvent::Presence { away: hidden });
            if !hidden {
                self.mark_open_read();
            }
        });
    }

    /// Makes `log` the open conversation and asks for what it may have missed since its
    /// snapshot.
    pub fn open_conversation(self, log: RwSignal<ConversationLog>) {
        self.open.set_value(Some(log));
        self.resubscribe();
        self.mark_open_read();
    }

    /// Forgets `log` if it is still the open conversation.
    pub fn close_conversation(self, log: RwSignal<ConversationLog>) {
        self.open.update_value(|open| {
            if *open == Some(log) {
                *open = None;
            }
        });
    }

    /// Whether this is the signed-in user.
    pub fn is_me(self, id: &UserId) -> bool {
        self.me.with_value(|me| me.as_ref() == Some(id))
    }

    /// Shows the user's message at once as pending and delivers it: over the socket when it
    /// is open, over HTTP when not. Its client id makes any retry safe.
    pub fn send_message(self, conversation: ConversationId, body: String) {
        let client_id = uuid::Uuid::new_v4().simple().to_string();
        self.with_log(conversation, |l| {
            l.add_pending(client_id.clone(), body.clone())
        });
        self.deliver(conversation, client_id, body);
    }

    /// Sends a failed message again, with the same client id.
    pub fn retry(self, client_id: String) {
        let Some(log) = self.open.get_value() else {
            return;
        };
        let found = log.try_update(|l| {
            let body = l
                .pending
                .iter()
                .find(|p| p.client_id == client_id)
                .map(|p| p.body.clone())?;
            l.set_pending_state(&client_id, PendingState::Sending);
            Some((l.id(), body))
        });
        if let Some(Some((conversation, body))) = found {
            self.deliver(conversation, client_id, body);
        }
    }

    /// Sends an action over the socket; says so if it is down.
    pub fn act(self, event: ClientEvent) {
        if !self.socket.send(&event) {
            self.last_error
                .set(Some("Not connected; try again in a moment.".into()));
        }
    }

    /// Tells the conversation that the user is typing (the server throttles it).
    pub fn typing_in(self, conversation: ConversationId) {
        self.socket.send(&ClientEvent::Typing { conversation });
    }

    fn deliver(self, conversation: ConversationId, client_id: String, body: String) {
        let event = ClientEvent::Send {
            conversation: Some(conversation),
            channel: None,
            body: body.clone(),
            client_id: Some(client_id.clone()),
        };
        if self.socket.send(&event) {
            set_timeout(
                move || {
                    self.with_log(conversation, |l| {
                        if l.sending().iter().any(|p| p.client_id == client_id) {
                            l.set_pending_state(
                                &client_id,
                                PendingState::Failed("Not delivered yet.".into()),
                            );
                        }
                    })
                },
                SEND_TIMEOUT,
            );
        } else {
            spawn_local(async move {
                let result = post_message(conversation.0, body, Some(client_id.clone())).await;
                self.with_log(conversation, |l| match result {
                    Ok(message) => l.apply(message),
                    Err(e) => l.set_pending_state(&client_id, PendingState::Failed(e.to_string())),
                });
            });
        }
    }

    fn resubscribe(self) {
        let Some(log) = self.open.get_value() else {
            return;
        };
        let Some((conversation, after)) = log.try_with_untracked(|l| (l.id(), l.last_change()))
        else {
            return;
        };
        self.socket.send(&ClientEvent::Subscribe {
            conversation: Some(conversation),
            channel: None,
            after_change: Some(after),
        });
    }

    /// After a reconnect: sends again what never got an acknowledgement (the server stores
    /// each client id once, so a message that did arrive is not doubled).
    fn resend(self) {
        let Some(log) = self.open.get_value() else {
            return;
        };
        let Some((conversation, waiting)) = log.try_with_untracked(|l| (l.id(), l.sending()))
        else {
            return;
        };
        for pending in waiting {
            self.socket.send(&ClientEvent::Send {
                conversation: Some(conversation),
                channel: None,
                body: pending.body,
                client_id: Some(pending.client_id),
            });
        }
    }

    fn with_log(self, conversation: ConversationId, f: impl FnOnce(&mut ConversationLog)) {
        if let Some(log) = self.open.get_value() {
            log.try_update(|l| {
                if l.is_for(conversation) {
                    f(l)
                }
            });
        }
    }

    /// Marks the open conversation read up to its newest message, while the tab is seen.
    fn mark_open_read(self) {
        if notify::hidden() {
            return;
        }
        let Some(log) = self.open.get_value() else {
            return;
        };
        let Some((conversation, Some(newest))) =
            log.try_with_untracked(|l| (l.id(), l.newest_seq()))
        else {
            return;
        };
        let sent = self.read_sent.get_value();
        if sent.0 == conversation && sent.1 >= newest {
            return;
        }
        self.read_sent.set_value((conversation, newest));
        self.read_locally(conversation, newest);
        self.socket.send(&ClientEvent::Read {
            conversation,
            seq: newest,
        });
    }

    /// The sidebar shows a conversation read up to `seq`.
    fn read_locally(self, conversation: ConversationId, seq: u64) {
        self.sidebar.update(|list| {
            if let Some(s) = list.iter_mut().find(|s| s.conversation.id == conversation) {
                s.read_seq = s.read_seq.max(seq);
                if s.read_seq >= s.last_seq {
                    s.unread = 0;
                    s.mentions = 0;
                }
            }
        });
    }

    /// Reloads the sidebar's conversations from the server.
    pub fn refresh_sidebar(self) {
        spawn_local(async move {
            if let Ok(list) = crate::api::list_conversations().await {
                self.sidebar.set(list);
            }
        });
    }

    fn open_id(self) -> Option<ConversationId> {
        self.open
            .get_value()
            .and_then(|log| log.try_with_untracked(|l| l.id()))
    }

    fn handle(self, event: ServerEvent) {
        match event {
            ServerEvent::Hello { user } => self.me.set_value(Some(user.id)),
            ServerEvent::Ack {
                client_id: Some(client_id),
                conversation,
                ..
            } => self.with_log(conversation, |l| {
                l.set_pending_state(&client_id, PendingState::Sent)
            }),
            ServerEvent::Ack { .. } => {}
            ServerEvent::Subscribed {
                conversation,
                messages,
                last_change,
                reset,
                has_older,
                members,
            } => {
                self.with_log(conversation.id, |l| {
                    l.apply_subscribed(messages, last_change, reset, has_older)
                });
                if let Some(members) = members {
                    self.members.set(Some((conversation.id, members)));
                }
                self.mark_open_read();
            }
            ServerEvent::Message { message } => {
                let conversation = message.conversation;
                self.with_log(conversation, |l| l.apply(message));
                self.mark_open_read();
            }
            ServerEvent::Changed { message } => {
                let bump = self
                    .thread_parent
                    .with_untracked(|p| p.as_ref().is_some_and(|(id, _)| id == &message.id));
                if bump {
                    self.thread_parent
                        .update(|p| p.iter_mut().for_each(|(_, n)| *n += 1));
                }
                self.with_log(message.conversation, |l| l.apply(message));
            }
            ServerEvent::Members {
                conversation,
                change,
                members,
            } => {
                self.with_log(conversation, |l| l.saw_change(change));
                self.members.set(Some((conversation, members)));
            }
            ServerEvent::Activity {
                conversation,
                seq,
                author,
                mentions,
                mentions_all,
                ..
            } => self.on_activity(conversation, seq, &author, &mentions, mentions_all),
            ServerEvent::Joined { summary } => self.sidebar.update(|list| {
                list.retain(|s| s.conversation.id != summary.conversation.id);
                list.insert(0, summary);
            }),
            ServerEvent::Left { conversation } => self
                .sidebar
                .update(|list| list.retain(|s| s.conversation.id != conversation)),
            ServerEvent::ReadMoved { conversation, seq } => self.read_locally(conversation, seq),
            ServerEvent::Typing { conversation, user } => {
                if self.is_me(&user.id) {
                    return;
                }
                let until = notify::now_ms() + TYPING_SHOWN_MS;
                self.typing.update(|list| {
                    list.retain(|(c, a, _)| !(c == &conversation && a.id == user.id));
                    list.push((conversation, user, until));
                });
                set_timeout(
                    move || {
                        let now = notify::now_ms();
                        self.typing.update(|list| list.retain(|(_, _, t)| *t > now));
                    },
                    Duration::from_millis(TYPING_SHOWN_MS as u64 + 50),
                );
            }
            ServerEvent::Presence { user, status } => self.presence.update(|list| {
                list.retain(|(u, _)| u != &user);
                list.push((user, status));
            }),
            ServerEvent::Refresh => self.refresh_sidebar(),
            ServerEvent::Error {
                error: crate::error::AppError::Unavailable,
                client_id: Some(client_id),
                ..
            } => {
                // The server could not reach its database: nothing was stored, so the
                // same send (same client id) goes again shortly, as often as it takes.
                set_timeout(move || self.retry(client_id), UNAVAILABLE_RETRY);
            }
            ServerEvent::Error {
                message,
                client_id: Some(client_id),
                ..
            } => {
                if let Some(log) = self.open.get_value() {
                    log.try_update(|l| {
                        l.set_pending_state(&client_id, PendingState::Failed(message))
                    });
                }
            }
            ServerEvent::Error { message, .. } => self.last_error.set(Some(message)),
        }
    }

    /// A new message in one of the user's conversations that is not open here.
    fn on_activity(
        self,
        conversation: ConversationId,
        seq: u64,
        author: &UserId,
        mentions: &[UserId],
        mentions_all: bool,
    ) {
        if self.open_id() == Some(conversation) {
            return;
        }
        let mine = self.is_me(author);
        let mentioned = !mine
            && (mentions_all
                || self
                    .me
                    .with_value(|me| me.as_ref().is_some_and(|me| mentions.contains(me))));
        let mut known = false;
        let mut title = None;
        self.sidebar.update(|list| {
            if let Some(s) = list.iter_mut().find(|s| s.conversation.id == conversation) {
                known = true;
                s.last_seq = s.last_seq.max(seq);
                if mine {
                    s.read_seq = s.read_seq.max(seq);
                } else if seq > s.read_seq {
                    s.unread = (s.unread + 1).min(MAX_UNREAD_COUNT);
                    if mentioned {
                        s.mentions = (s.mentions + 1).min(MAX_UNREAD_COUNT);
                    }
                }
                let direct = s.conversation.kind == ConversationKind::Direct;
                if !mine && (mentioned || direct) {
                    let me = self.me.get_value();
                    title = Some((
                        s.conversation.title(me.as_ref()),
                        crate::paths::conversation_path(&s.conversation),
                        direct,
                    ));
                }
            }
        });
        if !known {
            self.refresh_sidebar();
        }
        if let Some((title, path, direct)) = title {
            let what = if direct {
                "New direct message"
            } else {
                "You were mentioned"
            };
            notify::show(&format!("{what} in {title}"), &path);
        }
    }
}
