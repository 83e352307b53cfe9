//! History: how fast a channel with 100 messages is served. On Flack, clients load the
//! server-rendered page `/c/<channel>` as named users (checking each answer is 200 and shows
//! the last message), and, separately, sockets join the channel (`subscribe` → `subscribed`
//! with the 100 messages). On the reference, the clients load `/page`, a fixed page of the same
//! kind.
//!
//! Pages are loaded twice: saturated (a fixed number of clients, each asking again as soon as
//! it has its answer: the most pages per second, and what queueing does to latency) and paced
//! (requests start at a steady rate whatever the answers do, the way many independent users
//! open channels; latency counts from each request's planned start, so a slow answer cannot
//! hide the ones queued behind it).
//!
//! With `rich`, every message of the channel also carries reactions (two emoji, three
//! people) and a thread of two replies, as a busy channel's do: the page then shows every
//! reaction and reply count.

use super::client::{self, Ws};
use super::{
    add_latencies, error, fanout::prepare_channel, Better, CpuMeter, Report, Result, Run, Target,
};
use crate::protocol::HISTORY_WINDOW;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Users that post the channel's messages and load its page.
const USERS: usize = 4;

/// What a history run does.
#[derive(Debug, Clone)]
pub struct HistoryParams {
    /// Requests (and sockets) in flight at once in the saturated run.
    pub clients: usize,
    /// Page loads in the saturated run.
    pub requests: usize,
    /// Socket joins in all (Flack only).
    pub joins: usize,
    /// Page loads started per second in the paced run (0: no paced run).
    pub rate: u32,
    /// Page loads in the paced run.
    pub paced_requests: usize,
    /// Every message with reactions and a thread (Flack only).
    pub rich: bool,
}

impl HistoryParams {
    /// `clients=32 requests=2000`.
    pub fn case(&self) -> String {
        format!(
            "clients={} requests={}{}",
            self.clients,
            self.requests,
            self.rich_suffix()
        )
    }

    /// `rate=100/s requests=500`.
    pub fn paced_case(&self) -> String {
        format!(
            "rate={}/s requests={}{}",
            self.rate,
            self.paced_requests,
            self.rich_suffix()
        )
    }

    fn rich_suffix(&self) -> &'static str {
        if self.rich {
            " reactions+threads"
        } else {
            ""
        }
    }
}

/// How page loads are started.
#[derive(Debug, Clone, Copy)]
enum Pacing {
    /// This many clients, each starting its next request when the last one is answered.
    Saturated { clients: usize },
    /// One request every `1/per_sec` seconds, however many are still unanswered.
    Paced { per_sec: u32 },
}

/// Page loads measured.
#[derive(Debug, Clone)]
pub struct PageOutcome {
    /// Requests made.
    pub requests: usize,
    /// Answers that were 200 and showed the last message.
    pub ok: usize,
    /// The others (and transport errors).
    pub failed: usize,
    /// The size of one page, bytes.
    pub page_bytes: usize,
    /// Seconds for all of them.
    pub elapsed_secs: f64,
    /// Time per request, µs.
    pub latency: Histogram<u64>,
    /// The server's CPU use meanwhile, % of one core.
    pub server_cpu_pct: Option<f64>,
    /// The server's CPU time meanwhile, seconds.
    pub server_cpu_secs: Option<f64>,
    /// The first failure.
    pub first_error: Option<String>,
}

/// Socket joins measured.
#[derive(Debug, Clone)]
pub struct JoinOutcome {
    /// Joins made.
    pub joins: usize,
    /// Joins answered with the whole window (100 messages).
    pub ok: usize,
    /// The others.
    pub failed: usize,
    /// Seconds for all of them.
    pub elapsed_secs: f64,
    /// Time per join, µs.
    pub latency: Histogram<u64>,
    /// The first failure.
    pub first_error: Option<String>,
}

/// What a history run measured.
#[derive(Debug, Clone)]
pub struct HistoryOutcome {
    /// Page loads, saturated.
    pub page: PageOutcome,
    /// Page loads at a steady rate (when `rate` > 0).
    pub paced: Option<PageOutcome>,
    /// Socket joins (Flack only).
    pub join: Option<JoinOutcome>,
}

impl HistoryOutcome {
    /// The figures as reports: `history` (saturated pages, then paced pages) and, for Flack,
    /// `join`.
    pub fn reports(&self, label: &str, params: &HistoryParams) -> Vec<Report> {
        let mut reports = vec![self.page.report(params.case(), label)];
        if let Some(paced) = &self.paced {
            reports.push(paced.report(params.paced_case(), label));
        }
        if let Some(j) = &self.join {
            let mut join = Report::new(
                "join",
                format!("clients={} joins={}", params.clients, params.joins),
                label,
            );
            join.count("joins", j.joins as u64)
                .count("ok", j.ok as u64)
                .metric("failed", j.failed as f64, "", Better::Lower)
                .metric(
                    "joins_per_s",
                    per_second(j.ok + j.failed, j.elapsed_secs),
                    "/s",
                    Better::Higher,
                );
            add_latencies(
                &mut join,
                "lat",
                &j.latency,
                &[("p50", 0.5), ("p99", 0.99), ("max", 1.0)],
            );
            reports.push(join);
        }
        reports
    }
}

impl PageOutcome {
    fn report(&self, case: String, label: &str) -> Report {
        let p = self;
        let mut page = Report::new("history", case, label);
        page.count("requests", p.requests as u64)
            .count("ok", p.ok as u64)
            .metric("failed", p.failed as f64, "", Better::Lower)
            .metric("page_bytes", p.page_bytes as f64, "B", Better::Neither)
            .metric(
                "req_per_s",
                per_second(p.ok + p.failed, p.elapsed_secs),
                "/s",
                Better::Higher,
            );
        add_latencies(
            &mut page,
            "lat",
            &p.latency,
            &[("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)],
        );
        if let Some(cpu) = p.server_cpu_pct {
            page.metric("server_cpu_pct", cpu, "%", Better::Neither);
        }
        if let (Some(secs), true) = (p.server_cpu_secs, p.ok + p.failed > 0) {
            page.metric(
                "server_ms_per_request",
                secs * 1e3 / (p.ok + p.failed) as f64,
                "ms",
                Better::Lower,
            );
        }
        page
    }
}

fn per_second(count: usize, secs: f64) -> f64 {
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

/// A Flack channel with [`HISTORY_WINDOW`] messages posted over the socket by [`USERS`]
/// users in turn (each waiting for its ack, well under the default rate limit).
pub struct PreparedChannel {
    /// Its name.
    pub channel: String,
    /// The users' tokens.
    pub tokens: Vec<String>,
    /// The last message's text: every page must show it.
    pub last_body: String,
}

/// Creates and fills a channel on Flack.
pub async fn prepare(http: &reqwest::Client, target: &Target) -> Result<PreparedChannel> {
    let channel = prepare_channel(http, target, "hist").await?;
    let mut tokens = Vec::new();
    let mut sockets: Vec<Ws> = Vec::new();
    for u in 0..USERS {
        let token = client::login(http, target, &format!("load-reader{u}")).await?;
        sockets.push(client::flack_connect(target, &token, false).await?);
        tokens.push(token);
    }
    let body = |i: usize| format!("history message {i} of {HISTORY_WINDOW} lorem ipsum dolor sit");
    for i in 1..=HISTORY_WINDOW {
        let ws = &mut sockets[i % USERS];
        client::flack_post(ws, &channel, &body(i), &format!("h{i}")).await?;
    }
    Ok(PreparedChannel {
        channel,
        tokens,
        last_body: body(HISTORY_WINDOW),
    })
}

/// Reactions each message of a rich channel gets: (emoji, which users, counted from the
/// message's own index).
const REACTIONS: [(&str, &[usize]); 2] = [("👍", &[0, 1]), ("🎉", &[2])];
/// Thread replies each message of a rich channel gets, by these users (counted likewise).
const REPLIERS: [usize; 2] = [1, 3];

/// Gives every message of a prepared channel its reactions and a thread of replies, over
/// the users' sockets, and checks the channel shows them all.
pub async fn enrich(
    http: &reqwest::Client,
    target: &Target,
    prepared: &PreparedChannel,
) -> Result<()> {
    let mut sockets: Vec<Ws> = Vec::new();
    for token in &prepared.tokens {
        sockets.push(client::flack_connect(target, token, false).await?);
    }
    let history =
        client::channel_history(http, target, &prepared.tokens[0], &prepared.channel).await?;
    for (i, message) in history.messages.iter().enumerate() {
        for (emoji, users) in REACTIONS {
            for u in users {
                let react = crate::protocol::ClientEvent::React {
                    message_id: message.id.clone(),
                    emoji: emoji.into(),
                    on: true,
                };
                client::send_event(&mut sockets[(i + u) % USERS], &react).await?;
            }
        }
        for (r, u) in REPLIERS.iter().enumerate() {
            let body = format!("reply {r} to message {i}");
            let ws = &mut sockets[(i + u) % USERS];
            client::flack_reply(ws, &message.id, &body, &format!("r{i}-{r}")).await?;
        }
    }
    // Reactions have no answer of their own: wait until the channel shows them all.
    let reacted = REACTIONS
        .iter()
        .map(|(_, users)| users.len())
        .sum::<usize>();
    for _ in 0..200 {
        let now =
            client::channel_history(http, target, &prepared.tokens[0], &prepared.channel).await?;
        let done = now.messages.len() == history.messages.len()
            && now.messages.iter().all(|m| {
                m.reactions.iter().map(|r| r.count as usize).sum::<usize>() == reacted
                    && m.thread.as_ref().map(|t| t.replies as usize) == Some(REPLIERS.len())
            });
        if done {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    Err(error("the channel does not show every reaction and reply"))
}

/// A real Flack channel page with 100 messages, for the reference to serve.
pub async fn page_snapshot(target: &Target) -> Result<Vec<u8>> {
    let http = client::http_client();
    let prepared = prepare(&http, target).await?;
    let res = http
        .get(format!("{}/c/{}", target.base_url(), prepared.channel))
        .bearer_auth(&prepared.tokens[0])
        .send()
        .await?;
    if !res.status().is_success() {
        return Err(error(format!("channel page: HTTP {}", res.status())));
    }
    let page = res.bytes().await?.to_vec();
    if !String::from_utf8_lossy(&page).contains(&prepared.last_body) {
        return Err(error("the channel page does not show the last message"));
    }
    Ok(page)
}

/// Runs the history scenario on `run.target`.
pub async fn history(run: &Run, params: &HistoryParams) -> Result<HistoryOutcome> {
    let target = &run.target;
    let http = client::http_client();
    let (url, tokens, marker, prepared) = match target {
        Target::Flack { base_url } => {
            let prepared = prepare(&http, target).await?;
            if params.rich {
                enrich(&http, target, &prepared).await?;
            }
            let url = format!("{base_url}/c/{}", prepared.channel);
            (
                url,
                prepared.tokens.clone(),
                Some(prepared.last_body.clone()),
                Some(prepared),
            )
        }
        Target::Reference { base_url } => (format!("{base_url}/page"), Vec::new(), None, None),
    };
    let loads = PageLoads {
        url: Arc::new(url),
        tokens: Arc::new(tokens),
        marker: Arc::new(marker),
    };
    let saturated = Pacing::Saturated {
        clients: params.clients,
    };
    let page = load_pages(run, &http, &loads, saturated, params.requests).await?;
    let paced = if params.rate > 0 && params.paced_requests > 0 {
        let pacing = Pacing::Paced {
            per_sec: params.rate,
        };
        Some(load_pages(run, &http, &loads, pacing, params.paced_requests).await?)
    } else {
        None
    };
    let join = match &prepared {
        Some(prepared) if params.joins > 0 => Some(joins(target, prepared, params).await?),
        _ => None,
    };
    Ok(HistoryOutcome { page, paced, join })
}

/// What every page load asks for and checks (cheap to clone: shared parts).
#[derive(Clone)]
struct PageLoads {
    url: Arc<String>,
    /// Bearer tokens, used in turn (none: anonymous).
    tokens: Arc<Vec<String>>,
    /// Text every good answer shows.
    marker: Arc<Option<String>>,
}

/// One page load's result.
enum Loaded {
    Ok { bytes: usize },
    Failed(String),
}

impl PageLoads {
    /// Loads the page once as user `n` (in turn).
    async fn load(&self, http: &reqwest::Client, n: usize) -> Loaded {
        let mut request = http.get(self.url.as_str());
        if !self.tokens.is_empty() {
            request = request.bearer_auth(&self.tokens[n % self.tokens.len()]);
        }
        let answer = async {
            let res = request.send().await?;
            let status = res.status();
            let body = res.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        }
        .await;
        match answer {
            Ok((status, body)) => {
                let shows = self
                    .marker
                    .as_deref()
                    .is_none_or(|m| String::from_utf8_lossy(&body).contains(m));
                if status.is_success() && shows && !body.is_empty() {
                    Loaded::Ok { bytes: body.len() }
                } else {
                    Loaded::Failed(format!(
                        "HTTP {status}, {} bytes, shows last: {shows}",
                        body.len()
                    ))
                }
            }
            Err(e) => Loaded::Failed(e.to_string()),
        }
    }
}

/// Tallies of some page loads.
struct Tally {
    latency: Histogram<u64>,
    ok: usize,
    failed: usize,
    bytes: usize,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            latency: super::histogram(),
            ok: 0,
            failed: 0,
            bytes: 0,
            first_error: None,
        }
    }

    /// Counts one load that was due to start at `since`.
    fn record(&mut self, since: Instant, loaded: Loaded) {
        self.latency
            .saturating_record(since.elapsed().as_micros().max(1) as u64);
        match loaded {
            Loaded::Ok { bytes } => {
                self.ok += 1;
                self.bytes = bytes;
            }
            Loaded::Failed(e) => {
                self.failed += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

async fn load_pages(
    run: &Run,
    http: &reqwest::Client,
    loads: &PageLoads,
    pacing: Pacing,
    requests: usize,
) -> Result<PageOutcome> {
    let cpu = CpuMeter::start(run.pid);
    let started = Instant::now();
    let tasks: Vec<_> = match pacing {
        Pacing::Saturated { clients } => {
            let next = Arc::new(AtomicUsize::new(0));
            (0..clients.max(1))
                .map(|_| {
                    let (http, next, loads) = (http.clone(), next.clone(), loads.clone());
                    tokio::spawn(async move {
                        let mut tally = Tally::new();
                        loop {
                            let n = next.fetch_add(1, Ordering::Relaxed);
                            if n >= requests {
                                break tally;
                            }
                            let at = Instant::now();
                            tally.record(at, loads.load(&http, n).await);
                        }
                    })
                })
                .collect()
        }
        Pacing::Paced { per_sec } => {
            let gap = std::time::Duration::from_secs(1) / per_sec.max(1);
            let mut ticks = tokio::time::interval(gap);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut tasks = Vec::with_capacity(requests);
            for n in 0..requests {
                // The planned start: latency counts from here even if the task starts late.
                let planned = ticks.tick().await.into_std();
                let (http, loads) = (http.clone(), loads.clone());
                tasks.push(tokio::spawn(async move {
                    let mut tally = Tally::new();
                    tally.record(planned, loads.load(&http, n).await);
                    tally
                }));
            }
            tasks
        }
    };
    let mut outcome = PageOutcome {
        requests,
        ok: 0,
        failed: 0,
        page_bytes: 0,
        elapsed_secs: 0.0,
        latency: super::histogram(),
        server_cpu_pct: None,
        server_cpu_secs: None,
        first_error: None,
    };
    for task in tasks {
        let tally = task.await?;
        outcome
            .latency
            .add(&tally.latency)
            .map_err(|e| error(e.to_string()))?;
        outcome.ok += tally.ok;
        outcome.failed += tally.failed;
        outcome.page_bytes = outcome.page_bytes.max(tally.bytes);
        if outcome.first_error.is_none() {
            outcome.first_error = tally.first_error;
        }
    }
    outcome.elapsed_secs = started.elapsed().as_secs_f64();
    outcome.server_cpu_pct = cpu.percent();
    outcome.server_cpu_secs = cpu.used_seconds();
    Ok(outcome)
}

async fn joins(
    target: &Target,
    prepared: &PreparedChannel,
    params: &HistoryParams,
) -> Result<JoinOutcome> {
    let mut sockets = Vec::new();
    for i in 0..params.clients.max(1) {
        let token = &prepared.tokens[i % prepared.tokens.len()];
        sockets.push(client::flack_connect(target, token, false).await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            let (next, channel, joins) = (next.clone(), prepared.channel.clone(), params.joins);
            tokio::spawn(async move {
                let mut latency = super::histogram();
                let (mut ok, mut failed, mut first_error) = (0, 0, None);
                while next.fetch_add(1, Ordering::Relaxed) < joins {
                    let at = Instant::now();
                    let answer = client::flack_subscribe(&mut ws, &channel).await;
                    latency.saturating_record(at.elapsed().as_micros().max(1) as u64);
                    match answer {
                        Ok(n) if n == HISTORY_WINDOW => ok += 1,
                        Ok(n) => {
                            failed += 1;
                            first_error.get_or_insert_with(|| format!("joined with {n} messages"));
                        }
                        Err(e) => {
                            failed += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                            break;
                        }
                    }
                }
                (latency, ok, failed, first_error)
            })
        })
        .collect();
    let mut outcome = JoinOutcome {
        joins: params.joins,
        ok: 0,
        failed: 0,
        elapsed_secs: 0.0,
        latency: super::histogram(),
        first_error: None,
    };
    for worker in workers {
        let (latency, ok, failed, first_error) = worker.await?;
        outcome
            .latency
            .add(&latency)
            .map_err(|e| error(e.to_string()))?;
        outcome.ok += ok;
        outcome.failed += failed;
        if outcome.first_error.is_none() {
            outcome.first_error = first_error;
        }
    }
    outcome.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(outcome)
}
