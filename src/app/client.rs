//! The client's live state, shared by every component through context: the socket, its
//! status, channels created since the page loaded, and the open channel's log.

use super::chat_state::{ChannelLog, PendingState};
use super::socket::{ConnectionStatus, Handlers, Socket};
use crate::api::post_message;
use crate::protocol::{ChannelInfo, ClientEvent, ServerEvent};
use leptos::prelude::*;
use leptos::task::spawn_local;
use std::time::Duration;

/// How long a message sent over the socket may wait for its acknowledgement before it is
/// shown as failed (a late acknowledgement still turns it sent).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Live chat state; cheap to copy.
#[derive(Clone, Copy)]
pub struct ChatClient {
    /// The socket's state.
    pub status: RwSignal<ConnectionStatus>,
    /// Channels announced over the socket since the page loaded.
    pub new_channels: RwSignal<Vec<ChannelInfo>>,
    /// The last error the server sent back over the socket.
    pub last_error: RwSignal<Option<String>>,
    open: StoredValue<Option<RwSignal<ChannelLog>>>,
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
            new_channels: RwSignal::new(Vec::new()),
            last_error: RwSignal::new(None),
            open: StoredValue::new(None),
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
            }),
        });
    }

    /// Makes `log` the open channel and asks for what it may have missed since its snapshot.
    pub fn open_channel(self, log: RwSignal<ChannelLog>) {
        self.open.set_value(Some(log));
        self.resubscribe();
    }

    /// Forgets `log` if it is still the open channel.
    pub fn close_channel(self, log: RwSignal<ChannelLog>) {
        self.open.update_value(|open| {
            if *open == Some(log) {
                *open = None;
            }
        });
    }

    /// Shows the user's message at once as pending and delivers it: over the socket when it
    /// is open, over HTTP when not. Its client id makes any retry safe.
    pub fn send_message(self, channel: String, body: String) {
        let client_id = uuid::Uuid::new_v4().simple().to_string();
        self.with_open_log(&channel, |l| l.add_pending(client_id.clone(), body.clone()));
        self.deliver(channel, client_id, body);
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
            Some((l.name().to_string(), body))
        });
        if let Some(Some((channel, body))) = found {
            self.deliver(channel, client_id, body);
        }
    }

    fn deliver(self, channel: String, client_id: String, body: String) {
        let event = ClientEvent::Send {
            channel: channel.clone(),
            body: body.clone(),
            client_id: Some(client_id.clone()),
        };
        if self.socket.send(&event) {
            set_timeout(
                move || {
                    self.with_open_log(&channel, |l| {
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
                let result = post_message(channel.clone(), body, Some(client_id.clone())).await;
                self.with_open_log(&channel, |l| match result {
                    Ok(message) => l.apply_message(message),
                    Err(e) => l.set_pending_state(&client_id, PendingState::Failed(e.to_string())),
                });
            });
        }
    }

    fn resubscribe(self) {
        let Some(log) = self.open.get_value() else {
            return;
        };
        let Some((channel, after, oldest)) =
            log.try_with_untracked(|l| (l.name().to_string(), l.seen_seq(), l.oldest_seq()))
        else {
            return;
        };
        self.socket.send(&ClientEvent::Subscribe {
            channel,
            after_seq: Some(after),
            oldest_seq: oldest,
        });
    }

    /// After a reconnect: sends again what never got an acknowledgement (the server stores
    /// each client id once, so a message that did arrive is not doubled).
    fn resend(self) {
        let Some(log) = self.open.get_value() else {
            return;
        };
        let Some((channel, waiting)) =
            log.try_with_untracked(|l| (l.name().to_string(), l.sending()))
        else {
            return;
        };
        for pending in waiting {
            self.socket.send(&ClientEvent::Send {
                channel: channel.clone(),
                body: pending.body,
                client_id: Some(pending.client_id),
            });
        }
    }

    fn with_open_log(self, channel: &str, f: impl FnOnce(&mut ChannelLog)) {
        if let Some(log) = self.open.get_value() {
            log.try_update(|l| {
                if l.is_for(channel) {
                    f(l)
                }
            });
        }
    }

    fn handle(self, event: ServerEvent) {
        match event {
            ServerEvent::Hello { .. } => {}
            ServerEvent::Ack {
                client_id: Some(client_id),
                channel,
                ..
            } => self.with_open_log(&channel, |l| {
                l.set_pending_state(&client_id, PendingState::Sent)
            }),
            ServerEvent::Ack { .. } => {}
            ServerEvent::Subscribed {
                channel,
                messages,
                removed,
                reset,
            } => self.with_open_log(&channel, |l| l.apply_subscribed(messages, &removed, reset)),
            ServerEvent::Message { message } => {
                let channel = message.channel.clone();
                self.with_open_log(&channel, |l| l.apply_message(message));
            }
            ServerEvent::MessageDeleted {
                channel,
                message_id,
                ..
            } => self.with_open_log(&channel, |l| l.apply_deleted(&message_id)),
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
}
