//! The WebSocket at `/ws`. Each socket has two tasks: the session reads the client's
//! [`ClientEvent`]s and puts its answers in an outgoing queue bounded in frames and bytes;
//! the writer drains that queue into the socket and also follows the open channel, taking its
//! frames straight from the hub, so a delivery wakes one task, not two. A client that stops
//! reading lets its queue or its channel backlog fill and is cut off (close code 4008) instead
//! of holding memory; it catches up when it reconnects. A client that keeps sending past its
//! rate limit is closed (4029).

use super::budgets::{budget_key, FrameBudget};
use super::chat::{settle, Chat};
use super::client_addr::ClientIp;
use super::hub::{Frame, StreamNote, Subscription, Topic, View};
use super::identity::{CurrentUser, TokenHash};
use super::limits::SocketSlot;
use super::serve::{Admitted, ConnectionSlot};
use super::sockets::Registered;
use super::state::AppState;
use super::store::Appended;
use crate::error::AppError;
use crate::protocol::{
    channel_key, decode_client_event, ClientEvent, ConversationId, ConversationInfo, ServerEvent,
    UserInfo, CLOSE_FLOOD, CLOSE_SIGNED_OUT, CLOSE_SLOW_CONSUMER, MAX_FRAME_BYTES,
};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::stream::{FuturesOrdered, SplitSink};
use futures_util::{SinkExt, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
/// Messages in one page of a replay (a socket far behind its channel).
const REPLAY_PAGE: usize = 500;
/// Frames written before one flush.
const WRITE_BATCH: usize = 64;
/// Bytes written before one flush: the socket library buffers whatever it is fed, so a
/// client that does not read must stop the writer here, not after 64 large frames.
const FLUSH_BYTES: usize = 256 * 1024;
/// The reason sent with [`CLOSE_SLOW_CONSUMER`], by the session (its queue) or the writer
/// (its channel backlog).
const TOO_SLOW: &str = "too slow to keep up";
/// How long a closing socket waits for the client's close reply.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Frames a closing socket reads (and drops) at most while it waits for that reply.
const CLOSE_DISCARD: usize = 256;
/// How long a closing socket waits for sends already committing, to acknowledge them.
const ACK_GRACE: Duration = Duration::from_secs(2);

/// What a socket holds on to for as long as it lives: its places under the connection caps
/// and its registration (which "Sign out" uses to close it).
struct Holds {
    _connection: Option<Arc<Admitted>>,
    _socket: SocketSlot,
    registered: Registered,
    /// The hash of the socket's token (a sign-out on another node names it).
    token_hash: Arc<str>,
}

/// `GET /ws`: checks the Origin, the identity and the per-client socket cap, then upgrades.
#[allow(clippy::too_many_arguments)]
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    headers: HeaderMap,
    user: Option<Extension<CurrentUser>>,
    token: Option<Extension<TokenHash>>,
    client: Option<Extension<ClientIp>>,
    slot: Option<Extension<ConnectionSlot>>,
) -> Response {
    if !state.site.origin_allowed(&headers) {
        return AppError::ForeignOrigin.into_response();
    }
    let (Some(Extension(CurrentUser(user))), Some(Extension(TokenHash(token)))) = (user, token)
    else {
        return AppError::Unauthenticated.into_response();
    };
    let ip = client.map_or(std::net::IpAddr::from([127, 0, 0, 1]), |c| c.0 .0);
    let Some(socket_slot) = state.socket_slots.admit(budget_key(ip)).await else {
        return AppError::RateLimited {
            retry_after_ms: 1000,
        }
        .into_response();
    };
    let holds = Holds {
        _connection: slot.map(|s| s.0 .0),
        _socket: socket_slot,
        registered: state.sockets.register(&token),
        token_hash: Arc::from(token.as_str()),
    };
    // The socket library's own write buffer is bounded too: past it a write fails and the
    // socket is closed, so queue, waiting window and buffer together stay bounded.
    let max_buffered = state.config.outgoing_queue_bytes.max(MAX_FRAME_BYTES) + FLUSH_BYTES;
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .read_buffer_size(READ_BUFFER)
        .max_write_buffer_size(max_buffered)
        .on_upgrade(move |socket| run(socket, state, user, ip, holds))
}

/// Bytes queued for one socket, counted here and in the server-wide total.
#[derive(Clone)]
struct Queued {
    mine: Arc<AtomicUsize>,
    all: Arc<AtomicUsize>,
}

impl Queued {
    fn add(&self, bytes: usize) -> usize {
        self.all.fetch_add(bytes, Ordering::Relaxed);
        self.mine.fetch_add(bytes, Ordering::Relaxed) + bytes
    }

    fn sub(&self, bytes: usize) {
        self.all.fetch_sub(bytes, Ordering::Relaxed);
        self.mine.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        // The last handle of a socket gives back whatever was never written.
        if Arc::strong_count(&self.mine) == 1 {
            self.all
                .fetch_sub(self.mine.swap(0, Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

/// A channel's window waiting to be written, with the channel to follow after it. Only the
/// newest waits: a socket that subscribes again before reading replaces it, so a client that
/// never reads holds one window, not one per subscribe.
struct PendingWindow {
    reply: Message,
    bytes: usize,
    open: Box<Open>,
}

type WindowSlot = Arc<Mutex<Option<PendingWindow>>>;

fn text_len(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        _ => 0,
    }
}

/// The conversation a socket has open, followed by its writer.
struct Open {
    info: ConversationInfo,
    frames: Subscription,
    /// The last change number this socket has been sent: every change up to it.
    last_change: u64,
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

    /// What to do with a frame of this conversation: changes it was sent already (frames
    /// published while a join read the store are in its reply) are skipped, the next one (or
    /// a catch-up that starts at or before it) is written, and one past a missing number
    /// means a gap, replayed from the store.
    fn accepts(&mut self, frame: &Frame) -> Accept {
        match frame.change {
            Some(change) if change <= self.last_change => Accept::Skip,
            Some(change) if frame.first <= self.last_change + 1 => {
                self.last_change = change;
                Accept::Write
            }
            Some(_) => Accept::Gap,
            None => Accept::Write,
        }
    }
}

/// See [`Open::accepts`].
#[derive(PartialEq, Eq)]
enum Accept {
    Write,
    Skip,
    Gap,
}

/// What the session hands its writer, in order.
enum Out {
    /// A frame to write.
    Frame(Message),
    /// Write the window waiting in the socket's [`WindowSlot`] (if it is still there: a
    /// later one may have replaced it and been written already) and follow its channel from
    /// here on, instead of any other.
    Window,
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
    /// The user, kept current by their stream (a rename on any node arrives as a note).
    user: UserInfo,
    /// The client's address (budgets).
    ip: std::net::IpAddr,
    queued: Queued,
    window: WindowSlot,
    budget: FrameBudget,
    /// The open channel, if the writer falls behind on it (a per-channel one-shot, so that
    /// an idle socket pays nothing for it).
    lagged: Option<oneshot::Receiver<Box<Open>>>,
    outgoing: mpsc::Sender<Out>,
    /// Sends queued for storing, answered in the order they were sent.
    in_flight: FuturesOrdered<InFlight>,
    /// Frames refused (over budget, rate limited, malformed) in a row.
    strikes: u32,
    /// The client said its tab is hidden.
    away: bool,
    /// The open channel's key and id (a `send` may name its channel).
    named: Option<(String, ConversationId)>,
    /// What the hub knows of the conversation this socket has open (the writer says which
    /// it follows; the session clears it before opening another).
    view: Arc<View>,
    /// The user's own stream (activity elsewhere, joins, read positions), followed here
    /// rather than by the writer, whose every wake (a delivery of the open conversation)
    /// would poll it too. One future lives across turns: a fresh `recv` each turn would
    /// queue and unqueue a waiter under the topic's lock.
    own: Option<OwnFrame>,
    /// The hash of this socket's token.
    token_hash: Arc<str>,
}

async fn run(
    socket: WebSocket,
    state: AppState,
    user: UserInfo,
    ip: std::net::IpAddr,
    holds: Holds,
) {
    tracing::debug!(user = %user.id.0, "socket open");
    let (sink, mut incoming) = socket.split();
    let (outgoing, queue) = mpsc::channel(state.config.outgoing_queue.max(1));
    let (close, close_signal) = oneshot::channel();
    let queued = Queued {
        mine: Arc::default(),
        all: state.sockets.queued_bytes(),
    };
    let window: WindowSlot = Arc::default();
    // The user's own stream, followed from the start (activity, joins, read positions).
    let own = match state
        .chat
        .hub()
        .subscribe(&Topic::User(user.id.clone()))
        .await
    {
        Ok(own) => own,
        Err(e) => {
            tracing::warn!(error = %e, "no stream for a new socket");
            return;
        }
    };
    let view = Arc::new(state.chat.hub().views().watch(&user.id));
    Box::pin(state.chat.socket_opened(&user.id)).await;
    let writer = tokio::spawn(write_loop(
        sink,
        queue,
        close_signal,
        Writer {
            timeout: state.config.write_timeout(),
            backlog: state.config.outgoing_queue.max(1),
            queued: queued.clone(),
            window: window.clone(),
            view: view.clone(),
        },
    ));
    let budget = FrameBudget::new(state.config.frame_rate_per_sec, state.config.frame_burst);
    let mut session = Session {
        state,
        user,
        ip,
        queued,
        window,
        budget,
        lagged: None,
        outgoing,
        in_flight: FuturesOrdered::new(),
        strikes: 0,
        away: false,
        named: None,
        view,
        own: Some(own_frame(own)),
        token_hash: holds.token_hash.clone(),
    };
    let end = tokio::select! {
        end = session.serve(&mut incoming) => end,
        _ = holds.registered.revoked.notified() => End::Close(CLOSE_SIGNED_OUT, "signed out"),
        // The node is shutting down (1012): sends already committing are still acknowledged
        // below, and the client reconnects at once, to another node.
        (code, reason) = holds.registered.closing() => End::Close(code, reason),
    };
    // Boxed, as the handlers are: only a closing socket needs their state.
    let end = Box::pin(session.settle_in_flight(end)).await;
    Box::pin(
        session
            .state
            .chat
            .socket_closed(&session.user.id, session.away),
    )
    .await;
    let state_counters = session.state.sockets.counters.clone();
    let Session { user, outgoing, .. } = session;
    if let End::Close(code, reason) = end {
        tracing::info!(user = %user.id.0, code, reason, "closing socket");
        let counters = &state_counters;
        match code {
            CLOSE_SLOW_CONSUMER => counters.slow_cutoffs.fetch_add(1, Ordering::Relaxed),
            CLOSE_FLOOD => counters.flood_closes.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
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
        // Bounded in frames too: a flooding client must not keep the server parsing for the
        // whole grace period.
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            let mut left = CLOSE_DISCARD;
            while let Some(Ok(message)) = incoming.next().await {
                left -= 1;
                if matches!(message, Message::Close(_)) || left == 0 {
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

/// What the writer needs besides the socket: how long one write may take, how far the
/// socket may fall behind its channel, the byte count it gives back as it writes, and where
/// windows wait.
struct Writer {
    timeout: Duration,
    backlog: usize,
    queued: Queued,
    window: WindowSlot,
    view: Arc<View>,
}

/// Drains the queue into the socket and writes the open channel's frames as they are
/// published; ends on a write failure or timeout, after sending a close frame when asked to
/// (or when the socket falls too far behind), or (completing the closing handshake) when the
/// queue closes. A channel it lagged behind on goes back to the session to be replayed.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Out>,
    close: oneshot::Receiver<CloseFrame>,
    limits: Writer,
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
                    let (mut next, mut count, mut fed) = (Some(out), 0, 0);
                    while let Some(out) = next.take() {
                        let (message, bytes) = match out {
                            Out::Window => {
                                let waiting = limits.window.lock().expect("window lock").take();
                                match waiting {
                                    Some(PendingWindow { reply, bytes, open: channel }) => {
                                        let id = channel.info.id;
                                        if let Some(left) = open.replace(channel) {
                                            // Changes of the conversation left, never read: the
                                            // note of their activity may have been skipped
                                            // while it was open here, so the sidebar reloads.
                                            if !left.frames.is_empty() {
                                                let refresh = Frame::new(None, &ServerEvent::Refresh);
                                                sink.feed(Message::Text(refresh.text)).await?;
                                            }
                                        }
                                        limits.view.set(Some(id));
                                        (Some(reply), bytes)
                                    }
                                    None => (None, 0),
                                }
                            }
                            Out::Frame(message) => {
                                closing = matches!(message, Message::Close(_));
                                let bytes = text_len(&message);
                                (Some(message), bytes)
                            }
                        };
                        if let Some(message) = message {
                            if fed >= FLUSH_BYTES {
                                sink.flush().await?;
                                fed = 0;
                            }
                            sink.feed(message).await?;
                            limits.queued.sub(bytes);
                            fed += bytes;
                            count += 1;
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
                        limits.view.set(None);
                        open.take().expect("open").give_back();
                        continue;
                    }
                    Err(RecvError::Closed) => {
                        limits.view.set(None);
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
                // This frame and whatever else the conversation has ready, then one flush.
                // Signals (typing, presence) are dropped first when the socket is behind.
                let busy = channel.frames.len() > limits.backlog / 4;
                let mut fell_behind = false;
                let written = tokio::time::timeout(timeout, async {
                    let (mut next, mut count, mut fed) = (Some(first), 0, 0);
                    while let Some(frame) = next.take() {
                        let accept = channel.accepts(&frame);
                        if accept == Accept::Gap {
                            fell_behind = true;
                            break;
                        }
                        if accept == Accept::Write && !(busy && frame.change.is_none()) {
                            if fed >= FLUSH_BYTES {
                                sink.flush().await?;
                                fed = 0;
                            }
                            fed += frame.text.len();
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
                    limits.view.set(None);
                    open.take().expect("open").give_back();
                }
            }
        }
    }
}

impl Session {
    async fn serve(&mut self, incoming: &mut futures_util::stream::SplitStream<WebSocket>) -> End {
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
                        // Boxed: a handler's future (a subscribe reads the store) would
                        // otherwise be part of every idle socket's memory.
                        Box::pin(self.on_message(message)).await
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
                back = async { self.lagged.as_mut().expect("guarded").await }, if self.lagged.is_some() => {
                    self.lagged = None;
                    match back {
                        Ok(open) => Box::pin(self.replay(open)).await,
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
                (frame, own) = async { self.own.as_mut().expect("guarded").await }, if self.own.is_some() => {
                self.own = Some(own_frame(own));
                self.on_own(frame)
            }
                _ = self.outgoing.closed() => Err(End::Gone),
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Passes on a frame of the user's own stream, unless it is about the conversation this
    /// socket has open (which it hears of there); a lag there reloads the sidebar.
    fn on_own(&mut self, frame: Result<Frame, RecvError>) -> Result<(), End> {
        match frame {
            Ok(Frame {
                note: Some(note), ..
            }) => match note.as_ref() {
                StreamNote::SignedOut(hash) if **hash == *self.token_hash => {
                    Err(End::Close(CLOSE_SIGNED_OUT, "signed out"))
                }
                StreamNote::SignedOut(_) => Ok(()),
                StreamNote::Renamed(user) => {
                    if user.id == self.user.id {
                        self.user = user.clone();
                    }
                    Ok(())
                }
            },
            Ok(frame) if frame.about.is_some() && frame.about == self.view.get() => Ok(()),
            Ok(frame) => self.enqueue(Message::Text(frame.text)),
            Err(RecvError::Lagged(_)) => self.send_event(&ServerEvent::Refresh),
            Err(RecvError::Closed) => {
                self.own = None;
                Ok(())
            }
        }
    }

    /// Queues a frame for the writer; a full queue (in frames or bytes) means the client is
    /// not keeping up.
    fn enqueue(&self, message: Message) -> Result<(), End> {
        let bytes = text_len(&message);
        if self.queued.add(bytes) > self.state.config.outgoing_queue_bytes {
            self.queued.sub(bytes);
            return Err(End::Close(CLOSE_SLOW_CONSUMER, TOO_SLOW));
        }
        self.enqueue_out(Out::Frame(message))
            .inspect_err(|_| self.queued.sub(bytes))
    }

    /// Has the writer write `reply` (a channel's window) and follow `open` from then on; a
    /// lag hands it back here. An earlier window not written yet is dropped for this one.
    fn follow(&mut self, reply: Message, mut open: Box<Open>) -> Result<(), End> {
        let (back, lagged) = oneshot::channel();
        open.give_back = Some(back);
        self.lagged = Some(lagged);
        let bytes = text_len(&reply);
        // Counted before the writer can take it (it subtracts what it writes): counted after,
        // a window written at once would take the count below zero for a moment.
        let mut queued = self.queued.add(bytes);
        let replaced = self
            .window
            .lock()
            .expect("window lock")
            .replace(PendingWindow { reply, bytes, open });
        match replaced {
            // The writer has not taken the earlier one: its marker is still queued.
            Some(earlier) => {
                self.queued.sub(earlier.bytes);
                queued = queued.saturating_sub(earlier.bytes);
            }
            None => self.enqueue_out(Out::Window)?,
        }
        if queued > self.state.config.outgoing_queue_bytes {
            return Err(End::Close(CLOSE_SLOW_CONSUMER, TOO_SLOW));
        }
        Ok(())
    }

    /// Counts a refused frame; too many in a row close the socket.
    fn strike(&mut self, error: AppError, client_id: Option<String>) -> Result<(), End> {
        self.strikes += 1;
        if self.strikes >= self.state.config.flood_strikes.max(1) {
            return Err(End::Close(CLOSE_FLOOD, "rate limit exceeded"));
        }
        self.send_error(error, client_id)
    }

    /// Before a socket we close goes: the sends already committing are acknowledged (or
    /// their errors sent), so that the client knows what was stored.
    async fn settle_in_flight(&mut self, end: End) -> End {
        if !matches!(end, End::Close(..)) {
            return end;
        }
        let _ = tokio::time::timeout(ACK_GRACE, async {
            while let Some((client_id, result)) = self.in_flight.next().await {
                let event = match result {
                    Ok(appended) => ServerEvent::Ack {
                        client_id,
                        message_id: appended.message.id,
                        conversation: appended.message.conversation,
                        seq: appended.message.seq,
                    },
                    Err(error) => ServerEvent::error(error, client_id),
                };
                if self.send_event(&event).is_err() {
                    break;
                }
            }
        })
        .await;
        end
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
        if matches!(message, Message::Text(_) | Message::Binary(_)) {
            if let Err(error) = self.budget.spend() {
                return self.strike(error, None);
            }
        }
        match message {
            Message::Text(text) => match decode_client_event(text.as_str()) {
                Ok(event) => self.on_event(event).await,
                Err(error) => self.strike(error, None),
            },
            Message::Binary(_) => self.strike(
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
                conversation,
                channel,
                after_change,
            } => {
                // Activity about the conversation open now must reach this socket again
                // from here on: it is about to leave it (or to open it anew).
                self.view.set(None);
                // Subscribe first, then read the store: frames that arrive meanwhile are
                // skipped by change number instead of being lost.
                let opened = match chat.spend_open(&self.user).await {
                    Ok(()) => {
                        chat.open(&self.user, conversation, channel.as_deref())
                            .await
                    }
                    Err(error) => Err(error),
                };
                let (readable, frames) = match opened {
                    Ok(opened) => opened,
                    Err(error) => return self.strike(error, None),
                };
                self.strikes = 0;
                let info = readable.info;
                if let Some(name) = &info.name {
                    self.named = Some((channel_key(name), info.id));
                }
                let answer = chat.join_answer(&info, after_change).await;
                let answer = match answer {
                    Ok(joined) => chat
                        .budgets()
                        .join_bytes(self.ip, joined.text.len())
                        .await
                        .map(|()| joined),
                    Err(error) => Err(error),
                };
                match answer {
                    Err(error @ AppError::RateLimited { .. }) => self.strike(error, None),
                    Ok(joined) => {
                        let open = Open {
                            info,
                            frames,
                            last_change: joined.last_change,
                            give_back: None,
                        };
                        // The reply first, then the live frames after it.
                        self.follow(Message::Text(joined.text), Box::new(open))
                    }
                    Err(error) => self.send_error(error, None),
                }
            }
            ClientEvent::Send {
                conversation,
                channel,
                body,
                client_id,
            } => {
                let user = self.user.clone();
                let conversation = match (conversation, channel) {
                    (Some(id), _) => id,
                    (None, Some(name)) => match self.channel_id(&name).await {
                        Ok(id) => id,
                        Err(error) => return self.on_stored(client_id, Err(error)),
                    },
                    (None, None) => {
                        let error = AppError::BadFrame {
                            detail: "send needs a conversation or a channel".into(),
                        };
                        return self.strike(error, client_id);
                    }
                };
                // Queue it now (keeping this socket's order) and answer once it is committed,
                // reading further frames meanwhile.
                match chat
                    .submit_post(&user, conversation, &body, client_id.clone())
                    .await
                {
                    Ok(answer) => {
                        // Accepted: the run of refusals is broken (a late ack is not).
                        self.strikes = 0;
                        self.in_flight
                            .push_back(Box::pin(async move { (client_id, settle(answer).await) }));
                        Ok(())
                    }
                    Err(error) => self.on_stored(client_id, Err(error)),
                }
            }
            ClientEvent::Reply {
                message_id,
                body,
                client_id,
                also_to_channel,
            } => {
                let user = self.user.clone();
                let result = chat
                    .reply(
                        &user,
                        &message_id,
                        &body,
                        client_id.clone(),
                        also_to_channel,
                    )
                    .await;
                self.on_stored(client_id, result)
            }
            ClientEvent::Edit { message_id, body } => {
                let user = self.user.clone();
                let result = chat.edit(&user, &message_id, &body).await;
                self.answered(result.map(|_| ()))
            }
            ClientEvent::Delete { message_id } => {
                let result = chat.delete(&self.user, &message_id).await;
                self.answered(result.map(|_| ()))
            }
            ClientEvent::React {
                message_id,
                emoji,
                on,
            } => {
                let user = self.user.clone();
                let result = chat.react(&user, &message_id, &emoji, on).await;
                self.answered(result.map(|_| ()))
            }
            ClientEvent::Read { conversation, seq } => {
                let result = chat.mark_read(&self.user, conversation, seq).await;
                self.answered(result)
            }
            ClientEvent::Typing { conversation } => {
                let user = self.user.clone();
                let result = chat.typing(&user, conversation).await;
                self.answered(result)
            }
            ClientEvent::Presence { away } => {
                if away != self.away {
                    self.away = away;
                    chat.socket_away(&self.user.id, away).await;
                }
                Ok(())
            }
        }
    }

    /// The id of a channel named in a `send`: the open one's without asking the store.
    async fn channel_id(&mut self, name: &str) -> Result<ConversationId, AppError> {
        let key = channel_key(name);
        if let Some((open, id)) = &self.named {
            if open == &key {
                return Ok(*id);
            }
        }
        let readable = self.state.chat.channel_named(&self.user.id, name).await?;
        Ok(readable.info.id)
    }

    /// Answers a request that has no answer of its own but its error, if any: rate-limit
    /// refusals are strikes.
    fn answered(&mut self, result: Result<(), AppError>) -> Result<(), End> {
        match result {
            Ok(()) => {
                self.strikes = 0;
                Ok(())
            }
            Err(error @ AppError::RateLimited { .. }) => self.strike(error, None),
            Err(error) => self.send_error(error, None),
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
                let message = appended.message;
                self.send_event(&ServerEvent::Ack {
                    client_id,
                    message_id: message.id,
                    conversation: message.conversation,
                    seq: message.seq,
                })
            }
            Err(error @ AppError::RateLimited { .. }) => self.strike(error, client_id),
            Err(error) => self.send_error(error, client_id),
        }
    }

    /// Replays from the store what the writer missed of a conversation it fell behind on
    /// (or saw a gap in), a page at a time at the reader's pace, then hands it back.
    async fn replay(&mut self, mut open: Box<Open>) -> Result<(), End> {
        let counters = self.state.sockets.counters.clone();
        counters.lagged.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(user = %self.user.id.0, conversation = %open.info.id, "resync");
        let chat = self.state.chat.clone();
        loop {
            let changes = match chat
                .changes(open.info.id, open.last_change, REPLAY_PAGE)
                .await
            {
                Ok(changes) => changes,
                // The gap stays unfilled for now, but the conversation goes on live.
                Err(error) => {
                    self.send_error(error, None)?;
                    let reply = Chat::caught_up(&open.info, Default::default());
                    return self.follow(Message::Text(Frame::new(None, &reply).text), open);
                }
            };
            let Some(mut changes) = changes else {
                // A number the conversation never gave out: start again from its window.
                counters.resets.fetch_add(1, Ordering::Relaxed);
                let reply = match chat.fresh_join(&open.info).await {
                    Ok(reply) => reply,
                    Err(error) => return self.send_error(error, None),
                };
                if let ServerEvent::Subscribed { last_change, .. } = &reply {
                    open.last_change = *last_change;
                }
                return self.follow(Message::Text(Frame::new(None, &reply).text), open);
            };
            if !changes.more {
                counters.replays.fetch_add(1, Ordering::Relaxed);
                open.last_change = open.last_change.max(changes.last_change);
                let reply = Chat::caught_up(&open.info, changes);
                return self.follow(Message::Text(Frame::new(None, &reply).text), open);
            }
            counters.replay_pages.fetch_add(1, Ordering::Relaxed);
            let page = std::mem::take(&mut changes.messages);
            let (text, last_change) = self.page_frame(&open.info, page);
            open.last_change = last_change;
            self.enqueue(Message::Text(text))?;
            let low = self.state.config.outgoing_queue_bytes / 4;
            let timeout = self.state.config.write_timeout();
            drained(self.queued.mine.clone(), low, timeout).await?;
        }
    }
}

impl Session {
    /// A replay page as a frame that fits in half the socket's queue (fewer messages if need
    /// be, at least one), and the change number it brings the client to.
    fn page_frame(
        &self,
        info: &ConversationInfo,
        mut page: Vec<crate::protocol::Message>,
    ) -> (Utf8Bytes, u64) {
        let fits = self.state.config.outgoing_queue_bytes / 2;
        loop {
            let last_change = page.last().map_or(0, |m| m.change);
            let event = ServerEvent::Subscribed {
                conversation: info.clone(),
                messages: std::mem::take(&mut page),
                last_change,
                reset: false,
                has_older: false,
                members: None,
            };
            let text = Frame::new(None, &event).text;
            let ServerEvent::Subscribed { messages, .. } = event else {
                unreachable!("built above")
            };
            if text.len() <= fits || messages.len() <= 1 {
                return (text, last_change);
            }
            page = messages;
            page.truncate(page.len() / 2);
        }
    }
}

/// Waits until a socket's writer has sent all but `low` bytes of its queue (a replay page),
/// or closes a socket that takes longer than one write may.
async fn drained(queued: Arc<AtomicUsize>, low: usize, timeout: Duration) -> Result<(), End> {
    let deadline = Instant::now() + timeout;
    while queued.load(Ordering::Relaxed) > low {
        if Instant::now() > deadline {
            return Err(End::Close(CLOSE_SLOW_CONSUMER, TOO_SLOW));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// The next frame of the user's own stream, and the stream to await the one after.
type OwnFrame = Pin<Box<dyn Future<Output = (Result<Frame, RecvError>, Subscription)> + Send>>;

fn own_frame(mut own: Subscription) -> OwnFrame {
    Box::pin(async move { (own.recv().await, own) })
}

/// The next frame of the open channel; never resolves while no channel is open.
async fn next_channel_frame(open: &mut Option<Box<Open>>) -> Result<Frame, RecvError> {
    match open {
        Some(open) => open.frames.recv().await,
        None => std::future::pending().await,
    }
}
