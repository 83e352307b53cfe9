//! `flack-load`: the load generator and benchmark for Flack, and the reference relay Flack is
//! compared with. Every command prints a table for people and one `RESULT {json}` line per
//! result for scripts; `scripts/bench.sh` runs the whole plan.
//!
//! The open-file limit is not raised here (the crate has no `libc` dependency): run it under
//! `ulimit -n <hard limit>`, as `scripts/bench.sh` does.

use clap::{Args, Parser, Subcommand};
use flack::load::abuse::{abuse, AbuseParams, Attack, MAX_GROWTH_MIB, MAX_P99_VS_QUIET};
use flack::load::connections::{connections, ConnectionsParams};
use flack::load::fanout::{fanout, FanoutParams};
use flack::load::history::{history, page_snapshot, HistoryParams};
use flack::load::max_rate::{max_rate, step_line, MaxRateParams};
use flack::load::{
    cpu_shares_line, print_reports, reference, summary, wasm, Report, Result, Run, Target,
};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "flack-load", about = "Load generator and benchmark for Flack")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The servers to measure; each figure is shown for both and as a ratio.
#[derive(Args, Clone)]
struct Targets {
    /// Flack's address (`http://127.0.0.1:4000`). Several, comma-separated or repeated, are
    /// the nodes of one cluster: fanout and max-rate spread their clients round-robin over
    /// them (the other scenarios take one).
    #[arg(long, value_delimiter = ',')]
    flack: Vec<String>,
    /// Flack's process id (for its CPU and memory); on a cluster every node's, in the same
    /// order, comma-separated or repeated: their CPU is summed.
    #[arg(long, value_delimiter = ',')]
    flack_pid: Vec<u32>,
    /// A process Flack relies on, `name=PID` (e.g. `postgres=123`, `redis=456`; repeated):
    /// its CPU, children included, is reported on its own and in the `total_…` figures.
    #[arg(long, value_parser = parse_extra_pid)]
    extra_pid: Vec<(String, u32)>,
    /// Flack's column name in reports (e.g. `flack-sqlite`).
    #[arg(long, default_value = "flack")]
    flack_label: String,
    /// The reference relay's address (`http://127.0.0.1:4100`).
    #[arg(long)]
    reference: Option<String>,
    /// The reference's process id.
    #[arg(long)]
    reference_pid: Option<u32>,
    /// The reference's column name (a second relay, e.g. `reference-nodelay`, is shown but
    /// ratios are always to the first label starting with `reference`).
    #[arg(long, default_value = "reference")]
    reference_label: String,
}

fn parse_extra_pid(arg: &str) -> std::result::Result<(String, u32), String> {
    let (name, pid) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected name=PID, got {arg:?}"))?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("a process name is letters, digits and _: {name:?}"));
    }
    let pid = pid.trim().parse().map_err(|e| format!("{pid:?}: {e}"))?;
    Ok((name.to_string(), pid))
}

impl Targets {
    /// The runs, for a scenario that drives one server only.
    fn single_runs(&self) -> Result<Vec<Run>> {
        if self.flack.len() > 1 || self.flack_pid.len() > 1 || !self.extra_pid.is_empty() {
            return Err(flack::load::error(
                "this scenario takes one --flack and one --flack-pid (only fanout and max-rate spread over nodes)",
            ));
        }
        self.runs()
    }

    fn runs(&self) -> Result<Vec<Run>> {
        let mut runs = Vec::new();
        if let Some((first, more)) = self.flack.split_first() {
            let mut run = Run::new(Target::flack(first), self.flack_pid.first().copied());
            run.label = self.flack_label.clone();
            run.more_nodes = more.iter().map(|addr| Target::flack(addr)).collect();
            run.more_pids = self.flack_pid.iter().skip(1).copied().collect();
            run.extra_pids = self.extra_pid.clone();
            runs.push(run);
        } else if !self.flack_pid.is_empty() || !self.extra_pid.is_empty() {
            return Err(flack::load::error(
                "--flack-pid and --extra-pid need --flack",
            ));
        }
        if let Some(addr) = &self.reference {
            let mut run = Run::new(Target::reference(addr), self.reference_pid);
            run.label = self.reference_label.clone();
            runs.push(run);
        }
        if runs.is_empty() {
            return Err(flack::load::error(
                "give --flack, --reference or both to say what to measure",
            ));
        }
        Ok(runs)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve the reference relay (`/ws` broadcast, `/page`, `/`).
    Reference {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:4100")]
        addr: String,
        /// The page `/page` serves (default: a generated one like a 100-message channel).
        #[arg(long)]
        page_file: Option<PathBuf>,
        /// Turn Nagle's algorithm off on accepted sockets (Flack leaves it on).
        #[arg(long)]
        nodelay: bool,
    },
    /// Save a real Flack channel page with 100 messages (for `reference --page-file`).
    PageSnapshot {
        /// Flack's address.
        #[arg(long)]
        flack: String,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// C clients in one channel, S of them sending R messages/s each for D seconds.
    Fanout {
        #[command(flatten)]
        targets: Targets,
        /// Clients in the channel.
        #[arg(short = 'c', long, default_value_t = 100)]
        clients: usize,
        /// How many of them send.
        #[arg(short = 's', long, default_value_t = 20)]
        senders: usize,
        /// Messages per second per sender.
        #[arg(short = 'r', long, default_value_t = 10)]
        rate: u32,
        /// Seconds of sending.
        #[arg(short = 'd', long, default_value_t = 10)]
        duration: u32,
        /// Seconds to wait for late deliveries.
        #[arg(long, default_value_t = 5)]
        grace: u64,
        /// Channels every Flack client is made a member of first, the busy one included
        /// (0: they only open it).
        #[arg(short = 'm', long, default_value_t = 0)]
        memberships: usize,
    },
    /// The highest per-sender rate with zero loss and p99 under a limit, for each target.
    MaxRate {
        #[command(flatten)]
        targets: Targets,
        /// Clients in the channel.
        #[arg(short = 'c', long, default_value_t = 100)]
        clients: usize,
        /// How many of them send.
        #[arg(short = 's', long, default_value_t = 20)]
        senders: usize,
        /// Seconds of sending per step.
        #[arg(short = 'd', long, default_value_t = 3)]
        duration: u32,
        /// The first rate tried, then doubled.
        #[arg(long, default_value_t = 5)]
        start: u32,
        /// The most doublings.
        #[arg(long, default_value_t = 11)]
        max_doublings: u32,
        /// Bisection steps after the first failure.
        #[arg(long, default_value_t = 3)]
        bisect: u32,
        /// More tries at the same rate for a step that failed on time alone (no loss).
        #[arg(long, default_value_t = 1)]
        retries: u32,
        /// The p99 latency limit, ms.
        #[arg(long, default_value_t = 50.0)]
        p99_ms: f64,
    },
    /// Ramp to N idle sockets, hold them, check them, and read the server's memory.
    Connections {
        #[command(flatten)]
        targets: Targets,
        /// Sockets to open.
        #[arg(short = 'n', long, default_value_t = 15000)]
        count: usize,
        /// Seconds to hold them.
        #[arg(long, default_value_t = 3)]
        hold: u64,
        /// Handshakes in flight at once.
        #[arg(long, default_value_t = 128)]
        concurrency: usize,
    },
    /// Load a channel page with 100 messages (and, on Flack, join it over the socket).
    History {
        #[command(flatten)]
        targets: Targets,
        /// Requests in flight at once (saturated run).
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Page loads in the saturated run.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Socket joins in all (Flack).
        #[arg(long, default_value_t = 2000)]
        joins: usize,
        /// Page loads started per second in the paced run (0: skip it).
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// Page loads in the paced run.
        #[arg(long, default_value_t = 1000)]
        paced_requests: usize,
        /// Every message with reactions and a thread of replies (Flack only).
        #[arg(long)]
        rich: bool,
    },
    /// Each known attack against a running Flack on loopback, from another address, while a
    /// normal user chats: the server's memory and descriptors, the user's p99 ack latency
    /// against a quiet run, and whether a fresh browser is served afterwards.
    Abuse {
        /// Flack's address (loopback only).
        #[arg(long)]
        flack: String,
        /// Flack's process id (for its memory and descriptors).
        #[arg(long)]
        flack_pid: Option<u32>,
        /// Flack's column name in reports.
        #[arg(long, default_value = "flack")]
        flack_label: String,
        /// Seconds each attack's window lasts.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Seconds of the quiet run (default: as long as a window).
        #[arg(long)]
        quiet_seconds: Option<u64>,
        /// Tiny sizes, to check the scenario in seconds.
        #[arg(long)]
        quick: bool,
        /// Only these attacks, comma-separated (default: all, in the standard order).
        #[arg(long, value_delimiter = ',')]
        attacks: Vec<Attack>,
        /// Stop an attack once the server has grown this much, MiB (protects the machine).
        #[arg(long, default_value_t = 1024)]
        max_growth_mib: u64,
        /// Where the attackers connect from.
        #[arg(long, default_value = "127.0.0.2")]
        attacker_ip: IpAddr,
        /// Where the normal user and the fresh browser connect from.
        #[arg(long, default_value = "127.0.0.1")]
        user_ip: IpAddr,
        /// The normal user's messages per second.
        #[arg(long, default_value_t = 10)]
        user_rate: u32,
        /// Exit with status 1 when an attack misses a bar.
        #[arg(long)]
        require_bars: bool,
    },
    /// Raw and gzip size of the site's .wasm and .js.
    WasmSize {
        /// The site's pkg directory.
        #[arg(long, default_value = "target/site/pkg")]
        pkg: PathBuf,
    },
    /// One markdown table, with ratios, of every RESULT line in the given logs.
    Summary {
        /// Logs to read.
        files: Vec<PathBuf>,
    },
    /// The cluster bars, from the RESULT lines of the given logs: one node on PostgreSQL +
    /// Redis keeps at least a share of one node on SQLite's max-rate, and the big fan-out
    /// across several nodes loses nothing.
    ClusterBars {
        /// The label of one node on SQLite (max-rate).
        #[arg(long, default_value = "flack-sqlite")]
        sqlite: String,
        /// The label of one node on PostgreSQL + Redis (max-rate).
        #[arg(long, default_value = "flack-pg-redis-1")]
        one: String,
        /// The label of the cluster whose fan-out must lose nothing.
        #[arg(long, default_value = "flack-pg-redis-3")]
        cluster: String,
        /// The max-rate case both are compared on (default: the last one of `--one`).
        #[arg(long)]
        max_rate_case: Option<String>,
        /// The fan-out case that must lose nothing (default: the last one of `--cluster`).
        #[arg(long)]
        fanout_case: Option<String>,
        /// The least share of SQLite's max-rate one node on PostgreSQL + Redis must keep.
        #[arg(long, default_value_t = 0.5)]
        min_ratio: f64,
        /// Logs to read.
        files: Vec<PathBuf>,
    },
}

// The same allocator as the server, so the reference relay is measured on equal terms.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    if let Err(e) = run(Cli::parse().command).await {
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        eprintln!("flack-load: {message}");
        std::process::exit(1);
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Reference {
            addr,
            page_file,
            nodelay,
        } => {
            let page = match page_file {
                Some(path) => std::fs::read(&path)?.into(),
                None => reference::generated_page(),
            };
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            println!(
                "reference relay on http://{} (page: {} bytes, TCP_NODELAY {})",
                listener.local_addr()?,
                page.len(),
                if nodelay { "on" } else { "off" }
            );
            if nodelay {
                reference::serve_nodelay(listener, page).await?;
            } else {
                reference::serve(listener, page).await?;
            }
        }
        Command::PageSnapshot { flack, out } => {
            let page = page_snapshot(&Target::flack(&flack)).await?;
            std::fs::write(&out, &page)?;
            println!(
                "saved a {} byte channel page to {}",
                page.len(),
                out.display()
            );
        }
        Command::Fanout {
            targets,
            clients,
            senders,
            rate,
            duration,
            grace,
            memberships,
        } => {
            let params = FanoutParams {
                grace: Duration::from_secs(grace),
                memberships,
                ..FanoutParams::new(clients, senders, rate, duration)
            };
            let mut reports = Vec::new();
            for run in targets.runs()? {
                eprintln!("fanout {} on {}…", params.case(), run.label);
                let outcome = fanout(&run, &params).await?;
                if let Some(e) = &outcome.first_error {
                    eprintln!("  {}: first problem: {e}", run.label);
                }
                let worst: Vec<String> = outcome
                    .worst_by_tenth
                    .iter()
                    .map(|&us| format!("{:.0}", us as f64 / 1000.0))
                    .collect();
                eprintln!(
                    "  {}: worst ms per tenth of a second of sending: {}",
                    run.label,
                    worst.join(" ")
                );
                if !outcome.processes.is_empty() {
                    eprintln!(
                        "  {} over {} nodes: cpu {}",
                        run.label,
                        run.node_count(),
                        cpu_shares_line(&outcome.processes)
                    );
                }
                reports.push(outcome.report(&run.label, &params));
                settle().await;
            }
            print_reports(&reports);
        }
        Command::MaxRate {
            targets,
            clients,
            senders,
            duration,
            start,
            max_doublings,
            bisect,
            retries,
            p99_ms,
        } => {
            let params = MaxRateParams {
                start_rate: start,
                max_doublings,
                bisect_steps: bisect,
                retries,
                p99_limit_ms: p99_ms,
                ..MaxRateParams::new(clients, senders, duration)
            };
            let mut reports = Vec::new();
            for run in targets.runs()? {
                eprintln!("max-rate {} on {}…", params.case(), run.label);
                let label = run.label.clone();
                let found = max_rate(&run, &params, |step| {
                    eprintln!("{}", step_line(&label, step, params.p99_limit_ms));
                })
                .await?;
                reports.push(found.report(&run.label, &params));
            }
            print_reports(&reports);
        }
        Command::Connections {
            targets,
            count,
            hold,
            concurrency,
        } => {
            let params = ConnectionsParams {
                hold: Duration::from_secs(hold),
                concurrency,
                ..ConnectionsParams::new(count)
            };
            let mut reports = Vec::new();
            for run in targets.single_runs()? {
                eprintln!("connections {} on {}…", params.case(), run.label);
                let outcome = connections(&run, &params).await?;
                if let Some(e) = &outcome.first_error {
                    eprintln!("  {}: first problem: {e}", run.label);
                }
                reports.push(outcome.report(&run.label, &params));
                // Let the server see the sockets close before the next target starts.
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            print_reports(&reports);
        }
        Command::History {
            targets,
            clients,
            requests,
            joins,
            rate,
            paced_requests,
            rich,
        } => {
            let params = HistoryParams {
                clients,
                requests,
                joins,
                rate,
                paced_requests,
                rich,
            };
            let mut pages: Vec<Report> = Vec::new();
            let mut joined: Vec<Report> = Vec::new();
            for run in targets.single_runs()? {
                eprintln!("history {} on {}…", params.case(), run.label);
                let outcome = history(&run, &params).await?;
                for e in [outcome.page.first_error.as_ref()]
                    .into_iter()
                    .chain([outcome.paced.as_ref().and_then(|p| p.first_error.as_ref())])
                    .chain([outcome.join.as_ref().and_then(|j| j.first_error.as_ref())])
                    .flatten()
                {
                    eprintln!("  {}: first problem: {e}", run.label);
                }
                for report in outcome.reports(&run.label, &params) {
                    if report.scenario == "join" {
                        joined.push(report);
                    } else {
                        pages.push(report);
                    }
                }
                settle().await;
            }
            // One table per case (saturated, paced), each with every target side by side.
            let mut cases: Vec<String> = Vec::new();
            for report in &pages {
                if !cases.contains(&report.case) {
                    cases.push(report.case.clone());
                }
            }
            for case in cases {
                let same: Vec<Report> = pages.iter().filter(|r| r.case == case).cloned().collect();
                print_reports(&same);
            }
            if !joined.is_empty() {
                print_reports(&joined);
            }
        }
        Command::Abuse {
            flack,
            flack_pid,
            flack_label,
            seconds,
            quiet_seconds,
            quick,
            attacks,
            max_growth_mib,
            attacker_ip,
            user_ip,
            user_rate,
            require_bars,
        } => {
            let mut params = if quick {
                AbuseParams::quick(seconds)
            } else {
                AbuseParams::standard(seconds)
            };
            if !attacks.is_empty() {
                params.attacks = attacks;
            }
            if let Some(quiet) = quiet_seconds {
                params.quiet = Duration::from_secs(quiet.max(1));
            }
            params.max_growth_mib = max_growth_mib;
            params.attacker_address = attacker_ip;
            params.user_address = user_ip;
            params.user_rate = user_rate;
            let mut run = Run::new(Target::flack(&flack), flack_pid);
            run.label = flack_label;
            eprintln!(
                "abuse on {}: quiet run, then {} attacks of {} s each…",
                run.label,
                params.attacks.len(),
                seconds
            );
            let outcome = abuse(&run, &params, |attack| {
                let name = attack.attack.name();
                if let Some(e) = &attack.first_error {
                    eprintln!("  {name}: attacker's first problem: {e}");
                }
                if let Some(e) = &attack.user.first_error {
                    eprintln!("  {name}: normal user's first problem: {e}");
                }
                if attack.stopped_early {
                    eprintln!("  {name}: stopped early: the server grew by {max_growth_mib} MiB");
                }
                print_reports(&[attack.report(&run.label, &params)]);
            })
            .await?;
            println!(
                "== abuse bars (growth ≤ {MAX_GROWTH_MIB} MiB, p99 ≤ {MAX_P99_VS_QUIET}x quiet, \
                 a fresh browser served after); quiet p99 {:.2} ms over {} messages",
                outcome.quiet.p99_ms(),
                outcome.quiet.sent
            );
            println!("{}", outcome.bars_table());
            if require_bars && !outcome.bars_met() {
                return Err(flack::load::error("an attack missed a bar"));
            }
        }
        Command::WasmSize { pkg } => {
            for size in wasm::wasm_size(&pkg)? {
                print_reports(&[size.report()]);
            }
        }
        Command::Summary { files } => {
            let log = read_logs(&files)?;
            print!("{}", summary::markdown(&summary::parse_results(&log)));
        }
        Command::ClusterBars {
            sqlite,
            one,
            cluster,
            max_rate_case,
            fanout_case,
            min_ratio,
            files,
        } => {
            let log = read_logs(&files)?;
            let bars = summary::ClusterBars {
                sqlite,
                one,
                cluster,
                max_rate_case,
                fanout_case,
                min_ratio,
            };
            print!("{}", bars.check(&summary::parse_results(&log)).text());
        }
    }
    Ok(())
}

/// The result logs in `files`, one after another.
fn read_logs(files: &[std::path::PathBuf]) -> std::io::Result<String> {
    let mut log = String::new();
    for file in files {
        log.push_str(&std::fs::read_to_string(file)?);
        log.push('\n');
    }
    Ok(log)
}

/// A pause between targets, so that one's closing sockets do not weigh on the next.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}
