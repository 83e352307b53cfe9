//! The client's live state, shared by every component through context: the socket, its
//! status, channels created since the page loaded, and the open channel's log.

use super::chat_state::ChannelLog;
use super::socket::{ConnectionStatus, Handlers, Socket};
use crate::protocol::{channel_key, ChannelInfo, ClientEvent, ServerEvent};
use leptos::prelude::*;

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
            on_open: Box::new(move || self.resubscribe()),
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

    /// Sends an event over the socket; `false` if it is not open.
    pub fn send(self, event: &ClientEvent) -> bool {
        self.socket.send(event)
    }

    fn resubscribe(self) {
        let Some(log) = self.open.get_value() else {
            return;
        };
        let Some((channel, after)) =
            log.try_with_untracked(|l| (l.name().to_string(), l.seen_seq()))
        else {
            return;
        };
        self.socket.send(&ClientEvent::Subscribe {
            channel,
            after_seq: Some(after),
        });
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
            ServerEvent::Hello { .. } | ServerEvent::Ack { .. } => {}
            ServerEvent::ChannelCreated { channel } => self.new_channels.update(|list| {
                if !list
                    .iter()
                    .any(|c| channel_key(&c.name) == channel_key(&channel.name))
                {
                    list.push(channel);
                }
            }),
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
            ServerEvent::Error { message, .. } => self.last_error.set(Some(message)),
        }
    }
}
