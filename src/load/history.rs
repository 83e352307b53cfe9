//! History: how fast a channel with 100 messages is served. On Flack, concurrent clients load
//! the server-rendered page `/c/<channel>` as named users (checking each answer is 200 and shows
//! the last message), and, separately, sockets join the channel (`subscribe` → `subscribed`
//! with the 100 messages). On the reference, the clients load `/page`, a fixed page of the same
//! kind.

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
    /// Requests (and sockets) in flight at once.
    pub clients: usize,
    /// Page loads in all.
    pub requests: usize,
    /// Socket joins in all (Flack only).
    pub joins: usize,
}

impl HistoryParams {
    /// `clients=32 requests=2000`.
    pub fn case(&self) -> String {
        format!("clients={} requests={}", self.clients, self.requests)
    }
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
    /// Page loads.
    pub page: PageOutcome,
    /// Socket joins (Flack only).
    pub join: Option<JoinOutcome>,
}

impl HistoryOutcome {
    /// The figures as reports: `history` (pages) and, for Flack, `join`.
    pub fn reports(&self, label: &str, params: &HistoryParams) -> Vec<Report> {
        let p = &self.page;
        let mut page = Report::new("history", params.case(), label);
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
            &[("p50", 0.5), ("p99", 0.99), ("max", 1.0)],
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
        let mut reports = vec![page];
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
    let page = load_pages(run, &http, url, tokens, marker, params).await?;
    let join = match &prepared {
        Some(prepared) => Some(joins(target, prepared, params).await?),
        None => None,
    };
    Ok(HistoryOutcome { page, join })
}

async fn load_pages(
    run: &Run,
    http: &reqwest::Client,
    url: String,
    tokens: Vec<String>,
    marker: Option<String>,
    params: &HistoryParams,
) -> Result<PageOutcome> {
    let next = Arc::new(AtomicUsize::new(0));
    let (url, tokens, marker) = (Arc::new(url), Arc::new(tokens), Arc::new(marker));
    let cpu = CpuMeter::start(run.pid);
    let started = Instant::now();
    let workers: Vec<_> = (0..params.clients.max(1))
        .map(|w| {
            let (http, next, url, tokens, marker) = (
                http.clone(),
                next.clone(),
                url.clone(),
                tokens.clone(),
                marker.clone(),
            );
            let requests = params.requests;
            tokio::spawn(async move {
                let mut latency = super::histogram();
                let (mut ok, mut failed, mut bytes, mut first_error) = (0, 0, 0, None);
                while next.fetch_add(1, Ordering::Relaxed) < requests {
                    let mut request = http.get(url.as_str());
                    if !tokens.is_empty() {
                        request = request.bearer_auth(&tokens[w % tokens.len()]);
                    }
                    let at = Instant::now();
                    let answer = async {
                        let res = request.send().await?;
                        let status = res.status();
                        let body = res.bytes().await?;
                        Ok::<_, reqwest::Error>((status, body))
                    }
                    .await;
                    latency.saturating_record(at.elapsed().as_micros().max(1) as u64);
                    match answer {
                        Ok((status, body)) => {
                            let shows = marker
                                .as_deref()
                                .is_none_or(|m| String::from_utf8_lossy(&body).contains(m));
                            if status.is_success() && shows && !body.is_empty() {
                                ok += 1;
                                bytes = body.len();
                            } else {
                                failed += 1;
                                first_error.get_or_insert_with(|| {
                                    format!(
                                        "HTTP {status}, {} bytes, shows last: {shows}",
                                        body.len()
                                    )
                                });
                            }
                        }
                        Err(e) => {
                            failed += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                (latency, ok, failed, bytes, first_error)
            })
        })
        .collect();
    let mut outcome = PageOutcome {
        requests: params.requests,
        ok: 0,
        failed: 0,
        page_bytes: 0,
        elapsed_secs: 0.0,
        latency: super::histogram(),
        server_cpu_pct: None,
        server_cpu_secs: None,
        first_error: None,
    };
    for worker in workers {
        let (latency, ok, failed, bytes, first_error) = worker.await?;
        outcome
            .latency
            .add(&latency)
            .map_err(|e| error(e.to_string()))?;
        outcome.ok += ok;
        outcome.failed += failed;
        outcome.page_bytes = outcome.page_bytes.max(bytes);
        if outcome.first_error.is_none() {
            outcome.first_error = first_error;
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
