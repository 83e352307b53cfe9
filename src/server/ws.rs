//! The WebSocket at `/ws`. Each socket has two tasks: the session reads the client's
//! [`ClientEvent`]s and puts its answers (and the lobby's frames) in a bounded outgoing queue;
//! the writer drains that queue into the socket and also follows the open channel, taking its
//! frames straight from the hub, so a delivery wakes one task, not two. A client that stops
//! reading lets its queue or its channel backlog fill and is cut off (close code 4008) instead
//! of holding memory; it catches up when it reconnects. A client that keeps sending past its
//! rate limit is closed (4029).

use super::chat::settle;
use super::hub::{Frame, Subscription, Topic};
use super::identity::{origin_allowed, CurrentUser};
use super::state::AppState;
use super::store::Appended;
use crate::error::AppError;
use crate::protocol::{
    channel_key, decode_client_event, ClientEvent, ServerEvent, UserInfo, CLOSE_FLOOD,
    CLOSE_SLOW_CONSUMER, MAX_FRAME_BYTES,
};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::stream::{FuturesOrdered, SplitSink};
use futures_util::{SinkExt, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

/// Bytes tungstenite reads at a time: small, so that idle sockets stay cheap.
const READ_BUFFER: usize = 4 * 1024;
/// Close code for a frame over [`MAX_FRAME_BYTES`] (the WebSocket standard's "message too big").
const CLOSE_TOO_BIG: u16 = 1009;
/// Sends one socket may have waiting for their commit before it stops reading.
const MAX_IN_FLIGHT: usize = 256;
/// Frames written before one flush.
const WRITE_BATCH: usize = 64;
/// The reason sent with [`CLOSE_SLOW_CONSUMER`], by the session (its queue) or the writer
/// (its channel backlog).
const TOO_SLOW: &str = "too slow to keep up";
/// How long a closing socket waits for the client's close reply.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

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
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| run(socket, state, user))
}

/// The channel a socket has open, followed by its writer.
struct Open {
    name: String,
    frames: Subscription,
    /// The highest sequence number this socket has been sent.
    last_seq: u64,
    /// Where the writer hands the channel back if it falls behind (the session has dropped
    /// the other end once it opens another channel).
    give_back: Option<oneshot::Sender<Box<Open>>>,
}

impl Open {
    /// Hands the channel back to the session, to be replayed from the store.
    fn give_back(mut self: Box<Self>) {
        if let Some(back) = self.give_back.take() {
            let _ = back.send(self);
        }
    }

    /// Whether a frame of this channel is new to the socket (frames published while a join
    /// read the store are already in its reply).
    fn accepts(&mut self, frame: &Frame) -> bool {
        match frame.seq {
            Some(seq) if seq <= self.last_seq => false,
            Some(seq) => {
                self.last_seq = seq;
                true
            }
            None => true,
        }
    }
}

/// What the session hands its writer, in order.
enum Out {
    /// A frame to write.
    Frame(Message),
    /// Follow this channel from here on, instead of any other. (Boxed: every socket's queue
    /// preallocates slots of this enum's size, so it stays as small as a frame.)
    Follow(Box<Open>),
}

/// Why a session ends.
enum End {
    /// The peer left, or the socket failed.
    Gone,
    /// We close it, with this code and reason.
    Close(u16, &'static str),
}

/// A send waiting for its commit: its client id and the store's answer.
type InFlight = Pin<Box<dyn Future<Output = (Option<String>, Result<Appended, AppError>)> + Send>>;

struct Session {
    state: AppState,
    user: UserInfo,
    /// The open channel, if the writer falls behind on it (a per-channel one-shot, so that
    /// an idle socket pays nothing for it).
    lagged: Option<oneshot::Receiver<Box<Open>>>,
    outgoing: mpsc::Sender<Out>,
    /// Sends queued for storing, answered in the order they were sent.
    in_flight: FuturesOrdered<InFlight>,
    /// Sends refused by the rate limit in a row.
    strikes: u32,
}

async fn run(socket: WebSocket, state: AppState, user: UserInfo) {
    tracing::debug!(user = %user.id.0, "socket open");
    let (sink, mut incoming) = socket.split();
    let (outgoing, queue) = mpsc::channel(state.config.outgoing_queue.max(1));
    let (close, close_signal) = oneshot::channel();
    let writer = tokio::spawn(write_loop(
        sink,
        queue,
        close_signal,
        WriterLimits {
            timeout: state.config.write_timeout(),
            backlog: state.config.outgoing_queue.max(1),
        },
    ));
    let mut session = Session {
        state,
        user,
        lagged: None,
        outgoing,
        in_flight: FuturesOrdered::new(),
        strikes: 0,
    };
    let end = session.serve(&mut incoming).await;
    let Session { user, outgoing, .. } = session;
    if let End::Close(code, reason) = end {
        tracing::info!(user = %user.id.0, code, reason, "closing socket");
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        // After what is queued (the errors that explain it) if there is room; at once if the
        // queue is full, since that client is not reading anyway.
        if let Err(TrySendError::Full(Out::Frame(Message::Close(Some(frame))))) =
            outgoing.try_send(Out::Frame(Message::Close(Some(frame))))
        {
            let _ = close.send(frame);
        }
        drop(outgoing);
        // The closing handshake: read (and discard) until the client's own close, so that its
        // unread frames do not turn our close into a connection reset.
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(Ok(message)) = incoming.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    } else {
        // The client left or closed: with the queue closed, the writer answers its close.
        drop(outgoing);
        drop(close);
    }
    // The writer ends once it has sent what is queued (or the close frame), or times out.
    let _ = writer.await;
}

/// How long one write may take, and how far the socket may fall behind its channel.
struct WriterLimits {
    timeout: Duration,
    backlog: usize,
}

/// Drains the queue into the socket and writes the open channel's frames as they are
/// published; ends on a write failure or timeout, after sending a close frame when asked to
/// (or when the socket falls too far behind), or (completing the closing handshake) when the
/// queue closes. A channel it lagged behind on goes back to the session to be replayed.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Out>,
    close: oneshot::Receiver<CloseFrame>,
    limits: WriterLimits,
) {
    let timeout = limits.timeout;
    let mut close = Some(close);
    let mut open: Option<Box<Open>> = None;
    loop {
        tokio::select! {
            biased;
            frame = async { close.as_mut().expect("guarded").await }, if close.is_some() => {
                match frame {
                    Ok(frame) => {
                        let _ = tokio::time::timeout(timeout, sink.send(Message::Close(Some(frame)))).await;
                        return;
                    }
                    // No close to send after all: keep draining the queue.
                    Err(_) => close = None,
                }
            }
            next = queue.recv() => {
                let Some(out) = next else {
                    // The session ended: finish the closing handshake (answering a client's
                    // close, which the browser waits for) and flush.
                    let _ = tokio::time::timeout(timeout, sink.close()).await;
                    return;
                };
                // Write everything already queued, then flush once: one syscall for a burst.
                let mut closing = false;
                let written = tokio::time::timeout(timeout, async {
                    let (mut next, mut count) = (Some(out), 0);
                    while let Some(out) = next.take() {
                        match out {
                            Out::Follow(channel) => open = Some(channel),
                            Out::Frame(message) => {
                                closing = matches!(message, Message::Close(_));
                                sink.feed(message).await?;
                                count += 1;
                            }
                        }
                        if !closing && count < WRITE_BATCH {
                            next = queue.try_recv().ok();
                        }
                    }
                    sink.flush().await
                })
                .await;
                if closing || !matches!(written, Ok(Ok(()))) {
                    return;
                }
            }
            frame = next_channel_frame(&mut open) => {
                let Some(channel) = open.as_mut() else { continue };
                let first = match frame {
                    Ok(frame) => frame,
                    Err(RecvError::Lagged(_)) => {
                        // Fell behind the hub: the session replays from the store.
                        open.take().expect("open").give_back();
                        continue;
                    }
                    Err(RecvError::Closed) => {
                        open = None;
                        continue;
                    }
                };
                if channel.frames.len() >= limits.backlog {
                    let frame = CloseFrame {
                        code: CLOSE_SLOW_CONSUMER,
                        reason: TOO_SLOW.into(),
                    };
                    let _ = tokio::time::timeout(timeout, sink.send(Message::Close(Some(frame)))).await;
                    return;
                }
                // This frame and whatever else the channel has ready, then one flush.
                let mut fell_behind = false;
                let written = tokio::time::timeout(timeout, async {
                    let (mut next, mut count) = (Some(first), 0);
                    while let Some(frame) = next.take() {
                        if channel.accepts(&frame) {
                            sink.feed(Message::Text(frame.text)).await?;
                            count += 1;
                        }
                        if count < WRITE_BATCH {
                            next = match channel.frames.try_recv() {
                                Ok(frame) => Some(frame),
                                Err(TryRecvError::Lagged(_)) => {
                                    fell_behind = true;
                                    None
                                }
                                Err(_) => None,
                            };
                        }
                    }
                    sink.flush().await
                })
                .await;
                if !matches!(written, Ok(Ok(()))) {
                    return;
                }
                if fell_behind {
                    open.take().expect("open").give_back();
                }
            }
        }
    }
}

impl Session {
    async fn serve(&mut self, incoming: &mut futures_util::stream::SplitStream<WebSocket>) -> End {
        // Subscribe before saying hello, so nothing published meanwhile is missed.
        let mut lobby = self.state.chat.subscribe(&Topic::Lobby);
        let hello = ServerEvent::Hello {
            user: self.user.clone(),
        };
        if let Err(end) = self.send_event(&hello) {
            return end;
        }
        let ping_every = self.state.config.ping_interval();
        let mut ping = tokio::time::interval(ping_every);
        ping.tick().await;
        let mut last_heard = Instant::now();
        loop {
            let step = tokio::select! {
                // Stop reading while too many sends wait for their commit (backpressure).
                message = incoming.next(), if self.in_flight.len() < MAX_IN_FLIGHT => match message {
                    Some(Ok(message)) => {
                        last_heard = Instant::now();
                        self.on_message(message).await
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "socket read failed");
                        // axum does not expose tungstenite's error type; its text names it.
                        let text = e.to_string();
                        if text.contains("Space limit exceeded") || text.contains("too long") {
                            Err(End::Close(CLOSE_TOO_BIG, "frame too large"))
                        } else {
                            Err(End::Gone)
                        }
                    }
                    None => Err(End::Gone),
                },
                Some((client_id, result)) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.on_stored(client_id, result)
                }
                frame = lobby.recv() => match frame {
                    Ok(frame) => self.enqueue(Message::Text(frame.text)),
                    // Missed channel announcements: the client re-reads the list on reconnect.
                    Err(RecvError::Lagged(_)) => Ok(()),
                    Err(RecvError::Closed) => Err(End::Gone),
                },
                back = async { self.lagged.as_mut().expect("guarded").await }, if self.lagged.is_some() => {
                    self.lagged = None;
                    match back {
                        Ok(open) => self.replay(open).await,
                        // The writer moved on to another channel.
                        Err(_) => Ok(()),
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > 2 * ping_every {
                        tracing::debug!(user = %self.user.id.0, "peer silent, dropping");
                        Err(End::Gone)
                    } else {
                        self.enqueue(Message::Ping(Default::default()))
                    }
                }
                _ = self.outgoing.closed() => Err(End::Gone),
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Queues a frame for the writer; a full queue means the client is not keeping up.
    fn enqueue(&self, message: Message) -> Result<(), End> {
        self.enqueue_out(Out::Frame(message))
    }

    /// Has the writer follow `open` from here on; a lag hands it back here.
    fn follow(&mut self, mut open: Box<Open>) -> Result<(), End> {
        let (back, lagged) = oneshot::channel();
        open.give_back = Some(back);
        self.lagged = Some(lagged);
        self.enqueue_out(Out::Follow(open))
    }

    fn enqueue_out(&self, out: Out) -> Result<(), End> {
        match self.outgoing.try_send(out) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(End::Close(CLOSE_SLOW_CONSUMER, TOO_SLOW)),
            Err(TrySendError::Closed(_)) => Err(End::Gone),
        }
    }

    fn send_event(&self, event: &ServerEvent) -> Result<(), End> {
        self.enqueue(Message::Text(Frame::new(None, event).text))
    }

    fn send_error(&self, error: AppError, client_id: Option<String>) -> Result<(), End> {
        self.send_event(&ServerEvent::error(error, client_id))
    }

    async fn on_message(&mut self, message: Message) -> Result<(), End> {
        match message {
            Message::Text(text) => match decode_client_event(text.as_str()) {
                Ok(event) => self.on_event(event).await,
                Err(error) => self.send_error(error, None),
            },
            Message::Binary(_) => self.send_error(
                AppError::BadFrame {
                    detail: "binary frames are not supported; send JSON text".into(),
                },
                None,
            ),
            Message::Close(_) => Err(End::Gone),
            Message::Ping(_) | Message::Pong(_) => Ok(()),
        }
    }

    async fn on_event(&mut self, event: ClientEvent) -> Result<(), End> {
        let chat = self.state.chat.clone();
        match event {
            ClientEvent::Subscribe {
                channel,
                after_seq,
                oldest_seq,
            } => {
                // Subscribe first, then read the store: frames that arrive meanwhile are
                // skipped by sequence number instead of being lost.
                let frames = chat.subscribe(&Topic::Channel(channel_key(&channel)));
                match chat.catch_up(&channel, after_seq, oldest_seq).await {
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
                        let open = Open {
                            name: name.clone(),
                            frames,
                            last_seq,
                            give_back: None,
                        };
                        // The reply first, then the live frames after it.
                        self.send_event(&reply)?;
                        self.follow(Box::new(open))
                    }
                    Err(error) => self.send_error(error, None),
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
                // Queue it now (keeping this socket's order) and answer once it is committed,
                // reading further frames meanwhile.
                match chat
                    .submit_post(&user, &channel, &body, client_id.clone())
                    .await
                {
                    Ok(answer) => {
                        self.in_flight
                            .push_back(Box::pin(async move { (client_id, settle(answer).await) }));
                        Ok(())
                    }
                    Err(error) => self.on_stored(client_id, Err(error)),
                }
            }
            ClientEvent::Delete { message_id } => {
                match chat.delete(&self.user.id, &message_id).await {
                    Ok(_) => Ok(()),
                    Err(error) => self.send_error(error, None),
                }
            }
        }
    }

    /// Answers a send: an ack once stored, or its error. Sends refused by the rate limit
    /// many times in a row close the socket.
    fn on_stored(
        &mut self,
        client_id: Option<String>,
        result: Result<Appended, AppError>,
    ) -> Result<(), End> {
        match result {
            Ok(appended) => {
                self.strikes = 0;
                let message = appended.message;
                self.send_event(&ServerEvent::Ack {
                    client_id,
                    message_id: message.id,
                    channel: message.channel,
                    seq: message.seq,
                })
            }
            Err(error @ AppError::RateLimited { .. }) => {
                self.strikes += 1;
                if self.strikes >= self.state.config.flood_strikes.max(1) {
                    return Err(End::Close(CLOSE_FLOOD, "rate limit exceeded"));
                }
                self.send_error(error, client_id)
            }
            Err(error) => self.send_error(error, client_id),
        }
    }

    /// Replays from the store what the writer missed of a channel it fell behind on, then
    /// hands the channel back to it.
    async fn replay(&mut self, mut open: Box<Open>) -> Result<(), End> {
        tracing::info!(user = %self.user.id.0, channel = %open.name, "resync");
        match self
            .state
            .chat
            .catch_up(&open.name, Some(open.last_seq), None)
            .await
        {
            Ok(reply) => {
                if let ServerEvent::Subscribed { messages, .. } = &reply {
                    if let Some(last) = messages.last() {
                        open.last_seq = open.last_seq.max(last.seq);
                    }
                }
                self.send_event(&reply)?;
                self.follow(open)
            }
            // The gap stays unfilled, but the channel goes on live (as it did before the lag).
            Err(error) => {
                self.send_error(error, None)?;
                self.follow(open)
            }
        }
    }
}

/// The next frame of the open channel; never resolves while no channel is open.
async fn next_channel_frame(open: &mut Option<Box<Open>>) -> Result<Frame, RecvError> {
    match open {
        Some(open) => open.frames.recv().await,
        None => std::future::pending().await,
    }
}
