//! Idle connections: ramp up to `count` WebSockets (on Flack, logged in as a handful of users
//! and subscribed to a channel), hold them, check each still answers a ping, and read what
//! they cost the server in resident memory.
//!
//! Every socket needs a file descriptor here and one in the server: raise `ulimit -n` before
//! starting both (the crate has no `libc` dependency to raise `RLIMIT_NOFILE` itself).

use super::client::{self, Ws};
use super::{add_latencies, open_files_limit, rss_kib, Better, Report, Result, Run};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as Frame;

/// What a connections run does.
#[derive(Debug, Clone)]
pub struct ConnectionsParams {
    /// Sockets to open.
    pub count: usize,
    /// Sockets opened per batch: each batch is opened whole before the next starts.
    pub batch: usize,
    /// Handshakes in flight at once within a batch.
    pub concurrency: usize,
    /// How long all sockets are held before they are checked.
    pub hold: Duration,
    /// Flack users the sockets are spread over.
    pub users: usize,
}

impl ConnectionsParams {
    /// `count` sockets in batches of 1,000, 128 handshakes at once, held 3 s, 8 users.
    pub fn new(count: usize) -> Self {
        ConnectionsParams {
            count,
            batch: 1000,
            concurrency: 128,
            hold: Duration::from_secs(3),
            users: 8,
        }
    }

    /// `n=15000`.
    pub fn case(&self) -> String {
        format!("n={}", self.count)
    }
}

/// What a connections run measured.
#[derive(Debug, Clone)]
pub struct ConnectionsOutcome {
    /// Sockets asked for.
    pub requested: usize,
    /// Sockets still open and answering after the hold.
    pub held: usize,
    /// Sockets that failed to open, or were open but gone at the check.
    pub failed: usize,
    /// The server's resident memory before the first socket, KiB.
    pub rss_before_kib: Option<u64>,
    /// The same with every socket held, KiB.
    pub rss_after_kib: Option<u64>,
    /// Seconds to open them all.
    pub ramp_secs: f64,
    /// Time to open one socket (connect, and on Flack hello and subscribe), µs.
    pub connect: Histogram<u64>,
    /// The first failure, for the log.
    pub first_error: Option<String>,
}

impl ConnectionsOutcome {
    /// Server memory per held socket, KiB.
    pub fn kib_per_connection(&self) -> Option<f64> {
        let (before, after) = (self.rss_before_kib?, self.rss_after_kib?);
        (self.held > 0).then(|| (after as f64 - before as f64) / self.held as f64)
    }

    /// The figures as a report.
    pub fn report(&self, label: &str, params: &ConnectionsParams) -> Report {
        let mut r = Report::new("connections", params.case(), label);
        r.count("requested", self.requested as u64)
            .metric("held", self.held as f64, "", Better::Higher)
            .metric("failed", self.failed as f64, "", Better::Lower);
        if let (Some(before), Some(after)) = (self.rss_before_kib, self.rss_after_kib) {
            r.metric("rss_before_kib", before as f64, "KiB", Better::Lower)
                .metric("rss_after_kib", after as f64, "KiB", Better::Lower);
        }
        if let Some(per) = self.kib_per_connection() {
            r.metric("kib_per_conn", per, "KiB", Better::Lower);
        }
        r.metric("ramp_s", self.ramp_secs, "s", Better::Lower);
        if self.ramp_secs > 0.0 {
            r.metric(
                "conns_per_s",
                (self.held + self.failed) as f64 / self.ramp_secs,
                "/s",
                Better::Higher,
            );
        }
        add_latencies(
            &mut r,
            "connect",
            &self.connect,
            &[("p50", 0.5), ("p99", 0.99), ("max", 1.0)],
        );
        r
    }
}

/// Opens, holds and checks `params.count` idle sockets on `run.target`.
pub async fn connections(run: &Run, params: &ConnectionsParams) -> Result<ConnectionsOutcome> {
    let target = &run.target;
    if let Some(limit) = open_files_limit() {
        if (params.count as u64) + 64 > limit {
            eprintln!(
                "flack-load: {} sockets need more than this process's open-file limit ({limit}); \
                 raise it with `ulimit -n` (failures will follow)",
                params.count
            );
        }
    }
    let http = client::http_client();
    let channel = super::fanout::prepare_channel(&http, target, "idle").await?;
    let mut tokens = Vec::new();
    if target.is_flack() {
        for u in 0..params.users.max(1) {
            tokens.push(client::login(&http, target, &format!("load-idle{u}")).await?);
        }
    }
    let rss_before_kib = run.pid.and_then(rss_kib);

    let mut sockets: Vec<Ws> = Vec::with_capacity(params.count);
    let mut connect = super::histogram();
    let mut failed = 0;
    let mut first_error = None;
    let started = Instant::now();
    let batch = params.batch.max(1);
    for first in (0..params.count).step_by(batch) {
        let last = (first + batch).min(params.count);
        let opened: Vec<(Result<Ws>, Duration)> = futures_util::stream::iter(first..last)
            .map(|i| {
                let (http, channel) = (&http, &channel);
                let token = (!tokens.is_empty()).then(|| tokens[i % tokens.len()].as_str());
                async move {
                    let at = Instant::now();
                    let ws = client::open(http, target, "", token, channel, true).await;
                    (ws, at.elapsed())
                }
            })
            .buffer_unordered(params.concurrency.max(1))
            .collect()
            .await;
        for (ws, took) in opened {
            match ws {
                Ok(ws) => {
                    connect.saturating_record(took.as_micros().max(1) as u64);
                    sockets.push(ws);
                }
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| format!("open: {e}"));
                }
            }
        }
    }
    let ramp_secs = started.elapsed().as_secs_f64();

    tokio::time::sleep(params.hold).await;
    let alive: Vec<std::result::Result<(), String>> =
        futures_util::stream::iter(sockets.iter_mut())
            .map(still_open)
            .buffer_unordered(512)
            .collect()
            .await;
    let rss_after_kib = run.pid.and_then(rss_kib);
    let mut held = 0;
    for check in alive {
        match check {
            Ok(()) => held += 1,
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("check: {e}"));
            }
        }
    }
    drop(sockets);
    Ok(ConnectionsOutcome {
        requested: params.count,
        held,
        failed,
        rss_before_kib,
        rss_after_kib,
        ramp_secs,
        connect,
        first_error,
    })
}

/// Pings a socket and waits for the pong (skipping whatever else arrives).
async fn still_open(ws: &mut Ws) -> std::result::Result<(), String> {
    ws.send(Frame::Ping(b"held".to_vec().into()))
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(client::STEP_TIMEOUT, async {
        loop {
            match ws.next().await {
                Some(Ok(Frame::Pong(_))) => return Ok(()),
                Some(Ok(Frame::Close(frame))) => return Err(format!("closed: {frame:?}")),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("socket ended".to_string()),
            }
        }
    })
    .await
    .map_err(|_| "no pong in time".to_string())?
}
