//! Abuse: each attack from the overload issue, for a bounded time against a running Flack on
//! loopback while a normal user keeps chatting, and what it did to the server.
//!
//! First a *quiet* run: the normal user (a bot from `POST /auth/session`, connecting from
//! 127.0.0.1) sends `user_rate` messages a second to `general` and records each ack's latency,
//! counted from when the message was due (so a stalled socket cannot hide the sends behind
//! it; a send never answered counts at the time waited). Then each [`Attack`] in turn, from
//! another address (127.0.0.2, so the server's per-address limits fall on the attacker and not
//! on the user), with the user chatting alongside and the server's resident memory and open
//! descriptors sampled every `sample_every` (its "before" is read once the last attack's
//! memory has stopped moving). When the attack's window ends its sockets close;
//! after `settle` the memory is read again and a *fresh browser* must be served normally:
//! `GET /` without a cookie answers 200 with a cookie, and a new bot logs in, opens `/ws`, gets
//! `hello` and `subscribed` for `general`. Attacks that need material (`never-read` and
//! `many-windows` fill channels with big messages first, through as many bot identities as
//! the rate limit asks for) prepare it from the attacker's address too: the growth and the
//! user's latency cover the preparation as well as the window.
//!
//! Every attack treats refusals, closes and errors as the server defending itself: it counts
//! them and goes on (reconnecting) until its window ends. Every loop is bounded by time and
//! count, and an attack stops early once the server has grown by `max_growth_mib` (a safety
//! valve for the machine, far above the bar). Only loopback targets are accepted.
//!
//! The bars ([`AttackOutcome::bars_met`]): memory growth under each attack at most
//! [`MAX_GROWTH_MIB`], the user's p99 at most [`MAX_P99_VS_QUIET`] times the quiet run's, and
//! the fresh browser served.

use super::client::{self, Source, Ws};
use super::{
    error, histogram, ms, open_fds, rss_kib, unique_name, Better, Report, Result, Run, Target,
};
use crate::error::AppError;
use crate::protocol::{ClientEvent, ServerEvent};
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as Frame;

/// The most an attack may grow the server's resident memory (peak − before), MiB.
pub const MAX_GROWTH_MIB: f64 = 64.0;
/// The most the normal user's p99 ack latency may be under an attack, times the quiet run's.
pub const MAX_P99_VS_QUIET: f64 = 3.0;

/// Frames written before one flush by the flooding sockets.
const FLOOD_BATCH: usize = 64;
/// Messages a fill identity posts before waiting for their answers.
const FILL_ROUND: usize = 10;
/// Times one attacking task may (re)connect in one window, at most.
const MAX_ATTEMPTS: u32 = 10_000;
/// Times the normal user may reconnect in one run, at most.
const MAX_USER_RECONNECTS: u64 = 50;
/// How long the fresh-browser check may take in all.
const FRESH_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause after a refused connection or request, so that a refusing server is not spun on.
const BACKOFF: Duration = Duration::from_millis(20);

/// One attack from the issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// Sockets subscribing to new random channel names as fast as they can.
    SubscribeUnknown,
    /// A channel of big messages, then sockets that subscribe to it again and again and never
    /// read the answers.
    NeverRead,
    /// Slowloris headers, a slow request body, and idle connections.
    SlowHttp,
    /// One named identity creating channels as fast as the server allows.
    ChannelFlood,
    /// `POST /auth/session` as fast as possible.
    IdentityFlood,
    /// One socket sending deletes of random ids and malformed frames as fast as it can.
    FrameFlood,
    /// Many channels of big messages, then sockets that subscribe to each in turn.
    ManyWindows,
}

impl Attack {
    /// Every attack, in the order they run.
    pub const ALL: [Attack; 7] = [
        Attack::SubscribeUnknown,
        Attack::NeverRead,
        Attack::SlowHttp,
        Attack::ChannelFlood,
        Attack::IdentityFlood,
        Attack::FrameFlood,
        Attack::ManyWindows,
    ];

    /// Its name on the command line and in reports (`subscribe-unknown`, …).
    pub fn name(self) -> &'static str {
        match self {
            Attack::SubscribeUnknown => "subscribe-unknown",
            Attack::NeverRead => "never-read",
            Attack::SlowHttp => "slow-http",
            Attack::ChannelFlood => "channel-flood",
            Attack::IdentityFlood => "identity-flood",
            Attack::FrameFlood => "frame-flood",
            Attack::ManyWindows => "many-windows",
        }
    }

    /// The counters its report shows (always, even at zero), in display order.
    fn rows(self) -> &'static [&'static str] {
        match self {
            Attack::SubscribeUnknown => &[
                "frames_sent",
                "replies",
                "sockets_opened",
                "connect_refused",
                "closed_by_server",
            ],
            Attack::NeverRead => &[
                "messages_filled",
                "fill_identities",
                "fill_refused",
                "subscribes_sent",
                "sockets_opened",
                "connect_refused",
                "closed_by_server",
            ],
            Attack::SlowHttp => &[
                "sockets_opened",
                "connect_refused",
                "bytes_sent",
                "responses",
                "closed_by_server",
                "held_at_end",
            ],
            Attack::ChannelFlood => &["requests", "channels_created", "refused", "errors"],
            Attack::IdentityFlood => &["requests", "identities_created", "refused", "errors"],
            Attack::FrameFlood => &[
                "frames_sent",
                "deletes_sent",
                "malformed_sent",
                "replies",
                "sockets_opened",
                "connect_refused",
                "closed_by_server",
            ],
            Attack::ManyWindows => &[
                "channels_created",
                "channels_filled",
                "messages_filled",
                "fill_identities",
                "fill_refused",
                "subscribes_sent",
                "windows_received",
                "window_bytes",
                "sockets_opened",
                "connect_refused",
                "closed_by_server",
            ],
        }
    }
}

impl FromStr for Attack {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<Self, Self::Err> {
        Attack::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Attack::ALL.iter().map(|a| a.name()).collect();
                format!("unknown attack {name:?}; one of {}", names.join(", "))
            })
    }
}

/// What the abuse scenario does: which attacks, for how long, and how big each is.
#[derive(Debug, Clone)]
pub struct AbuseParams {
    /// The attacks to run, in order.
    pub attacks: Vec<Attack>,
    /// How long each attack's window lasts (after its preparation).
    pub window: Duration,
    /// How long the quiet run lasts.
    pub quiet: Duration,
    /// The most an attack's preparation (filling channels) may take.
    pub prepare: Duration,
    /// Wait after an attack's sockets closed before memory is read again.
    pub settle: Duration,
    /// Before an attack, wait (at most this long) until the server's memory stops changing,
    /// so that what the last attack is still freeing does not count as this one's "before".
    pub quiesce: Duration,
    /// How often the server's memory and descriptors are read.
    pub sample_every: Duration,
    /// How long the user waits for answers once it stops sending.
    pub grace: Duration,
    /// The normal user's messages per second.
    pub user_rate: u32,
    /// The channel the normal user (and the fresh browser) joins.
    pub channel: String,
    /// Where the normal user and the fresh browser connect from.
    pub user_address: IpAddr,
    /// Where the first attacker connects from; each next attack from the next address up.
    pub attacker_address: IpAddr,
    /// An attack stops early once the server has grown this much (MiB): a safety valve.
    pub max_growth_mib: u64,
    /// The most frames, requests or subscribes one attacking task sends in a window.
    pub max_ops: u64,
    /// `subscribe-unknown`: sockets.
    pub subscribe_sockets: usize,
    /// `never-read` and `many-windows`: messages per filled channel.
    pub fill_messages: usize,
    /// Characters per filled message (control characters: each is 6 bytes of JSON).
    pub fill_chars: usize,
    /// `never-read`: sockets.
    pub never_read_sockets: usize,
    /// `never-read`: subscribes each socket sends.
    pub never_read_subscribes: usize,
    /// `slow-http`: sockets (a third each slowloris, slow body, idle).
    pub slow_sockets: usize,
    /// `slow-http`: the `Content-Length` the slow bodies announce.
    pub slow_body_bytes: usize,
    /// `channel-flood` and `identity-flood`: requests in flight.
    pub flood_concurrency: usize,
    /// `frame-flood`: sockets.
    pub frame_sockets: usize,
    /// `many-windows`: channels filled.
    pub window_channels: usize,
    /// `many-windows`: sockets subscribing.
    pub window_sockets: usize,
}

impl AbuseParams {
    /// The issue's numbers: windows of `seconds`, every attack.
    pub fn standard(seconds: u64) -> Self {
        let window = Duration::from_secs(seconds.max(1));
        AbuseParams {
            attacks: Attack::ALL.to_vec(),
            window,
            quiet: window,
            prepare: Duration::from_secs(60),
            settle: Duration::from_secs(2),
            quiesce: Duration::from_secs(10),
            sample_every: Duration::from_millis(100),
            grace: Duration::from_secs(5),
            user_rate: 10,
            channel: "general".into(),
            user_address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
            attacker_address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            max_growth_mib: 1024,
            max_ops: 10_000_000,
            subscribe_sockets: 4,
            fill_messages: 100,
            fill_chars: 4000,
            never_read_sockets: 4,
            never_read_subscribes: 400,
            slow_sockets: 300,
            slow_body_bytes: 100_000,
            flood_concurrency: 8,
            frame_sockets: 1,
            window_channels: 40,
            window_sockets: 8,
        }
    }

    /// Tiny numbers, to check the scenario (and the benchmark script) in seconds.
    pub fn quick(seconds: u64) -> Self {
        AbuseParams {
            prepare: Duration::from_secs(20),
            settle: Duration::from_secs(1),
            quiesce: Duration::from_secs(3),
            grace: Duration::from_secs(3),
            subscribe_sockets: 2,
            fill_messages: 20,
            never_read_sockets: 2,
            never_read_subscribes: 40,
            slow_sockets: 30,
            flood_concurrency: 4,
            window_channels: 4,
            window_sockets: 2,
            ..AbuseParams::standard(seconds)
        }
    }

    /// The case of an attack's report: its size and window.
    pub fn case(&self, attack: Attack) -> String {
        let size = match attack {
            Attack::SubscribeUnknown => format!("sockets={}", self.subscribe_sockets),
            Attack::NeverRead => format!(
                "msgs={} sockets={} subs={}",
                self.fill_messages, self.never_read_sockets, self.never_read_subscribes
            ),
            Attack::SlowHttp => format!("sockets={}", self.slow_sockets),
            Attack::ChannelFlood | Attack::IdentityFlood => {
                format!("inflight={}", self.flood_concurrency)
            }
            Attack::FrameFlood => format!("sockets={}", self.frame_sockets),
            Attack::ManyWindows => format!(
                "channels={} msgs={} sockets={}",
                self.window_channels, self.fill_messages, self.window_sockets
            ),
        };
        format!(
            "{} {size} d={}",
            attack.name(),
            format_secs(self.window.as_secs_f64())
        )
    }
}

fn format_secs(secs: f64) -> String {
    if secs.fract() == 0.0 {
        format!("{secs:.0}")
    } else {
        format!("{secs:.1}")
    }
}

/// What the normal user saw while chatting.
#[derive(Debug, Clone)]
pub struct Chatting {
    /// Messages sent.
    pub sent: u64,
    /// Acknowledged.
    pub acked: u64,
    /// Answered with an error (rate limited, …).
    pub refused: u64,
    /// Never answered: each is in `latency` at the time waited.
    pub unanswered: u64,
    /// Times the socket ended and was opened again (or failed to open).
    pub reconnects: u64,
    /// From when each message was due to its ack (or, unanswered, to the end), µs.
    pub latency: Histogram<u64>,
    /// The first problem, for the log.
    pub first_error: Option<String>,
}

impl Chatting {
    /// The p99 latency, ms (0 when nothing was measured).
    pub fn p99_ms(&self) -> f64 {
        if self.latency.is_empty() {
            0.0
        } else {
            ms(self.latency.value_at_quantile(0.99))
        }
    }
}

/// What one attack did to the server.
#[derive(Debug, Clone)]
pub struct AttackOutcome {
    /// Which attack.
    pub attack: Attack,
    /// The server's resident memory before the attack (and its preparation), KiB.
    pub rss_before_kib: Option<u64>,
    /// The most it reached until `settle` after the attack.
    pub rss_peak_kib: Option<u64>,
    /// After the attack's sockets closed and `settle` passed.
    pub rss_after_kib: Option<u64>,
    /// The server's open descriptors before the attack.
    pub fds_before: Option<u64>,
    /// The most it had.
    pub fds_peak: Option<u64>,
    /// After `settle`.
    pub fds_after: Option<u64>,
    /// The normal user meanwhile (preparation and window).
    pub user: Chatting,
    /// The quiet run's p99, ms.
    pub quiet_p99_ms: f64,
    /// How long the fresh browser took to be served, or why it was not.
    pub fresh: std::result::Result<Duration, String>,
    /// The attack's counters (its [`Attack::rows`] first).
    pub counts: Vec<(String, u64)>,
    /// Seconds the attack's window lasted.
    pub window_secs: f64,
    /// The attack was stopped early: the server grew by `max_growth_mib`.
    pub stopped_early: bool,
    /// The attack's first problem (a failed preparation, …), for the log.
    pub first_error: Option<String>,
}

impl AttackOutcome {
    /// A counter by name.
    pub fn count(&self, name: &str) -> Option<u64> {
        self.counts.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// Peak − before, MiB.
    pub fn rss_growth_mib(&self) -> Option<f64> {
        let (before, peak) = (self.rss_before_kib?, self.rss_peak_kib?);
        Some(peak.saturating_sub(before) as f64 / 1024.0)
    }

    /// The user's p99 over the quiet run's.
    pub fn p99_vs_quiet(&self) -> Option<f64> {
        (self.quiet_p99_ms > 0.0).then(|| self.user.p99_ms() / self.quiet_p99_ms)
    }

    /// Whether a fresh browser was served normally after the attack.
    pub fn fresh_ok(&self) -> bool {
        self.fresh.is_ok()
    }

    /// Growth ≤ [`MAX_GROWTH_MIB`] (unknown growth fails), p99 ≤ [`MAX_P99_VS_QUIET`] × quiet,
    /// and the fresh browser served.
    pub fn bars_met(&self) -> bool {
        self.rss_growth_mib().is_some_and(|g| g <= MAX_GROWTH_MIB)
            && self.p99_vs_quiet().is_some_and(|r| r <= MAX_P99_VS_QUIET)
            && self.fresh_ok()
    }

    /// The figures as a report.
    pub fn report(&self, label: &str, params: &AbuseParams) -> Report {
        let mib = |kib: Option<u64>| kib.map(|k| k as f64 / 1024.0);
        let mut r = Report::new("abuse", params.case(self.attack), label);
        for (name, value) in [
            ("rss_before_mib", mib(self.rss_before_kib)),
            ("rss_peak_mib", mib(self.rss_peak_kib)),
            ("rss_after_mib", mib(self.rss_after_kib)),
            ("rss_growth_mib", self.rss_growth_mib()),
        ] {
            if let Some(value) = value {
                r.metric(name, value, "MiB", Better::Lower);
            }
        }
        for (name, value) in [("fds_peak", self.fds_peak), ("fds_after", self.fds_after)] {
            if let Some(value) = value {
                r.metric(name, value as f64, "", Better::Lower);
            }
        }
        r.metric("normal_p99_ms", self.user.p99_ms(), "ms", Better::Lower)
            .metric("quiet_p99_ms", self.quiet_p99_ms, "ms", Better::Lower);
        if let Some(ratio) = self.p99_vs_quiet() {
            r.metric("p99_vs_quiet", ratio, "x", Better::Lower);
        }
        r.count("normal_sent", self.user.sent)
            .count("normal_acked", self.user.acked)
            .count("normal_refused", self.user.refused)
            .count("normal_unanswered", self.user.unanswered)
            .count("normal_reconnects", self.user.reconnects)
            .count("fresh_browser_ok", u64::from(self.fresh_ok()));
        if let Ok(took) = &self.fresh {
            r.metric(
                "fresh_browser_ms",
                took.as_secs_f64() * 1e3,
                "ms",
                Better::Lower,
            );
        }
        r.metric("window_s", self.window_secs, "s", Better::Neither)
            .count("stopped_early", u64::from(self.stopped_early));
        for (name, value) in &self.counts {
            r.count(name, *value);
        }
        r.count("bars_met", u64::from(self.bars_met()));
        r
    }
}

/// What the whole scenario measured.
#[derive(Debug, Clone)]
pub struct AbuseOutcome {
    /// The normal user with nothing else going on.
    pub quiet: Chatting,
    /// Each attack, in the order run.
    pub attacks: Vec<AttackOutcome>,
}

impl AbuseOutcome {
    /// Whether every attack met every bar.
    pub fn bars_met(&self) -> bool {
        self.attacks.iter().all(AttackOutcome::bars_met)
    }

    /// One line per attack: growth, p99 against quiet, fresh browser, bars met.
    pub fn bars_table(&self) -> String {
        let mut rows = vec![vec![
            "attack".to_string(),
            "rss growth MiB".into(),
            "fds peak".into(),
            "p99 ms (quiet)".into(),
            "p99 vs quiet".into(),
            "fresh browser".into(),
            "bars met".into(),
        ]];
        for a in &self.attacks {
            rows.push(vec![
                a.attack.name().to_string(),
                a.rss_growth_mib()
                    .map_or("?".into(), |g| format!("{g:.1} (≤ {MAX_GROWTH_MIB})")),
                a.fds_peak.map_or("?".into(), |f| f.to_string()),
                format!("{:.2} ({:.2})", a.user.p99_ms(), a.quiet_p99_ms),
                a.p99_vs_quiet()
                    .map_or("?".into(), |r| format!("{r:.2}x (≤ {MAX_P99_VS_QUIET}x)")),
                match &a.fresh {
                    Ok(took) => format!("ok ({:.0} ms)", took.as_secs_f64() * 1e3),
                    Err(e) => format!("FAILED: {}", shorten(e, 60)),
                },
                if a.bars_met() { "yes" } else { "NO" }.into(),
            ]);
        }
        super::text_table(&rows)
    }
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Runs the quiet run, then every attack of `params` against `run.target` (Flack on a
/// loopback address); `on_attack` sees each outcome as soon as it is known.
pub async fn abuse(
    run: &Run,
    params: &AbuseParams,
    mut on_attack: impl FnMut(&AttackOutcome),
) -> Result<AbuseOutcome> {
    let target = &run.target;
    if !target.is_flack() {
        return Err(error("the abuse scenario runs against Flack only"));
    }
    let server = client::server_addr(target).await?;
    if !server.ip().is_loopback()
        || !params.user_address.is_loopback()
        || !params.attacker_address.is_loopback()
    {
        return Err(error(format!(
            "the abuse scenario only runs on loopback (server {server}, user {}, attacker {})",
            params.user_address, params.attacker_address
        )));
    }
    let user = User::login(target, server, params).await?;
    let (stop, stopped) = watch::channel(false);
    let chatting = tokio::spawn(user.clone().chat("quiet".into(), stopped));
    tokio::time::sleep(params.quiet).await;
    let _ = stop.send(true);
    let quiet = chatting.await?;
    if quiet.acked == 0 {
        return Err(error(format!(
            "the normal user got no ack in the quiet run: {}",
            quiet.first_error.as_deref().unwrap_or("no error seen")
        )));
    }
    let mut attacks = Vec::with_capacity(params.attacks.len());
    for (i, attack) in params.attacks.iter().enumerate() {
        let outcome = run_attack(*attack, i, run, server, params, &user, quiet.p99_ms()).await?;
        on_attack(&outcome);
        attacks.push(outcome);
    }
    Ok(AbuseOutcome { quiet, attacks })
}

/// The server's memory and descriptors, read every `sample_every` until told to stop; asks
/// the attack to stop once memory grew by `max_growth_kib`.
struct Sampler {
    peak_rss_kib: Option<u64>,
    peak_fds: Option<u64>,
    tripped: bool,
}

async fn sample(
    pid: Option<u32>,
    every: Duration,
    before_kib: Option<u64>,
    max_growth_kib: u64,
    attack_stop: Arc<watch::Sender<bool>>,
    mut done: watch::Receiver<bool>,
) -> Sampler {
    let mut s = Sampler {
        peak_rss_kib: before_kib,
        peak_fds: pid.and_then(open_fds),
        tripped: false,
    };
    let Some(pid) = pid else {
        return s;
    };
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = set(&mut done) => break,
            _ = ticks.tick() => {}
        }
        if let Some(rss) = rss_kib(pid) {
            s.peak_rss_kib = Some(s.peak_rss_kib.map_or(rss, |p| p.max(rss)));
            if before_kib.is_some_and(|b| rss.saturating_sub(b) > max_growth_kib) && !s.tripped {
                s.tripped = true;
                attack_stop.send_replace(true);
            }
        }
        if let Some(fds) = open_fds(pid) {
            s.peak_fds = Some(s.peak_fds.map_or(fds, |p| p.max(fds)));
        }
    }
    // The last reading too, so that the peak is never below "after".
    if let Some(rss) = rss_kib(pid) {
        s.peak_rss_kib = Some(s.peak_rss_kib.map_or(rss, |p| p.max(rss)));
    }
    s
}

/// Where attack number `index` comes from: `base`, then the next addresses up (127.0.0.2,
/// 127.0.0.3, …), as distinct attackers would, so that the budgets one attack spent do not
/// blunt the next.
fn attacker_for(base: IpAddr, index: usize) -> IpAddr {
    match base {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            let last = u8::try_from((usize::from(d) + index) % 254)
                .unwrap_or(2)
                .max(2);
            IpAddr::V4(Ipv4Addr::new(a, b, c, last))
        }
        other => other,
    }
}

async fn run_attack(
    attack: Attack,
    index: usize,
    run: &Run,
    server: SocketAddr,
    params: &AbuseParams,
    user: &User,
    quiet_p99_ms: f64,
) -> Result<AttackOutcome> {
    let pid = run.pid;
    if let Some(pid) = pid {
        quiesce(pid, params.quiesce).await;
    }
    let rss_before_kib = pid.and_then(rss_kib);
    let fds_before = pid.and_then(open_fds);
    let attack_stop = Arc::new(watch::channel(false).0);
    let (sampling, sampling_done) = watch::channel(false);
    let sampler = tokio::spawn(sample(
        pid,
        params.sample_every,
        rss_before_kib,
        params.max_growth_mib * 1024,
        attack_stop.clone(),
        sampling_done,
    ));
    let (user_stop, user_stopped) = watch::channel(false);
    let chatting = tokio::spawn(user.clone().chat(format!("a{index}"), user_stopped));

    let attacker = attacker_for(params.attacker_address, index);
    let ctx = Arc::new(Ctx {
        target: run.target.clone(),
        server,
        source: Source::new(attacker),
        http: client::http_client_from(attacker),
        params: params.clone(),
        counts: Counts::new(attack.rows()),
        stop: attack_stop.clone(),
        prepare_until: Instant::now() + params.prepare,
        window: Mutex::new(None),
        owner: Mutex::new(None),
        first_error: Mutex::new(None),
    });
    // The attack ends itself when its window (or preparation) is over; this bounds it anyway.
    let bound = params.prepare + params.window + Duration::from_secs(30);
    let attacking = tokio::spawn(ctx.clone().attack(attack));
    let abort = attacking.abort_handle();
    if tokio::time::timeout(bound, attacking).await.is_err() {
        abort.abort();
        ctx.note("the attack did not end in time and was aborted".into());
    }
    ctx.stop.send_replace(true);
    let window_secs = ctx
        .window
        .lock()
        .expect("not poisoned")
        .map_or(0.0, |started| started.elapsed().as_secs_f64())
        .min(params.window.as_secs_f64());
    let _ = user_stop.send(true);
    let user_outcome = chatting.await?;

    // The attack's sockets are closed: let the server notice, then read it again.
    tokio::time::sleep(params.settle).await;
    let rss_after_kib = pid.and_then(rss_kib);
    let fds_after = pid.and_then(open_fds);
    let _ = sampling.send(true);
    let sampled = sampler.await?;
    let fresh = fresh_browser(&run.target, server, params).await;

    let counts = ctx.counts.snapshot();
    let first_error = ctx.first_error.lock().expect("not poisoned").clone();
    Ok(AttackOutcome {
        attack,
        rss_before_kib,
        rss_peak_kib: sampled.peak_rss_kib.max(rss_after_kib),
        rss_after_kib,
        fds_before,
        fds_peak: sampled.peak_fds.max(fds_after),
        fds_after,
        user: user_outcome,
        quiet_p99_ms,
        fresh: fresh.map_err(|e| e.to_string()),
        counts,
        window_secs,
        stopped_early: sampled.tripped,
        first_error,
    })
}

/// Waits until the resident memory of `pid` moves by less than 1 MiB in half a second, or
/// `limit` passes.
async fn quiesce(pid: u32, limit: Duration) {
    let until = Instant::now() + limit;
    let mut last = rss_kib(pid);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = rss_kib(pid);
        match (last, now) {
            (Some(a), Some(b)) if a.abs_diff(b) < 1024 => return,
            (_, None) => return,
            _ => last = now,
        }
    }
}

/// A fresh browser, then a fresh bot: `GET /` without a cookie answers 200 and sets one; a
/// new identity opens `/ws`, gets `hello`, and subscribes to the user's channel. How long it
/// all took.
async fn fresh_browser(
    target: &Target,
    server: SocketAddr,
    params: &AbuseParams,
) -> Result<Duration> {
    let started = Instant::now();
    tokio::time::timeout(FRESH_TIMEOUT, async {
        let http = client::http_client_from(params.user_address);
        let res = http.get(format!("{}/", target.base_url())).send().await?;
        let status = res.status().as_u16();
        let cookie = res
            .headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.starts_with("flack_session=")));
        res.bytes().await?;
        if status != 200 {
            return Err(error(format!("GET / answered {status}")));
        }
        if !cookie {
            return Err(error("GET / set no flack_session cookie"));
        }
        let token = client::login(&http, target, &unique_name("fresh")).await?;
        let source = Source::new(params.user_address);
        let mut ws = client::connect_from(target, server, &source, Some(&token)).await?;
        match client::next_event(&mut ws).await? {
            ServerEvent::Hello { .. } => {}
            other => return Err(error(format!("expected hello, got {other:?}"))),
        }
        client::flack_subscribe(&mut ws, &params.channel).await?;
        let _ = ws.close(None).await;
        Ok(started.elapsed())
    })
    .await
    .map_err(|_| error("the fresh browser was not served within 15 s"))?
}

/// The normal user: one bot identity, connecting from the user's address.
#[derive(Clone)]
struct User {
    target: Target,
    server: SocketAddr,
    source: Source,
    token: String,
    channel: String,
    rate: u32,
    grace: Duration,
}

impl User {
    async fn login(target: &Target, server: SocketAddr, params: &AbuseParams) -> Result<User> {
        let http = client::http_client_from(params.user_address);
        let token = client::login(&http, target, "normal-user").await?;
        let user = User {
            target: target.clone(),
            server,
            source: Source::new(params.user_address),
            token,
            channel: params.channel.clone(),
            rate: params.user_rate.max(1),
            grace: params.grace,
        };
        // One message first, so that the quiet run does not measure a cold store.
        let mut ws = user.join().await?;
        client::flack_post(&mut ws, &user.channel, "normal user warming up", "warm-up").await?;
        let _ = ws.close(None).await;
        Ok(user)
    }

    /// Opens a socket, reads `hello` and subscribes.
    async fn join(&self) -> Result<Ws> {
        let mut ws =
            client::connect_from(&self.target, self.server, &self.source, Some(&self.token))
                .await?;
        match client::next_event(&mut ws).await? {
            ServerEvent::Hello { .. } => {}
            other => return Err(error(format!("expected hello, got {other:?}"))),
        }
        client::flack_subscribe(&mut ws, &self.channel).await?;
        Ok(ws)
    }

    /// Chats at `rate` until `stop`, then waits up to `grace` for the last answers. Client
    /// ids are `{tag}-{n}`: a tag per run, since the server answers a reused id with the
    /// original ack.
    async fn chat(self, tag: String, mut stop: watch::Receiver<bool>) -> Chatting {
        let mut out = Chatting {
            sent: 0,
            acked: 0,
            refused: 0,
            unanswered: 0,
            reconnects: 0,
            latency: histogram(),
            first_error: None,
        };
        let period = Duration::from_secs_f64(1.0 / f64::from(self.rate));
        // The schedule starts once the first join is done (a later rejoin is the server's
        // doing, so the sends it delays count as late).
        let mut ticks: Option<tokio::time::Interval> = None;
        // Each message's due time, and whether it was answered.
        let mut due: Vec<(Instant, bool)> = Vec::new();
        let mut pending = 0usize;
        let mut ws: Option<Ws> = None;
        let mut give_up_at: Option<tokio::time::Instant> = None;
        let prefix = format!("{tag}-");
        loop {
            if give_up_at.is_some() && pending == 0 {
                break;
            }
            if ws.is_none() {
                if out.reconnects > MAX_USER_RECONNECTS || *stop.borrow() {
                    break;
                }
                let joined = tokio::select! {
                    joined = self.join() => joined,
                    _ = set(&mut stop) => break,
                };
                match joined {
                    Ok(socket) => {
                        ws = Some(socket);
                        ticks.get_or_insert_with(|| tokio::time::interval(period));
                    }
                    Err(e) => {
                        out.reconnects += 1;
                        out.first_error.get_or_insert_with(|| format!("join: {e}"));
                        tokio::time::sleep(BACKOFF * 5).await;
                    }
                }
                continue;
            }
            let socket = ws.as_mut().expect("just opened");
            let ticks = ticks.as_mut().expect("started at the first join");
            let grace_over = async move {
                match give_up_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = grace_over => break,
                _ = set(&mut stop), if give_up_at.is_none() => {
                    give_up_at = Some(tokio::time::Instant::now() + self.grace);
                }
                at = ticks.tick(), if give_up_at.is_none() => {
                    let n = due.len();
                    due.push((at.into_std(), false));
                    pending += 1;
                    out.sent += 1;
                    let event = client::send_event_for(
                        &self.channel,
                        &format!("normal user message {n}"),
                        &format!("{prefix}{n}"),
                    );
                    if let Err(e) = client::send_event(socket, &event).await {
                        out.first_error.get_or_insert_with(|| format!("send: {e}"));
                        out.reconnects += 1;
                        ws = None;
                    }
                }
                frame = socket.next() => match frame {
                    Some(Ok(Frame::Text(text))) => {
                        let text = text.as_str();
                        let is_ack = text.starts_with(r#"{"type":"ack","#);
                        if !is_ack && !text.starts_with(r#"{"type":"error","#) {
                            continue;
                        }
                        let (client_id, acked) = match serde_json::from_str::<ServerEvent>(text) {
                            Ok(ServerEvent::Ack { client_id, .. }) => (client_id, true),
                            Ok(ServerEvent::Error { client_id, message, .. }) => {
                                out.first_error.get_or_insert_with(|| format!("error event: {message}"));
                                (client_id, false)
                            }
                            _ => continue,
                        };
                        let Some(n) = client_id
                            .as_deref()
                            .and_then(|id| id.strip_prefix(&prefix))
                            .and_then(|n| n.parse::<usize>().ok())
                        else {
                            continue;
                        };
                        if let Some((at, answered)) = due.get_mut(n).filter(|(_, a)| !*a) {
                            *answered = true;
                            pending -= 1;
                            if acked {
                                out.acked += 1;
                                out.latency.saturating_record(at.elapsed().as_micros().max(1) as u64);
                            } else {
                                out.refused += 1;
                            }
                        }
                    }
                    Some(Ok(Frame::Close(frame))) => {
                        out.first_error.get_or_insert_with(|| format!("closed by the server: {frame:?}"));
                        out.reconnects += 1;
                        ws = None;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        out.first_error.get_or_insert_with(|| format!("socket failed: {e}"));
                        out.reconnects += 1;
                        ws = None;
                    }
                    None => {
                        out.first_error.get_or_insert_with(|| "socket ended".into());
                        out.reconnects += 1;
                        ws = None;
                    }
                },
            }
        }
        for (at, answered) in &due {
            if !answered {
                out.unanswered += 1;
                out.latency
                    .saturating_record(at.elapsed().as_micros().max(1) as u64);
            }
        }
        if let Some(mut socket) = ws {
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
        }
        out
    }
}

/// An attack's named counters, shared by its tasks; each is a row of its report.
#[derive(Debug)]
struct Counts(Mutex<Vec<(String, u64)>>);

impl Counts {
    fn new(rows: &[&str]) -> Self {
        Counts(Mutex::new(
            rows.iter().map(|r| (r.to_string(), 0)).collect(),
        ))
    }

    fn add(&self, name: &str, n: u64) {
        let mut counts = self.0.lock().expect("not poisoned");
        match counts.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v += n,
            None => counts.push((name.to_string(), n)),
        }
    }

    fn snapshot(&self) -> Vec<(String, u64)> {
        self.0.lock().expect("not poisoned").clone()
    }
}

/// What every attacking task shares.
struct Ctx {
    target: Target,
    server: SocketAddr,
    source: Source,
    http: reqwest::Client,
    params: AbuseParams,
    counts: Counts,
    /// Set when the window is over (or the server grew too much): every task ends.
    stop: Arc<watch::Sender<bool>>,
    prepare_until: Instant,
    /// When the window started.
    window: Mutex<Option<Instant>>,
    /// The identity that creates the attack's channels.
    owner: Mutex<Option<String>>,
    first_error: Mutex<Option<String>>,
}

/// What a subscribing socket's reader saw.
enum Ended {
    /// The server closed the socket or it failed.
    ByServer,
    /// The attack stopped first.
    Stopped,
}

impl Ctx {
    async fn attack(self: Arc<Self>, attack: Attack) {
        match attack {
            Attack::SubscribeUnknown => self.subscribe_unknown().await,
            Attack::NeverRead => self.never_read().await,
            Attack::SlowHttp => self.slow_http().await,
            Attack::ChannelFlood => self.channel_flood().await,
            Attack::IdentityFlood => self.identity_flood().await,
            Attack::FrameFlood => self.frame_flood().await,
            Attack::ManyWindows => self.many_windows().await,
        }
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Still preparing: not stopped and within the preparation's time.
    fn preparing(&self) -> bool {
        !self.stopped() && Instant::now() < self.prepare_until
    }

    /// `fut`, unless the attack stops first.
    async fn until_stop<F: Future>(&self, fut: F) -> Option<F::Output> {
        let mut stop = self.stop.subscribe();
        tokio::select! {
            biased;
            _ = set(&mut stop) => None,
            out = fut => Some(out),
        }
    }

    /// Starts the attack's window: it stops when the window is over.
    fn start_window(self: &Arc<Self>) {
        *self.window.lock().expect("not poisoned") = Some(Instant::now());
        let stop = self.stop.clone();
        let window = self.params.window;
        tokio::spawn(async move {
            tokio::time::sleep(window).await;
            stop.send_replace(true);
        });
    }

    fn note(&self, problem: String) {
        self.first_error
            .lock()
            .expect("not poisoned")
            .get_or_insert(problem);
    }

    /// A pause after a refusal (cut short when the attack stops).
    async fn back_off(&self) {
        let _ = self.until_stop(tokio::time::sleep(BACKOFF)).await;
    }

    /// A named bot identity (`POST /auth/session`) from the attacker's address.
    async fn named_identity(&self, prefix: &str) -> Option<String> {
        match client::login(&self.http, &self.target, &unique_name(prefix)).await {
            Ok(token) => Some(token),
            Err(e) => {
                self.note(format!("identity: {e}"));
                None
            }
        }
    }

    /// A named identity or, when the server refuses one, a browser's: the cookie `GET /`
    /// sets (enough to open `/ws` and subscribe).
    async fn any_identity(&self, prefix: &str) -> Option<String> {
        if let Some(token) = self.named_identity(prefix).await {
            return Some(token);
        }
        let res = self
            .http
            .get(format!("{}/", self.target.base_url()))
            .send()
            .await
            .ok()?;
        let token = res.headers().get_all("set-cookie").iter().find_map(|v| {
            let v = v.to_str().ok()?;
            let rest = v.strip_prefix("flack_session=")?;
            Some(rest.split(';').next()?.to_string())
        });
        if token.is_none() {
            self.note(format!("no identity: GET / answered {}", res.status()));
        }
        token
    }

    /// A WebSocket from the attacker's address (counted as opened or refused).
    async fn open_ws(&self, token: &str, source: &Source) -> Option<Ws> {
        let opened = self
            .until_stop(client::connect_from(
                &self.target,
                self.server,
                source,
                Some(token),
            ))
            .await?;
        match opened {
            Ok(ws) => {
                self.counts.add("sockets_opened", 1);
                Some(ws)
            }
            Err(e) => {
                self.counts.add("connect_refused", 1);
                self.note(format!("connect: {e}"));
                self.back_off().await;
                None
            }
        }
    }

    /// Reads (and counts) what the server sends until it closes the socket or the attack
    /// stops.
    async fn drain(self: Arc<Self>, mut stream: SplitStream<Ws>) -> Ended {
        let mut replies: u64 = 0;
        let ended = loop {
            match self.until_stop(stream.next()).await {
                None => break Ended::Stopped,
                Some(Some(Ok(Frame::Text(_)))) => {
                    replies += 1;
                    if replies.is_multiple_of(1024) {
                        self.counts.add("replies", 1024);
                    }
                }
                Some(Some(Ok(Frame::Close(_)) | Err(_)) | None) => break Ended::ByServer,
                Some(Some(Ok(_))) => {}
            }
        };
        self.counts.add("replies", replies % 1024);
        ended
    }

    /// A socket that floods frames made by `frame` (its argument counts up; the name it
    /// returns is the counter of that kind of frame) and reads what comes back, reconnecting
    /// whenever the server closes it, until the window ends.
    async fn flood_frames(
        self: Arc<Self>,
        token: String,
        frame: impl Fn(u64) -> (Frame, &'static str),
    ) {
        let mut n = 0u64;
        for _ in 0..MAX_ATTEMPTS {
            if self.stopped() || n >= self.params.max_ops {
                return;
            }
            let Some(ws) = self.open_ws(&token, &self.source).await else {
                continue;
            };
            let (mut sink, stream) = ws.split();
            let reader = tokio::spawn(self.clone().drain(stream));
            let mut write_failed = false;
            while !self.stopped() && !reader.is_finished() && n < self.params.max_ops {
                let mut kinds: Vec<&'static str> = Vec::with_capacity(FLOOD_BATCH);
                let batch = async {
                    for _ in 0..FLOOD_BATCH {
                        let (frame, kind) = frame(n + kinds.len() as u64);
                        sink.feed(frame).await?;
                        kinds.push(kind);
                    }
                    sink.flush().await
                };
                let written = self.until_stop(batch).await;
                n += kinds.len() as u64;
                self.counts.add("frames_sent", kinds.len() as u64);
                let mut i = 0;
                while i < kinds.len() {
                    let same = kinds[i..].iter().take_while(|k| **k == kinds[i]).count();
                    self.counts.add(kinds[i], same as u64);
                    i += same;
                }
                if matches!(written, Some(Err(_))) {
                    write_failed = true;
                    break;
                }
                // Let this socket's reader (and everyone else) run between batches.
                tokio::task::yield_now().await;
            }
            let by_server = match tokio::time::timeout(Duration::from_secs(1), reader).await {
                Ok(Ok(Ended::ByServer)) => true,
                _ => write_failed,
            };
            if by_server && !self.stopped() {
                self.counts.add("closed_by_server", 1);
                self.back_off().await;
            }
        }
    }

    /// New random channel names, subscribed to as fast as the sockets go.
    async fn subscribe_unknown(self: Arc<Self>) {
        let Some(token) = self.any_identity("abuse-sub").await else {
            return;
        };
        self.start_window();
        let tasks: Vec<_> = (0..self.params.subscribe_sockets.max(1))
            .map(|_| {
                tokio::spawn(self.clone().flood_frames(token.clone(), |_| {
                    let channel = format!("u{:016x}", rand::random::<u64>());
                    (subscribe_frame(&channel), "subscribes_sent")
                }))
            })
            .collect();
        join(tasks).await;
    }

    /// One channel of big messages, then sockets that subscribe to it over and over and never
    /// read.
    async fn never_read(self: Arc<Self>) {
        let channel = unique_name("abuse-big");
        if self.create_channel(&channel).await.is_none() {
            return;
        }
        self.fill(&channel, self.params.fill_messages).await;
        let Some(token) = self.any_identity("abuse-nr").await else {
            return;
        };
        self.start_window();
        let tasks: Vec<_> = (0..self.params.never_read_sockets.max(1))
            .map(|_| {
                tokio::spawn(
                    self.clone()
                        .never_read_socket(token.clone(), channel.clone()),
                )
            })
            .collect();
        join(tasks).await;
    }

    async fn never_read_socket(self: Arc<Self>, token: String, channel: String) {
        let source = Source {
            recv_buffer: Some(4096),
            small: true,
            ..self.source
        };
        let subscribe = subscribe_frame(&channel);
        let subscribes = self
            .params
            .never_read_subscribes
            .min(self.params.max_ops as usize);
        for _ in 0..MAX_ATTEMPTS {
            if self.stopped() {
                return;
            }
            let Some(mut ws) = self.open_ws(&token, &source).await else {
                continue;
            };
            let mut sent = 0;
            let held = self
                .until_stop(hold_unread(&mut ws, &subscribe, subscribes, &mut sent))
                .await;
            self.counts.add("subscribes_sent", sent as u64);
            match held {
                // The window ended first (with the socket held, or still writing).
                None | Some(Ok(())) => return,
                Some(Err(_)) => {
                    self.counts.add("closed_by_server", 1);
                    self.back_off().await;
                }
            }
        }
    }

    /// A third of the sockets send a request one byte a second (slowloris), a third send full
    /// headers announcing a big body and then the body one byte a second, a third connect and
    /// say nothing. Each reconnects when the server lets go.
    async fn slow_http(self: Arc<Self>) {
        self.start_window();
        let host = self
            .target
            .base_url()
            .trim_start_matches("http://")
            .to_string();
        let tasks: Vec<_> = (0..self.params.slow_sockets)
            .map(|i| {
                let opening = match i % 3 {
                    0 => Slow::Headers(format!(
                        "GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: flack-load abuse\r\n\
                         Accept: text/html\r\nX-Padding: {}\r\n\r\n",
                        "a".repeat(512)
                    )),
                    1 => Slow::Body(format!(
                        "POST /api/create_channel HTTP/1.1\r\nHost: {host}\r\n\
                         Content-Type: application/x-www-form-urlencoded\r\n\
                         Content-Length: {}\r\n\r\n",
                        self.params.slow_body_bytes
                    )),
                    _ => Slow::Idle,
                };
                tokio::spawn(self.clone().slow_socket(opening))
            })
            .collect();
        join(tasks).await;
    }

    async fn slow_socket(self: Arc<Self>, slow: Slow) {
        let body_bytes = self.params.slow_body_bytes;
        let byte_at = |at: usize| match &slow {
            Slow::Headers(request) => request.as_bytes().get(at).copied(),
            Slow::Body(_) => (at < body_bytes).then_some(b'a'),
            Slow::Idle => None,
        };
        let mut buf = [0u8; 1024];
        for _ in 0..MAX_ATTEMPTS {
            if self.stopped() {
                return;
            }
            let tcp = match self
                .until_stop(client::tcp_from(&self.source, self.server))
                .await
            {
                None => return,
                Some(Ok(tcp)) => tcp,
                Some(Err(e)) => {
                    self.counts.add("connect_refused", 1);
                    self.note(format!("connect: {e}"));
                    self.back_off().await;
                    continue;
                }
            };
            self.counts.add("sockets_opened", 1);
            let (mut read, mut write) = tcp.into_split();
            if let Slow::Body(headers) = &slow {
                if write.write_all(headers.as_bytes()).await.is_err() {
                    self.counts.add("closed_by_server", 1);
                    continue;
                }
                self.counts.add("bytes_sent", headers.len() as u64);
            }
            let mut ticks = tokio::time::interval(Duration::from_secs(1));
            let mut at = 0;
            let mut stop = self.stop.subscribe();
            loop {
                tokio::select! {
                    biased;
                    _ = set(&mut stop) => {
                        self.counts.add("held_at_end", 1);
                        return;
                    }
                    read = read.read(&mut buf) => match read {
                        Ok(0) | Err(_) => break,
                        // An answer (408, 413, …): the server is done with this request.
                        Ok(_) => self.counts.add("responses", 1),
                    },
                    _ = ticks.tick(), if byte_at(at).is_some() => {
                        let byte = byte_at(at).expect("guarded");
                        if write.write_all(&[byte]).await.is_err() {
                            break;
                        }
                        at += 1;
                        self.counts.add("bytes_sent", 1);
                    }
                }
            }
            // The server let go: come back a second later, as a slowloris does.
            self.counts.add("closed_by_server", 1);
            let _ = self
                .until_stop(tokio::time::sleep(Duration::from_secs(1)))
                .await;
        }
    }

    /// One named identity creating channels, `flood_concurrency` requests at a time.
    async fn channel_flood(self: Arc<Self>) {
        let Some(token) = self.named_identity("abuse-chan").await else {
            return;
        };
        self.start_window();
        let tasks: Vec<_> = (0..self.params.flood_concurrency.max(1))
            .map(|_| {
                let (ctx, token) = (self.clone(), token.clone());
                tokio::spawn(async move {
                    ctx.clone()
                        .flood_requests("channels_created", move |ctx: &Ctx| {
                            ctx.http
                                .post(format!("{}/api/create_channel", ctx.target.base_url()))
                                .bearer_auth(&token)
                                .form(&[("name", unique_name("flood"))])
                        })
                        .await
                })
            })
            .collect();
        join(tasks).await;
    }

    /// `POST /auth/session`, `flood_concurrency` at a time.
    async fn identity_flood(self: Arc<Self>) {
        self.start_window();
        let tasks: Vec<_> = (0..self.params.flood_concurrency.max(1))
            .map(|_| {
                let ctx = self.clone();
                tokio::spawn(async move {
                    ctx.clone()
                        .flood_requests("identities_created", |ctx: &Ctx| {
                            ctx.http
                                .post(format!("{}/auth/session", ctx.target.base_url()))
                                .json(&serde_json::json!({ "name": "flood" }))
                        })
                        .await
                })
            })
            .collect();
        join(tasks).await;
    }

    /// Sends the requests `request` makes, one after another, until the window ends; a
    /// success counts as `created`.
    async fn flood_requests(
        self: Arc<Self>,
        created: &str,
        request: impl Fn(&Ctx) -> reqwest::RequestBuilder,
    ) {
        for _ in 0..self.params.max_ops {
            if self.stopped() {
                return;
            }
            let answer = self
                .until_stop(async {
                    let res = request(self.as_ref()).send().await?.error_for_status()?;
                    res.bytes().await
                })
                .await;
            // A request cut short by the end of the window is not counted.
            let Some(answer) = answer else {
                return;
            };
            self.counts.add("requests", 1);
            match answer {
                Ok(_) => self.counts.add(created, 1),
                Err(e) if e.status().is_some() => {
                    self.counts.add("refused", 1);
                    self.note(format!("refused: {e}"));
                }
                Err(e) => {
                    self.counts.add("errors", 1);
                    self.note(format!("request: {e}"));
                    self.back_off().await;
                }
            }
        }
    }

    /// Deletes of random message ids and malformed frames, as fast as the socket goes.
    async fn frame_flood(self: Arc<Self>) {
        let Some(token) = self.any_identity("abuse-frames").await else {
            return;
        };
        self.start_window();
        let tasks: Vec<_> = (0..self.params.frame_sockets.max(1))
            .map(|_| {
                tokio::spawn(self.clone().flood_frames(token.clone(), |n| {
                    const MALFORMED: [&str; 6] = [
                        "not json",
                        r#"{"type":"nope"}"#,
                        r#"{"type":"delete"}"#,
                        r#"{"type":"send","channel":"general"}"#,
                        "{}",
                        "[1,2,3]",
                    ];
                    if n % 2 == 0 {
                        let event = ClientEvent::Delete {
                            message_id: crate::protocol::MessageId(
                                uuid::Uuid::new_v4().to_string(),
                            ),
                        };
                        let text = serde_json::to_string(&event).expect("events serialize");
                        (Frame::text(text), "deletes_sent")
                    } else {
                        let text = MALFORMED[(n / 2) as usize % MALFORMED.len()];
                        (Frame::text(text), "malformed_sent")
                    }
                }))
            })
            .collect();
        join(tasks).await;
    }

    /// Many channels of big messages, then sockets that subscribe to each in turn and read
    /// every window.
    async fn many_windows(self: Arc<Self>) {
        let channels: Vec<String> = (0..self.params.window_channels.max(1))
            .map(|_| unique_name("abuse-win"))
            .collect();
        let fill = self.params.fill_messages;
        let filled: Vec<String> = futures_util::stream::iter(channels)
            .map(|channel| {
                let ctx = self.clone();
                async move {
                    ctx.create_channel(&channel).await?;
                    let posted = ctx.fill(&channel, fill).await;
                    if posted >= fill {
                        ctx.counts.add("channels_filled", 1);
                    }
                    Some(channel)
                }
            })
            .buffer_unordered(4)
            .filter_map(|c| async move { c })
            .collect()
            .await;
        if filled.is_empty() {
            return;
        }
        self.start_window();
        let Some(token) = self.any_identity("abuse-win").await else {
            return;
        };
        let filled = Arc::new(filled);
        let tasks: Vec<_> = (0..self.params.window_sockets.max(1))
            .map(|i| tokio::spawn(self.clone().window_socket(token.clone(), filled.clone(), i)))
            .collect();
        join(tasks).await;
    }

    async fn window_socket(
        self: Arc<Self>,
        token: String,
        channels: Arc<Vec<String>>,
        first: usize,
    ) {
        let mut n = first;
        for _ in 0..MAX_ATTEMPTS {
            if self.stopped() || n as u64 >= self.params.max_ops {
                return;
            }
            let Some(mut ws) = self.open_ws(&token, &self.source).await else {
                continue;
            };
            let ended = self
                .until_stop(self.read_windows(&mut ws, &channels, &mut n))
                .await;
            match ended {
                None | Some(Ok(())) => return,
                Some(Err(_)) => {
                    self.counts.add("closed_by_server", 1);
                    self.back_off().await;
                }
            }
        }
    }

    /// Subscribes to channel `n`, `n + 1`, … in turn, reading each window whole, up to
    /// `max_ops` subscribes.
    async fn read_windows(&self, ws: &mut Ws, channels: &[String], n: &mut usize) -> Result<()> {
        while (*n as u64) < self.params.max_ops {
            ws.send(subscribe_frame(&channels[*n % channels.len()]))
                .await?;
            *n += 1;
            self.counts.add("subscribes_sent", 1);
            // Read until this channel's window (skipping everything else).
            loop {
                match ws.next().await {
                    Some(Ok(Frame::Text(text))) => {
                        if text.as_str().starts_with(r#"{"type":"subscribed","#) {
                            self.counts.add("windows_received", 1);
                            self.counts.add("window_bytes", text.len() as u64);
                            break;
                        }
                    }
                    Some(Ok(Frame::Close(_))) | None => return Err(error("closed")),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Creates a channel as the attack's owner identity (a new one when the last was
    /// refused); `None` (noted) when refused.
    async fn create_channel(&self, channel: &str) -> Option<()> {
        let cached = self.owner.lock().expect("not poisoned").clone();
        let token = match cached {
            Some(token) => token,
            None => self.named_identity("abuse-owner").await?,
        };
        match client::create_channel(&self.http, &self.target, &token, channel).await {
            Ok(()) => {
                self.counts.add("channels_created", 1);
                *self.owner.lock().expect("not poisoned") = Some(token);
                Some(())
            }
            Err(e) => {
                self.note(format!("create channel: {e}"));
                *self.owner.lock().expect("not poisoned") = None;
                None
            }
        }
    }

    /// Posts up to `count` messages of `fill_chars` control characters to `channel`, through as
    /// many fresh bot identities as the rate limit needs (each posts until it is refused); how
    /// many were stored.
    async fn fill(&self, channel: &str, count: usize) -> usize {
        let body = "\u{1}".repeat(self.params.fill_chars.max(1));
        let mut posted = 0;
        // Enough identities for a burst of 5 each, at most.
        let most = count / 5 + 2;
        let (mut identities, mut refused) = (0, 0);
        while posted < count && identities < most && self.preparing() {
            let Some(token) = self.named_identity("abuse-fill").await else {
                break;
            };
            identities += 1;
            let Some(mut ws) = self.open_ws(&token, &self.source).await else {
                continue;
            };
            if !matches!(
                client::next_event(&mut ws).await,
                Ok(ServerEvent::Hello { .. })
            ) {
                continue;
            }
            while posted < count && self.preparing() {
                let round = (count - posted).min(FILL_ROUND);
                let (acked, turned_down) = self.post_round(&mut ws, channel, &body, round).await;
                posted += acked;
                refused += turned_down;
                if turned_down > 0 || acked < round {
                    break;
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        }
        self.counts.add("messages_filled", posted as u64);
        self.counts.add("fill_identities", identities as u64);
        self.counts.add("fill_refused", refused as u64);
        posted
    }

    /// Sends `count` messages at once and reads until each is answered (or the socket ends,
    /// or 15 s pass): how many were acknowledged and how many refused.
    async fn post_round(
        &self,
        ws: &mut Ws,
        channel: &str,
        body: &str,
        count: usize,
    ) -> (usize, usize) {
        let ids: Vec<String> = (0..count).map(|_| unique_name("fill")).collect();
        let (mut acked, mut refused) = (0, 0);
        let answered = tokio::time::timeout(client::STEP_TIMEOUT, async {
            for id in &ids {
                client::send_event(ws, &client::send_event_for(channel, body, id)).await?;
            }
            while acked + refused < count {
                match client::next_event(ws).await? {
                    ServerEvent::Ack {
                        client_id: Some(id),
                        ..
                    } if ids.contains(&id) => acked += 1,
                    ServerEvent::Error {
                        error,
                        client_id: Some(id),
                        message,
                    } if ids.contains(&id) => {
                        refused += 1;
                        // The rate limit is the expected refusal: it sends us to the next
                        // identity. Anything else is worth a note.
                        if !matches!(error, AppError::RateLimited { .. }) {
                            self.note(format!("fill: {message}"));
                        }
                    }
                    _ => {}
                }
            }
            Ok::<(), super::Error>(())
        })
        .await;
        if let Ok(Err(e)) = answered {
            self.note(format!("fill: {e}"));
        }
        (acked, refused)
    }
}

/// How a slow HTTP socket misbehaves.
enum Slow {
    /// Sends this request a byte a second.
    Headers(String),
    /// Sends these headers at once, then the body a byte a second.
    Body(String),
    /// Says nothing.
    Idle,
}

fn subscribe_frame(channel: &str) -> Frame {
    let event = ClientEvent::Subscribe {
        conversation: None,
        channel: Some(channel.into()),
        after_change: None,
    };
    Frame::text(serde_json::to_string(&event).expect("events serialize"))
}

/// Sends `count` subscribes without reading anything, then holds the socket (still never
/// reading), pinging every 250 ms to see whether the server let go; `sent` counts the
/// subscribes written. Ends only with the error of a failed write (or when its caller stops
/// waiting).
async fn hold_unread(
    ws: &mut Ws,
    subscribe: &Frame,
    count: usize,
    sent: &mut usize,
) -> std::result::Result<(), tokio_tungstenite::tungstenite::Error> {
    for _ in 0..count {
        ws.feed(subscribe.clone()).await?;
        *sent += 1;
        if (*sent).is_multiple_of(16) {
            ws.flush().await?;
        }
    }
    ws.flush().await?;
    // Bounded by count too: a day of pings.
    for _ in 0..4 * 86_400 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        ws.send(Frame::Ping(Default::default())).await?;
    }
    Ok(())
}

/// Resolves once the flag is set (at once if it is already).
async fn set(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

/// Waits for every task (a task that panicked is already over: nothing to add).
async fn join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attacks_are_named_both_ways() {
        for attack in Attack::ALL {
            assert_eq!(attack.name().parse::<Attack>(), Ok(attack));
        }
        assert!("slowloris".parse::<Attack>().is_err());
    }

    fn outcome(growth_kib: u64, p99_us: u64, fresh: bool) -> AttackOutcome {
        let mut latency = histogram();
        latency.record(p99_us).unwrap();
        AttackOutcome {
            attack: Attack::FrameFlood,
            rss_before_kib: Some(100 * 1024),
            rss_peak_kib: Some(100 * 1024 + growth_kib),
            rss_after_kib: Some(100 * 1024),
            fds_before: Some(10),
            fds_peak: Some(12),
            fds_after: Some(10),
            user: Chatting {
                sent: 1,
                acked: 1,
                refused: 0,
                unanswered: 0,
                reconnects: 0,
                latency,
                first_error: None,
            },
            quiet_p99_ms: 2.0,
            fresh: if fresh {
                Ok(Duration::from_millis(5))
            } else {
                Err("GET / answered 503".into())
            },
            counts: vec![("frames_sent".into(), 7)],
            window_secs: 1.0,
            stopped_early: false,
            first_error: None,
        }
    }

    #[test]
    fn bars_are_growth_latency_and_a_fresh_browser() {
        let params = AbuseParams::quick(1);
        let good = outcome(10 * 1024, 5_000, true);
        assert!(good.bars_met());
        let report = good.report("flack", &params);
        assert_eq!(report.case, "frame-flood sockets=1 d=1");
        assert_eq!(report.get("rss_growth_mib"), Some(10.0));
        // 5 ms over 2 ms, to the histogram's three digits.
        assert!((report.get("p99_vs_quiet").unwrap() - 2.5).abs() < 0.01);
        assert_eq!(report.get("fresh_browser_ok"), Some(1.0));
        assert_eq!(report.get("frames_sent"), Some(7.0));
        assert_eq!(report.get("bars_met"), Some(1.0));
        assert!(
            !outcome(65 * 1024, 5_000, true).bars_met(),
            "too much memory"
        );
        assert!(!outcome(0, 7_000, true).bars_met(), "too slow for the user");
        assert!(!outcome(0, 1_000, false).bars_met(), "no fresh browser");
        let all = AbuseOutcome {
            quiet: good.user.clone(),
            attacks: vec![good, outcome(0, 1_000, false)],
        };
        assert!(!all.bars_met());
        assert!(all.bars_table().contains("FAILED: GET / answered 503"));
    }

    #[test]
    fn counters_keep_their_rows_and_add_new_ones() {
        let counts = Counts::new(Attack::ChannelFlood.rows());
        counts.add("refused", 2);
        counts.add("refused", 1);
        counts.add("surprise", 1);
        let snapshot = counts.snapshot();
        assert_eq!(snapshot[0], ("requests".to_string(), 0));
        assert!(snapshot.contains(&("refused".to_string(), 3)));
        assert_eq!(snapshot.last(), Some(&("surprise".to_string(), 1)));
    }
}
