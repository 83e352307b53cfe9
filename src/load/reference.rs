//! The reference Flack is measured against: a bare axum + `tokio::sync::broadcast` relay with
//! no application logic. Every text frame a client sends on `GET /ws` goes, as it is, to every
//! connected client (the sender too); `GET /page` answers a fixed HTML page; `GET /` answers
//! 200. Its sockets use Flack's settings (4 KiB read buffer, 64 KiB frames), its broadcast
//! queue Flack's default capacity, and its writer batches as Flack's does (`write_loop` in
//! `src/server/ws.rs`: one frame, then whatever else is ready up to 64, one flush, 10 s per
//! write), so the difference in the figures is Flack's own work.

use crate::protocol::MAX_FRAME_BYTES;
use axum::body::Bytes;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use std::fmt::Write as _;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

/// Bytes read from a socket at a time, as in Flack's `src/server/ws.rs`.
const READ_BUFFER: usize = 4 * 1024;
/// Frames a client may fall behind before it skips some (Flack's default
/// `broadcast_capacity`; Flack would resend them from its store, the relay drops them).
const CAPACITY: usize = 1024;
/// Frames written before one flush, at most (Flack's `WRITE_BATCH`).
const WRITE_BATCH: usize = 64;
/// How long one batch may take to write (Flack's default `write_timeout_secs`).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Relay {
    frames: broadcast::Sender<Utf8Bytes>,
    page: Bytes,
}

/// The relay's routes, serving `page` at `/page`.
pub fn router(page: Bytes) -> Router {
    let relay = Relay {
        frames: broadcast::channel(CAPACITY).0,
        page,
    };
    Router::new()
        .route("/", get(|| async { "flack-load reference relay\n" }))
        .route("/ws", get(upgrade))
        .route("/page", get(page_handler))
        .with_state(relay)
}

/// Serves the relay on `listener` until the process ends, with the sockets' defaults
/// (Nagle's algorithm on; Flack's `main` turns it off, as [`serve_nodelay`] does).
pub async fn serve(listener: TcpListener, page: Bytes) -> std::io::Result<()> {
    axum::serve(listener, router(page)).await
}

/// Serves the relay with `TCP_NODELAY` on every accepted socket (Nagle's algorithm off), as
/// Flack does: the benchmark's reference.
pub async fn serve_nodelay(listener: TcpListener, page: Bytes) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(page)).await
}

async fn page_handler(State(relay): State<Relay>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        relay.page.clone(),
    )
        .into_response()
}

async fn upgrade(ws: WebSocketUpgrade, State(relay): State<Relay>) -> Response {
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| relay_socket(socket, relay.frames))
}

/// One task reads the client and broadcasts; another writes what is broadcast.
async fn relay_socket(socket: WebSocket, frames: broadcast::Sender<Utf8Bytes>) {
    let (sink, mut incoming) = socket.split();
    let writer = tokio::spawn(write_loop(sink, frames.subscribe()));
    while let Some(Ok(message)) = incoming.next().await {
        match message {
            Message::Text(text) => {
                let _ = frames.send(text);
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    writer.abort();
}

/// Writes every broadcast frame: one, then whatever else is ready (up to [`WRITE_BATCH`]),
/// then one flush, as Flack's writer does. A client that falls behind skips what it missed
/// (Flack would resend it from its store); a write that fails or times out ends the socket.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut subscription: broadcast::Receiver<Utf8Bytes>,
) {
    loop {
        let first = match subscription.recv().await {
            Ok(text) => text,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        let written = tokio::time::timeout(WRITE_TIMEOUT, async {
            let (mut next, mut count) = (Some(first), 0);
            while let Some(text) = next.take() {
                sink.feed(Message::Text(text)).await?;
                count += 1;
                if count < WRITE_BATCH {
                    // Empty, closed or behind (the next `recv` skips ahead): flush what we have.
                    next = subscription.try_recv().ok();
                }
            }
            sink.flush().await
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            return;
        }
    }
}

/// A page the size and shape of a Flack channel page with 100 messages (about 25 KB), for
/// when no real one is given.
pub fn generated_page() -> Bytes {
    let mut page = String::from(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"/>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\
         <link rel=\"stylesheet\" href=\"/pkg/flack.css\"/><title>#history · Flack</title>\
         </head><body><main><section class=\"channel\"><h1>#history</h1>\
         <ol role=\"log\" aria-label=\"Messages in #history\">",
    );
    for i in 1..=100 {
        let _ = write!(
            page,
            "<li class=\"message\" data-seq=\"{i}\"><div class=\"meta\">\
             <span class=\"author\">load-user-{a}</span> <span class=\"tag\">#{a:04x}</span> \
             <time datetime=\"2026-11-22T10:00:{s:02}.000Z\">10:00</time></div>\
             <p class=\"body\">history message {i} of 100 lorem ipsum dolor sit amet</p></li>",
            a = i % 4,
            s = i % 60,
        );
    }
    page.push_str("</ol></section></main></body></html>");
    Bytes::from(page)
}
