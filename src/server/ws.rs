//! The WebSocket at `/ws`: one task per socket that reads the client's [`ClientEvent`]s and
//! forwards the lobby's and the open channel's frames, with pings to find dead peers.

use super::hub::{Frame, Subscription, Topic};
use super::identity::{origin_allowed, CurrentUser};
use super::state::AppState;
use crate::error::AppError;
use crate::protocol::{
    channel_key, decode_client_event, ClientEvent, ServerEvent, UserInfo, MAX_FRAME_BYTES,
};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use std::time::Instant;
use tokio::sync::broadcast::error::RecvError;

/// `GET /ws`: checks the Origin and the identity, then upgrades.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    headers: HeaderMap,
    user: Option<Extension<CurrentUser>>,
) -> Response {
    if !origin_allowed(&headers, &state.config.allowed_origins) {
        return AppError::ForeignOrigin.into_response();
    }
    let Some(Extension(CurrentUser(user))) = user else {
        return AppError::Unauthenticated.into_response();
    };
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| Session::new(state, user).run(socket))
}

/// The channel a socket has open.
struct Open {
    name: String,
    frames: Subscription,
    /// The highest sequence number this socket has been sent.
    last_seq: u64,
}

struct Session {
    state: AppState,
    user: UserInfo,
    open: Option<Open>,
}

/// Why a session ends.
struct Closed;

impl Session {
    fn new(state: AppState, user: UserInfo) -> Self {
        Session {
            state,
            user,
            open: None,
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        tracing::debug!(user = %self.user.id.0, "socket open");
        // Subscribe before saying hello, so nothing published meanwhile is missed.
        let mut lobby = self.state.chat.subscribe(&Topic::Lobby);
        let hello = ServerEvent::Hello {
            user: self.user.clone(),
        };
        if send_event(&mut socket, &hello).await.is_err() {
            return;
        }
        let ping_every = self.state.config.ping_interval();
        let mut ping = tokio::time::interval(ping_every);
        ping.tick().await;
        let mut last_heard = Instant::now();
        loop {
            let step = tokio::select! {
                incoming = socket.recv() => match incoming {
                    Some(Ok(message)) => {
                        last_heard = Instant::now();
                        self.on_message(&mut socket, message).await
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "socket read failed");
                        Err(Closed)
                    }
                    None => Err(Closed),
                },
                frame = lobby.recv() => match frame {
                    Ok(frame) => send_text(&mut socket, frame).await,
                    // Missed channel announcements: the client re-reads the list on reconnect.
                    Err(RecvError::Lagged(_)) => Ok(()),
                    Err(RecvError::Closed) => Err(Closed),
                },
                frame = next_channel_frame(&mut self.open) => self.on_channel_frame(&mut socket, frame).await,
                _ = ping.tick() => {
                    if last_heard.elapsed() > 2 * ping_every {
                        tracing::debug!(user = %self.user.id.0, "peer silent, dropping");
                        Err(Closed)
                    } else {
                        socket.send(Message::Ping(Default::default())).await.map_err(|_| Closed)
                    }
                }
            };
            if step.is_err() {
                break;
            }
        }
        tracing::debug!(user = %self.user.id.0, "socket closed");
    }

    async fn on_message(&mut self, socket: &mut WebSocket, message: Message) -> Result<(), Closed> {
        match message {
            Message::Text(text) => match decode_client_event(text.as_str()) {
                Ok(event) => self.on_event(socket, event).await,
                Err(error) => send_event(socket, &ServerEvent::error(error, None)).await,
            },
            Message::Binary(_) => {
                let error = AppError::BadFrame {
                    detail: "binary frames are not supported; send JSON text".into(),
                };
                send_event(socket, &ServerEvent::error(error, None)).await
            }
            Message::Close(_) => Err(Closed),
            Message::Ping(_) | Message::Pong(_) => Ok(()),
        }
    }

    async fn on_event(&mut self, socket: &mut WebSocket, event: ClientEvent) -> Result<(), Closed> {
        let chat = self.state.chat.clone();
        match event {
            ClientEvent::Subscribe { channel, after_seq } => {
                // Subscribe first, then read the store: frames that arrive meanwhile are
                // skipped by sequence number instead of being lost.
                let frames = chat.subscribe(&Topic::Channel(channel_key(&channel)));
                match chat.catch_up(&channel, after_seq).await {
                    Ok(reply) => {
                        let ServerEvent::Subscribed {
                            channel: name,
                            messages,
                            reset,
                            ..
                        } = &reply
                        else {
                            unreachable!("catch_up answers with Subscribed")
                        };
                        let seen = if *reset { None } else { after_seq };
                        let last_seq = messages.last().map(|m| m.seq).or(seen).unwrap_or(0);
                        self.open = Some(Open {
                            name: name.clone(),
                            frames,
                            last_seq,
                        });
                        send_event(socket, &reply).await
                    }
                    Err(error) => send_event(socket, &ServerEvent::error(error, None)).await,
                }
            }
            ClientEvent::Send {
                channel,
                body,
                client_id,
            } => {
                // Re-read the user: the display name may have changed since the socket opened.
                let user = match chat.store().user(&self.user.id).await {
                    Ok(Some(user)) => user,
                    _ => self.user.clone(),
                };
                let reply = match chat.post(&user, &channel, &body, client_id.clone()).await {
                    Ok(message) => ServerEvent::Ack {
                        client_id,
                        message_id: message.id,
                        channel: message.channel,
                        seq: message.seq,
                    },
                    Err(error) => ServerEvent::error(error, client_id),
                };
                send_event(socket, &reply).await
            }
            ClientEvent::Delete { message_id } => {
                match chat.delete(&self.user.id, &message_id).await {
                    Ok(_) => Ok(()),
                    Err(error) => send_event(socket, &ServerEvent::error(error, None)).await,
                }
            }
        }
    }

    async fn on_channel_frame(
        &mut self,
        socket: &mut WebSocket,
        frame: Result<Frame, RecvError>,
    ) -> Result<(), Closed> {
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        match frame {
            Ok(frame) => match frame.seq {
                Some(seq) if seq <= open.last_seq => Ok(()),
                Some(seq) => {
                    open.last_seq = seq;
                    send_text(socket, frame).await
                }
                None => send_text(socket, frame).await,
            },
            Err(RecvError::Lagged(missed)) => {
                // Fell behind the hub: replay from the store instead of dropping anything.
                tracing::info!(user = %self.user.id.0, channel = %open.name, missed, "resync");
                match self
                    .state
                    .chat
                    .catch_up(&open.name, Some(open.last_seq))
                    .await
                {
                    Ok(reply) => {
                        if let ServerEvent::Subscribed { messages, .. } = &reply {
                            if let Some(last) = messages.last() {
                                open.last_seq = open.last_seq.max(last.seq);
                            }
                        }
                        send_event(socket, &reply).await
                    }
                    Err(error) => send_event(socket, &ServerEvent::error(error, None)).await,
                }
            }
            Err(RecvError::Closed) => {
                self.open = None;
                Ok(())
            }
        }
    }
}

/// The next frame of the open channel; never resolves while no channel is open.
async fn next_channel_frame(open: &mut Option<Open>) -> Result<Frame, RecvError> {
    match open {
        Some(open) => open.frames.recv().await,
        None => std::future::pending().await,
    }
}

async fn send_text(socket: &mut WebSocket, frame: Frame) -> Result<(), Closed> {
    socket
        .send(Message::Text(frame.text))
        .await
        .map_err(|_| Closed)
}

async fn send_event(socket: &mut WebSocket, event: &ServerEvent) -> Result<(), Closed> {
    send_text(socket, Frame::new(None, event)).await
}
