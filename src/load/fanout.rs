//! Fan-out: `clients` sockets join one channel; `senders` of them each send `rate` messages a
//! second for `duration` seconds (exactly `rate × duration` each, paced by a timer); every
//! client, the senders included, must receive every message exactly once.
//!
//! A message body says who sent it, its number and when it was written to the socket (µs since
//! the run's epoch, an [`Instant`] shared by the whole process), so each receiver measures
//! latency and counts deliveries per (sender, number) to find losses and duplicates. Each
//! sender also measures how late it writes each message against its schedule (`send_lag`):
//! a server that does not read fast enough shows up there, since then writes block. (Tokio's
//! timer ticks every millisecond, so a lag under 1 ms is the timer, not the server.)
//!
//! With `memberships` = M (Flack only), every client is first made a member of M channels,
//! the one the messages flow in and M − 1 quiet ones, as a real user belongs to many
//! conversations; then each new message also concerns every member's own stream (unread
//! counts), not only the sockets that have the channel open.
//!
//! On a cluster (a [`Run`] with several nodes) client `i` joins node `i mod N`, so the
//! senders too are spread round-robin, and every message must reach the clients of every node.
//!
//! [`super::max_rate`] searches the highest per-sender rate that still delivers everything
//! with a p99 latency under a limit.

use super::client::{self, classify, send_event_for, Body, Incoming, Ws};
use super::{
    add_latencies, add_process_cpu, error, ms, nodes_cpu, small_histogram, unique_name, Better,
    CpuGroup, CpuMeter, ProcessCpu, Report, Result, Run, Target,
};
use crate::protocol::ServerEvent;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as Frame;

/// What a fan-out run does.
#[derive(Debug, Clone)]
pub struct FanoutParams {
    /// Sockets subscribed to the channel (senders included).
    pub clients: usize,
    /// How many of them send.
    pub senders: usize,
    /// Messages per second per sender.
    pub rate: u32,
    /// Seconds of sending.
    pub duration_secs: u32,
    /// How long to wait for late deliveries once sending is over.
    pub grace: Duration,
    /// Connections opened at once while joining.
    pub connect_concurrency: usize,
    /// Channels every client is a member of, the busy one included (Flack only; 0: the
    /// clients only open the busy channel, as visitors of a public channel do).
    pub memberships: usize,
}

impl FanoutParams {
    /// The standard shape with the default grace (5 s) and join concurrency (64).
    pub fn new(clients: usize, senders: usize, rate: u32, duration_secs: u32) -> Self {
        FanoutParams {
            clients,
            senders,
            rate,
            duration_secs,
            grace: Duration::from_secs(5),
            connect_concurrency: 64,
            memberships: 0,
        }
    }

    /// Messages each sender sends.
    pub fn per_sender(&self) -> usize {
        self.rate as usize * self.duration_secs as usize
    }

    /// `c=100 s=20 r=10 d=10`, and ` m=20` with memberships.
    pub fn case(&self) -> String {
        let mut case = format!(
            "c={} s={} r={} d={}",
            self.clients, self.senders, self.rate, self.duration_secs
        );
        if self.memberships > 0 {
            case += &format!(" m={}", self.memberships);
        }
        case
    }
}

/// What a fan-out run measured.
#[derive(Debug, Clone)]
pub struct FanoutOutcome {
    /// Sockets that joined.
    pub connected: usize,
    /// Sockets that failed to join.
    pub connect_failed: usize,
    /// Messages sent.
    pub sent: u64,
    /// Deliveries due: every message sent, to every joined socket.
    pub expected: u64,
    /// Deliveries received (duplicates included).
    pub delivered: u64,
    /// (message, receiver) pairs never delivered.
    pub lost: u64,
    /// Deliveries beyond the first of a (message, receiver) pair.
    pub duplicated: u64,
    /// Deliveries whose body was not one of this run's messages.
    pub unexpected: u64,
    /// Flack acknowledgements received by the senders.
    pub acks: u64,
    /// Flack error events received.
    pub errors: u64,
    /// Times Flack resent a socket what it missed after it fell behind its channel.
    pub resyncs: u64,
    /// Resyncs that could not resend everything (`reset: true`: the client must reload).
    pub resets: u64,
    /// Sockets that ended before the run did.
    pub closed_early: usize,
    /// Delivery latency, µs from when the message was written to the socket.
    pub latency: Histogram<u64>,
    /// How late senders wrote their messages against their schedule, µs.
    pub send_lag: Histogram<u64>,
    /// Join time (log in, connect, hello, subscribe), µs.
    pub connect: Histogram<u64>,
    /// Deliveries per second, from the first send to the last delivery.
    pub deliveries_per_sec: f64,
    /// The server's CPU use while sending and delivering, % of one core (every node summed).
    pub server_cpu_pct: Option<f64>,
    /// The server's CPU time over the same span, seconds (every node summed).
    pub server_cpu_secs: Option<f64>,
    /// On a cluster, each process's CPU over the same span (every node, then the extra
    /// processes such as PostgreSQL and Redis); empty for a single server.
    pub processes: Vec<ProcessCpu>,
    /// The generator's own CPU use over the same time.
    pub loader_cpu_pct: Option<f64>,
    /// The first failure seen (join, send, socket end, error event), for the log.
    pub first_error: Option<String>,
    /// The worst delivery latency (µs) of the messages written in each tenth of a second,
    /// from the first send on: where in a run a tail comes from.
    pub worst_by_tenth: Vec<u64>,
}

impl FanoutOutcome {
    /// Every message reached every client exactly once.
    pub fn complete(&self) -> bool {
        self.expected > 0
            && self.delivered == self.expected
            && self.lost == 0
            && self.duplicated == 0
            && self.unexpected == 0
            && self.connect_failed == 0
            && self.closed_early == 0
    }

    /// A latency quantile in ms (0 when nothing was delivered).
    pub fn latency_ms(&self, quantile: f64) -> f64 {
        if self.latency.is_empty() {
            0.0
        } else {
            ms(self.latency.value_at_quantile(quantile))
        }
    }

    /// A send-lag quantile in ms.
    pub fn send_lag_ms(&self, quantile: f64) -> f64 {
        if self.send_lag.is_empty() {
            0.0
        } else {
            ms(self.send_lag.value_at_quantile(quantile))
        }
    }

    /// The figures as a report.
    pub fn report(&self, label: &str, params: &FanoutParams) -> Report {
        let mut r = Report::new("fanout", params.case(), label);
        r.count("clients", self.connected as u64)
            .count("senders", params.senders as u64)
            .count("sent", self.sent)
            .count("expected", self.expected)
            .count("delivered", self.delivered)
            .metric("lost", self.lost as f64, "", Better::Lower)
            .metric("duplicated", self.duplicated as f64, "", Better::Lower)
            .metric(
                "deliveries_per_s",
                self.deliveries_per_sec,
                "/s",
                Better::Higher,
            );
        add_latencies(
            &mut r,
            "lat",
            &self.latency,
            &[("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)],
        );
        add_latencies(
            &mut r,
            "send_lag",
            &self.send_lag,
            &[("p99", 0.99), ("max", 1.0)],
        );
        add_latencies(
            &mut r,
            "connect",
            &self.connect,
            &[("p50", 0.5), ("p99", 0.99), ("max", 1.0)],
        );
        r.count("connect_failed", self.connect_failed as u64)
            .count("closed_early", self.closed_early as u64)
            .count("error_events", self.errors)
            .count("resyncs", self.resyncs)
            .count("resets", self.resets);
        if let Some(cpu) = self.server_cpu_pct {
            r.metric("server_cpu_pct", cpu, "%", Better::Neither);
        }
        if let Some(us) = self.server_us_per_delivery() {
            r.metric("server_us_per_delivery", us, "µs", Better::Lower);
        }
        if let Some(cpu) = self.loader_cpu_pct {
            r.metric("loader_cpu_pct", cpu, "%", Better::Neither);
        }
        add_process_cpu(&mut r, "", &self.processes, self.delivered);
        r
    }

    /// The seconds into the run (from the first send) of the tenths whose worst latency
    /// was over `limit_ms`.
    pub fn slow_tenths(&self, limit_ms: f64) -> Vec<f64> {
        self.worst_by_tenth
            .iter()
            .enumerate()
            .filter(|(_, &worst)| ms(worst) > limit_ms)
            .map(|(tenth, _)| tenth as f64 / 10.0)
            .collect()
    }

    /// Server CPU time per delivery, µs (its whole CPU use over the run, divided).
    pub fn server_us_per_delivery(&self) -> Option<f64> {
        let secs = self.server_cpu_secs?;
        (self.delivered > 0).then(|| secs * 1e6 / self.delivered as f64)
    }
}

/// A tenth of a second in µs, the span of [`FanoutOutcome::worst_by_tenth`].
const TENTH_US: u64 = 100_000;
/// Tenths kept per socket at most (an hour of sending).
const MAX_TENTHS: usize = 36_000;

/// What one receiving socket saw.
struct Tally {
    /// Deliveries per (sender, number): `counts[sender * per_sender + n]`.
    counts: Vec<u8>,
    latency: Histogram<u64>,
    delivered: u64,
    unexpected: u64,
    acks: u64,
    errors: u64,
    resyncs: u64,
    resets: u64,
    /// µs since the epoch of the last delivery.
    last_us: u64,
    /// The worst latency (µs) per tenth of a second of sending time since the epoch.
    worst: Vec<u64>,
    ended: Option<String>,
}

impl Tally {
    /// Nothing seen yet, for `senders` sending `per_sender` messages each.
    fn new(senders: usize, per_sender: usize) -> Self {
        Tally {
            counts: vec![0; senders * per_sender],
            latency: small_histogram(),
            delivered: 0,
            unexpected: 0,
            acks: 0,
            errors: 0,
            resyncs: 0,
            resets: 0,
            last_us: 0,
            worst: Vec::new(),
            ended: None,
        }
    }

    /// Whether this client already has the message of this body.
    fn seen(&self, body: &str, senders: usize, per_sender: usize) -> bool {
        match Body::parse(body) {
            Some(b) if (b.sender as usize) < senders && (b.n as usize) < per_sender => {
                self.counts[b.sender as usize * per_sender + b.n as usize] > 0
            }
            _ => false,
        }
    }

    /// Counts one delivered body.
    fn deliver(
        &mut self,
        body: &str,
        now: u64,
        senders: usize,
        per_sender: usize,
        delivered_so_far: &AtomicU64,
    ) {
        match Body::parse(body) {
            Some(b) if (b.sender as usize) < senders && (b.n as usize) < per_sender => {
                let slot = &mut self.counts[b.sender as usize * per_sender + b.n as usize];
                *slot = slot.saturating_add(1);
                let latency = now.saturating_sub(b.at_us).max(1);
                self.latency.saturating_record(latency);
                let tenth = (b.at_us / TENTH_US) as usize;
                if tenth < MAX_TENTHS {
                    if self.worst.len() <= tenth {
                        self.worst.resize(tenth + 1, 0);
                    }
                    self.worst[tenth] = self.worst[tenth].max(latency);
                }
                self.delivered += 1;
                self.last_us = now;
                delivered_so_far.fetch_add(1, Ordering::Relaxed);
            }
            _ => self.unexpected += 1,
        }
    }
}

/// Runs one fan-out against `run.target`.
pub async fn fanout(run: &Run, params: &FanoutParams) -> Result<FanoutOutcome> {
    if params.senders == 0 || params.senders > params.clients || params.per_sender() == 0 {
        return Err(error(
            "fanout needs 1 ≤ senders ≤ clients and rate × duration ≥ 1",
        ));
    }
    if (params.senders * params.per_sender()).saturating_mul(params.clients) > 4_000_000_000 {
        return Err(error("fanout too large to count deliveries one by one"));
    }
    let target = &run.target;
    let http = client::http_client();
    let channel = prepare_channel(&http, target, "fan").await?;
    // Every client's channels: the busy one first (set up before anyone connects).
    let member_of = if target.is_flack() && params.memberships > 0 {
        let token = client::login(&http, target, "load-admin").await?;
        let mut ids = vec![client::channel_id(&http, target, &token, &channel).await?];
        for k in 1..params.memberships {
            let quiet = format!("{channel}-q{k}");
            ids.push(client::create_channel_id(&http, target, &token, &quiet).await?);
        }
        ids
    } else {
        Vec::new()
    };
    // Members join their channels before any socket opens: an open socket that is not read
    // meanwhile would miss the server's pings and be dropped.
    let tokens: Vec<Option<String>> = if member_of.is_empty() {
        vec![None; params.clients]
    } else {
        futures_util::stream::iter(0..params.clients)
            .map(|i| {
                let (http, member_of) = (&http, &member_of);
                async move {
                    client::member_of(http, target, &format!("load-c{i}"), member_of)
                        .await
                        .map(Some)
                }
            })
            .buffered(params.connect_concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?
    };

    // Join, at most `connect_concurrency` at once.
    let mut connect = super::histogram();
    let mut first_error = None;
    let opened: Vec<(usize, Result<Ws>, Duration)> = futures_util::stream::iter(0..params.clients)
        .map(|i| {
            let (http, channel, token) = (&http, &channel, tokens[i].as_deref());
            let node = run.node(i);
            async move {
                let started = Instant::now();
                let name = format!("load-c{i}");
                let ws = client::open(http, node, &name, token, channel, false).await;
                (i, ws, started.elapsed())
            }
        })
        .buffer_unordered(params.connect_concurrency.max(1))
        .collect()
        .await;
    let mut sockets: Vec<(usize, Ws)> = Vec::with_capacity(opened.len());
    let mut connect_failed = 0;
    for (i, ws, took) in opened {
        match ws {
            Ok(ws) => {
                connect.saturating_record(took.as_micros().max(1) as u64);
                sockets.push((i, ws));
            }
            Err(e) => {
                connect_failed += 1;
                first_error.get_or_insert_with(|| format!("join: {e}"));
            }
        }
    }
    sockets.sort_by_key(|(i, _)| *i);
    if sockets.len() < params.senders {
        return Err(error(format!(
            "only {} of {} clients joined: {}",
            sockets.len(),
            params.clients,
            first_error.unwrap_or_default()
        )));
    }

    // Receive on every socket; send on the first `senders`.
    let epoch = Instant::now();
    let per_sender = params.per_sender();
    let progress = Arc::new(Progress::default());
    let (stop, stopped) = watch::channel(false);
    let connected = sockets.len();
    let mut receivers = Vec::with_capacity(connected);
    let mut sinks = Vec::with_capacity(params.senders);
    for (i, ws) in sockets {
        let (sink, stream) = ws.split();
        receivers.push(tokio::spawn(receive(
            stream,
            run.node(i).clone(),
            params.senders,
            per_sender,
            epoch,
            progress.clone(),
            stopped.clone(),
        )));
        if sinks.len() < params.senders {
            sinks.push((i, sink));
        }
    }
    let server_cpu = CpuGroup::start(run);
    let loader_cpu = CpuMeter::this_process();
    let period = Duration::from_secs_f64(1.0 / f64::from(params.rate));
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let start_us = (start.into_std() - epoch).as_micros() as u64;
    let send_tasks: Vec<_> = sinks
        .into_iter()
        .enumerate()
        .map(|(s, (_, sink))| {
            // Spread the senders over one period so that they do not send in lockstep.
            let offset = period.mul_f64(s as f64 / params.senders as f64);
            tokio::spawn(send_loop(
                sink,
                s as u32,
                channel.clone(),
                start + offset,
                period,
                per_sender,
                epoch,
            ))
        })
        .collect();
    let mut sent_by = Vec::with_capacity(params.senders);
    let mut sinks = Vec::with_capacity(params.senders);
    let mut send_lag = small_histogram();
    for task in send_tasks {
        let sending = task.await?;
        if let Some(failure) = sending.failure {
            first_error.get_or_insert(failure);
        }
        send_lag
            .add(&sending.lag)
            .map_err(|e| error(e.to_string()))?;
        sent_by.push(sending.sent);
        sinks.push(sending.sink);
    }
    let sent: u64 = sent_by.iter().sum();
    let expected = sent * connected as u64;

    // Wait for stragglers (deliveries and, from Flack, acks: a sender may see its own message
    // before its ack), then stop the receivers.
    let deadline = Instant::now() + params.grace;
    let acks_due = if target.is_flack() { sent } else { 0 };
    while (progress.delivered.load(Ordering::Relaxed) < expected
        || progress.acked.load(Ordering::Relaxed) < acks_due)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let processes = server_cpu.processes();
    let (server_cpu_pct, server_cpu_secs) = nodes_cpu(&processes).unzip();
    let processes = if run.is_cluster() {
        processes
    } else {
        Vec::new()
    };
    let loader_cpu_pct = loader_cpu.percent();
    let _ = stop.send(true);
    let mut outcome = FanoutOutcome {
        connected,
        connect_failed,
        sent,
        expected,
        delivered: 0,
        lost: 0,
        duplicated: 0,
        unexpected: 0,
        acks: 0,
        errors: 0,
        resyncs: 0,
        resets: 0,
        closed_early: 0,
        latency: small_histogram(),
        send_lag,
        connect,
        deliveries_per_sec: 0.0,
        server_cpu_pct,
        server_cpu_secs,
        processes,
        loader_cpu_pct,
        first_error,
        worst_by_tenth: Vec::new(),
    };
    let mut last_us = 0;
    let mut worst = Vec::new();
    for receiver in receivers {
        let tally = receiver.await?;
        outcome.delivered += tally.delivered;
        outcome.unexpected += tally.unexpected;
        outcome.acks += tally.acks;
        outcome.errors += tally.errors;
        outcome.resyncs += tally.resyncs;
        outcome.resets += tally.resets;
        last_us = last_us.max(tally.last_us);
        if worst.len() < tally.worst.len() {
            worst.resize(tally.worst.len(), 0);
        }
        for (w, &t) in worst.iter_mut().zip(&tally.worst) {
            *w = (*w).max(t);
        }
        outcome
            .latency
            .add(&tally.latency)
            .map_err(|e| error(e.to_string()))?;
        if let Some(ended) = tally.ended {
            outcome.closed_early += 1;
            outcome.first_error.get_or_insert(ended);
        }
        for (s, sent) in sent_by.iter().enumerate() {
            for &count in &tally.counts[s * per_sender..s * per_sender + *sent as usize] {
                match count {
                    0 => outcome.lost += 1,
                    1 => {}
                    more => outcome.duplicated += u64::from(more) - 1,
                }
            }
        }
    }
    drop(sinks);
    let first_tenth = (start_us / TENTH_US) as usize;
    outcome.worst_by_tenth = worst.get(first_tenth..).unwrap_or_default().to_vec();
    let span = last_us.saturating_sub(start_us) as f64 / 1e6;
    if span > 0.0 {
        outcome.deliveries_per_sec = outcome.delivered as f64 / span;
    }
    Ok(outcome)
}

/// A fresh channel on Flack (created by a bot of its own); the reference has only one.
pub(crate) async fn prepare_channel(
    http: &reqwest::Client,
    target: &Target,
    prefix: &str,
) -> Result<String> {
    let channel = unique_name(prefix);
    if target.is_flack() {
        let token = client::login(http, target, "load-admin").await?;
        client::create_channel(http, target, &token, &channel).await?;
    }
    Ok(channel)
}

/// What one sender did.
struct Sending {
    sent: u64,
    failure: Option<String>,
    /// How late each write started against the schedule, µs.
    lag: Histogram<u64>,
    /// Kept until the end of the run: the socket stays open while others receive.
    sink: SplitSink<Ws, Frame>,
}

async fn send_loop(
    mut sink: SplitSink<Ws, Frame>,
    sender: u32,
    channel: String,
    start: tokio::time::Instant,
    period: Duration,
    count: usize,
    epoch: Instant,
) -> Sending {
    // Bursts catch up after a late tick, so that exactly `count` go out at the average rate.
    let mut ticks = tokio::time::interval_at(start, period);
    let mut lag = small_histogram();
    let mut sent = 0;
    for n in 0..count {
        let due = ticks.tick().await.into_std();
        let now = Instant::now();
        lag.saturating_record(now.saturating_duration_since(due).as_micros().max(1) as u64);
        let body = Body {
            sender,
            n: n as u32,
            at_us: now.saturating_duration_since(epoch).as_micros() as u64,
        }
        .encode();
        let event = send_event_for(&channel, &body, &format!("s{sender}-{n}"));
        let text = serde_json::to_string(&event).expect("events serialize");
        if let Err(e) = sink.send(Frame::text(text)).await {
            return Sending {
                sent,
                failure: Some(format!("sender {sender}: {e}")),
                lag,
                sink,
            };
        }
        sent += 1;
    }
    Sending {
        sent,
        failure: None,
        lag,
        sink,
    }
}

/// What all receivers have seen so far, for knowing when a run is complete.
#[derive(Default)]
struct Progress {
    delivered: AtomicU64,
    acked: AtomicU64,
}

async fn receive(
    mut stream: SplitStream<Ws>,
    target: Target,
    senders: usize,
    per_sender: usize,
    epoch: Instant,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<bool>,
) -> Tally {
    let mut tally = Tally::new(senders, per_sender);
    loop {
        let frame = tokio::select! {
            biased;
            _ = stop.changed() => break,
            frame = stream.next() => frame,
        };
        let text = match frame {
            Some(Ok(Frame::Text(text))) => text,
            Some(Ok(Frame::Close(frame))) => {
                tally.ended = Some(format!("closed by the server: {frame:?}"));
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                tally.ended = Some(format!("socket failed: {e}"));
                break;
            }
            None => {
                tally.ended = Some("socket ended".into());
                break;
            }
        };
        match classify(&target, text.as_str()) {
            Incoming::Delivery(body) => {
                let now = epoch.elapsed().as_micros() as u64;
                tally.deliver(body, now, senders, per_sender, &progress.delivered);
            }
            Incoming::Resync => {
                let now = epoch.elapsed().as_micros() as u64;
                tally.resyncs += 1;
                match serde_json::from_str::<ServerEvent>(text.as_str()) {
                    Ok(ServerEvent::Subscribed {
                        messages, reset, ..
                    }) => {
                        if reset {
                            tally.resets += 1;
                        }
                        for m in &messages {
                            // A reset says "show this window instead": what the client already
                            // has in it is not delivered twice, only what is new.
                            if reset && tally.seen(&m.body, senders, per_sender) {
                                continue;
                            }
                            tally.deliver(&m.body, now, senders, per_sender, &progress.delivered);
                        }
                    }
                    _ => tally.unexpected += 1,
                }
            }
            Incoming::Ack => {
                tally.acks += 1;
                progress.acked.fetch_add(1, Ordering::Relaxed);
            }
            Incoming::Error => {
                tally.errors += 1;
                if tally.errors == 1 {
                    // The generator has no logger: the first error event per socket goes to
                    // stderr.
                    eprintln!("flack-load: error event: {}", text.as_str());
                }
            }
            Incoming::Other => {}
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_latency_is_kept_per_tenth_of_sending_time() {
        let mut t = Tally::new(1, 4);
        let counted = AtomicU64::new(0);
        // (written at, received at), µs since the epoch.
        for (n, (at, now)) in [
            (50_000, 60_000),
            (120_000, 190_000),
            (150_000, 160_000),
            (310_000, 312_000),
        ]
        .into_iter()
        .enumerate()
        {
            let body = Body {
                sender: 0,
                n: n as u32,
                at_us: at,
            }
            .encode();
            t.deliver(&body, now, 1, 4, &counted);
        }
        assert_eq!(t.worst, vec![10_000, 70_000, 0, 2_000]);
        assert_eq!(counted.load(Ordering::Relaxed), 4);
    }
}
