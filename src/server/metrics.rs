//! What an operator's monitoring reads, outside the app's own gates (no identity, no host
//! check: a load balancer probes by address): `/healthz` (the process answers), `/readyz`
//! (its store answers too: a node whose database is gone takes no traffic), and `/metrics`
//! (Prometheus text: connections and sockets open, messages stored, write batches and the
//! time they took, sockets that fell behind and what became of them). Restrict `/metrics` at
//! the proxy if its figures are nobody else's business.

use super::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The write pipeline's counts, kept by the pipeline as it goes.
#[derive(Default)]
pub struct PipelineStats {
    /// Batches of posts stored (one transaction each).
    pub batches: AtomicU64,
    /// Posts in them.
    pub posts: AtomicU64,
    /// Other writes (edits, reactions, membership…), one transaction each.
    pub jobs: AtomicU64,
    /// Time spent storing both, microseconds.
    pub store_micros: AtomicU64,
}

impl PipelineStats {
    /// Counts a batch of `posts` stored in `took`.
    pub fn batch(&self, posts: usize, took: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.posts.fetch_add(posts as u64, Ordering::Relaxed);
        self.store_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Counts another write, stored in `took`.
    pub fn job(&self, took: Duration) {
        self.jobs.fetch_add(1, Ordering::Relaxed);
        self.store_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

/// The three routes, with the state they read.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    // The cheapest read that reaches the database (a token that is never issued).
    match state.chat.store().token_revoked("readiness-probe").await {
        Ok(_) => (StatusCode::OK, "ready\n"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the store does not answer\n",
            )
        }
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let text = render(&state);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// The Prometheus text exposition of everything above.
pub fn render(state: &AppState) -> String {
    let pipeline = state.chat.pipeline_stats();
    let sockets = &state.sockets.counters;
    let load = |n: &AtomicU64| n.load(Ordering::Relaxed).to_string();
    let seconds = load_seconds(&pipeline.store_micros);
    let hub = state.chat.hub().stats();
    let rows: [(&str, &str, &str, String); 18] = [
        (
            "flack_connections_open",
            "gauge",
            "TCP connections open.",
            state.connections.open().to_string(),
        ),
        (
            "flack_sockets_open",
            "gauge",
            "WebSockets open.",
            state.sockets.open().to_string(),
        ),
        (
            "flack_socket_queued_bytes",
            "gauge",
            "Bytes queued for sockets, not yet written.",
            state.sockets.queued_bytes_now().to_string(),
        ),
        (
            "flack_deliveries_total",
            "counter",
            "Frames handed to this node's sockets (one per socket reached).",
            hub.deliveries.to_string(),
        ),
        (
            "flack_bus_frames_relayed_total",
            "counter",
            "Frames received from other nodes over the bus.",
            hub.relayed.to_string(),
        ),
        (
            "flack_bus_gaps_healed_total",
            "counter",
            "Gaps in what the bus delivered, filled from the store.",
            hub.gaps_healed.to_string(),
        ),
        (
            "flack_bus_publish_errors_total",
            "counter",
            "Publishes the bus refused (other nodes heal them from the store).",
            hub.publish_errors.to_string(),
        ),
        (
            "flack_bus_reconnects_total",
            "counter",
            "Times the connection to the bus was lost and made again.",
            hub.reconnects.to_string(),
        ),
        (
            "flack_post_batches_total",
            "counter",
            "Batches of posts stored, one transaction each.",
            load(&pipeline.batches),
        ),
        (
            "flack_posts_total",
            "counter",
            "Posts stored (messages and replies).",
            load(&pipeline.posts),
        ),
        (
            "flack_other_writes_total",
            "counter",
            "Edits, deletions, reactions, joins, leaves, invites, read positions stored.",
            load(&pipeline.jobs),
        ),
        (
            "flack_store_write_seconds_total",
            "counter",
            "Time the write pipeline spent storing.",
            seconds,
        ),
        (
            "flack_sockets_lagged_total",
            "counter",
            "Times a socket's writer fell behind its conversation (a gap, replayed).",
            load(&sockets.lagged),
        ),
        (
            "flack_gaps_replayed_total",
            "counter",
            "Gaps filled from the store.",
            load(&sockets.replays),
        ),
        (
            "flack_replay_pages_total",
            "counter",
            "Pages sent to sockets too far behind for one catch-up.",
            load(&sockets.replay_pages),
        ),
        (
            "flack_socket_resets_total",
            "counter",
            "Sockets reset to the recent window.",
            load(&sockets.resets),
        ),
        (
            "flack_slow_sockets_cut_total",
            "counter",
            "Sockets cut off as too slow (4008).",
            load(&sockets.slow_cutoffs),
        ),
        (
            "flack_flooding_sockets_closed_total",
            "counter",
            "Sockets closed for flooding (4029).",
            load(&sockets.flood_closes),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in rows {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    out
}

fn load_seconds(micros: &AtomicU64) -> String {
    format!("{:.6}", micros.load(Ordering::Relaxed) as f64 / 1e6)
}
