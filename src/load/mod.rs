//! Flack's load generator: drives a running Flack, or the bare reference relay in
//! [`reference`], with many WebSocket and HTTP clients and reports what it measured.
//!
//! Each scenario is a library function (so `tests/load_smoke.rs` and the `flack-load` binary
//! run the same code) that returns an outcome with exact counts and a [`Report`]: a named list
//! of figures, printed as a table for people and as one `RESULT {json}` line for scripts.
//!
//! - [`fanout`]: many subscribers, a few senders at a fixed rate: delivery, loss, latency.
//! - [`max_rate`]: the highest fan-out rate with no loss and p99 latency under a limit.
//! - [`connections`]: many idle sockets: how many are held and what each costs the server.
//! - [`history`]: the server-rendered channel page and the socket join with 100 messages.
//! - [`wasm`]: the size of the browser bundle.
//! - [`abuse`]: each known attack against a running Flack while a normal user chats: memory,
//!   descriptors, the user's latency, and whether a fresh browser is served afterwards.
//! - [`summary`]: the markdown table of every `RESULT` line of a run.

pub mod abuse;
pub mod client;
pub mod connections;
pub mod fanout;
pub mod history;
pub mod max_rate;
pub mod reference;
pub mod summary;
pub mod wasm;

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// Any failure of the load generator itself (not of a measured request).
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// A result of the load generator.
pub type Result<T> = std::result::Result<T, Error>;

/// An error from a sentence.
pub fn error(message: impl Into<String>) -> Error {
    message.into().into()
}

/// What is being measured: Flack itself, or the reference relay it is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Flack server: bots log in with `POST /auth/session`, subscribe, send.
    Flack {
        /// `http://host:port`, no trailing slash.
        base_url: String,
    },
    /// The reference relay ([`reference::serve`]): every frame goes to everyone.
    Reference {
        /// `http://host:port`, no trailing slash.
        base_url: String,
    },
}

impl Target {
    /// Flack at `addr` (`127.0.0.1:4000` or `http://127.0.0.1:4000/`).
    pub fn flack(addr: &str) -> Self {
        Target::Flack {
            base_url: base_url(addr),
        }
    }

    /// The reference relay at `addr`.
    pub fn reference(addr: &str) -> Self {
        Target::Reference {
            base_url: base_url(addr),
        }
    }

    /// `http://host:port`.
    pub fn base_url(&self) -> &str {
        match self {
            Target::Flack { base_url } | Target::Reference { base_url } => base_url,
        }
    }

    /// `ws://host:port/ws`.
    pub fn ws_url(&self) -> String {
        let base = self.base_url();
        let rest = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"))
            .unwrap_or(base);
        format!("ws://{rest}/ws")
    }

    /// Whether this is Flack.
    pub fn is_flack(&self) -> bool {
        matches!(self, Target::Flack { .. })
    }

    /// `"flack"` or `"reference"`: the default label in reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Flack { .. } => "flack",
            Target::Reference { .. } => "reference",
        }
    }
}

/// A target with the label its figures are reported under (e.g. `flack-sqlite`) and, when it
/// runs on this machine, its process id (for CPU and memory figures).
///
/// A Flack cluster is one run with several nodes: `target` and `more_nodes`. [`fanout`] (and
/// so [`max_rate`]) assigns its clients, senders and receivers alike, round-robin to them;
/// the other scenarios use `target` only. The server's CPU is then that of every node pid
/// summed, and each process (every node, and `extra_pids` such as PostgreSQL and Redis) is
/// also reported on its own.
#[derive(Debug, Clone)]
pub struct Run {
    /// Where to send the load (the first node of a cluster).
    pub target: Target,
    /// The column name in reports.
    pub label: String,
    /// The server's process id, to read its CPU time and memory from `/proc` (the first
    /// node's).
    pub pid: Option<u32>,
    /// The other nodes of a cluster, after `target`.
    pub more_nodes: Vec<Target>,
    /// The other nodes' process ids (their CPU is the server's too).
    pub more_pids: Vec<u32>,
    /// Processes the server relies on, by name (`postgres`, `redis`): each one's CPU, its
    /// children included, is reported apart and in the `total_…` figures, not in `server_…`.
    pub extra_pids: Vec<(String, u32)>,
}

impl Run {
    /// A run labelled by the target's kind.
    pub fn new(target: Target, pid: Option<u32>) -> Self {
        let label = target.kind().to_string();
        Run {
            target,
            label,
            pid,
            more_nodes: Vec::new(),
            more_pids: Vec::new(),
            extra_pids: Vec::new(),
        }
    }

    /// How many nodes the load is spread over.
    pub fn node_count(&self) -> usize {
        1 + self.more_nodes.len()
    }

    /// The node client `i` talks to: round-robin over `target` and `more_nodes`.
    pub fn node(&self, i: usize) -> &Target {
        match i % self.node_count() {
            0 => &self.target,
            k => &self.more_nodes[k - 1],
        }
    }

    /// Every node's process id, the first node's first.
    pub fn node_pids(&self) -> Vec<u32> {
        self.pid
            .into_iter()
            .chain(self.more_pids.iter().copied())
            .collect()
    }

    /// Whether this is more than one server process (several nodes or extra processes):
    /// then reports also show each process's CPU.
    pub fn is_cluster(&self) -> bool {
        self.node_count() > 1 || !self.more_pids.is_empty() || !self.extra_pids.is_empty()
    }
}

fn base_url(addr: &str) -> String {
    let addr = addr.trim().trim_end_matches('/');
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

/// Which way a figure is better, so that ratios can say whether Flack wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Throughput and the like: the ratio is Flack ÷ reference.
    Higher,
    /// Latency, memory, losses: the ratio is reference ÷ Flack.
    Lower,
    /// Counts and settings: no ratio.
    Neither,
}

/// One figure of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Short snake_case name, e.g. `lat_p99_ms`.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its unit, for the tables (`ms`, `/s`, `KiB`, or empty for counts).
    pub unit: String,
    /// Which way is better.
    pub better: Better,
}

/// What one scenario measured on one target: printed as a table and as a `RESULT` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `fanout`, `max-rate`, `connections`, `history`, `join`, `wasm-size`.
    pub scenario: String,
    /// The parameters, e.g. `c=100 s=20 r=10 d=10`: reports of the same case are compared.
    pub case: String,
    /// The target's label: `flack`, `reference`, `flack-sqlite`, …
    pub target: String,
    /// The figures, in display order.
    pub metrics: Vec<Metric>,
}

impl Report {
    /// An empty report.
    pub fn new(scenario: &str, case: impl Into<String>, target: &str) -> Self {
        Report {
            scenario: scenario.into(),
            case: case.into(),
            target: target.into(),
            metrics: Vec::new(),
        }
    }

    /// Adds a figure.
    pub fn metric(&mut self, name: &str, value: f64, unit: &str, better: Better) -> &mut Self {
        self.metrics.push(Metric {
            name: name.into(),
            value,
            unit: unit.into(),
            better,
        });
        self
    }

    /// Adds a count (no ratio is shown for it).
    pub fn count(&mut self, name: &str, value: u64) -> &mut Self {
        self.metric(name, value as f64, "", Better::Neither)
    }

    /// A figure by name.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// `RESULT {json}`: one line for scripts.
    pub fn result_line(&self) -> String {
        format!(
            "RESULT {}",
            serde_json::to_string(self).expect("reports serialize")
        )
    }
}

/// Whether a target label names the reference relay.
pub fn is_reference_label(label: &str) -> bool {
    label.starts_with("reference")
}

/// `candidate` against `reference`, oriented so that above 1 means `candidate` is better:
/// candidate ÷ reference when higher is better, reference ÷ candidate when lower is better.
pub fn ratio(better: Better, candidate: f64, reference: f64) -> Option<f64> {
    let r = match better {
        Better::Higher => candidate / reference,
        Better::Lower => reference / candidate,
        Better::Neither => return None,
    };
    (candidate > 0.0 && reference > 0.0 && r.is_finite()).then_some(r)
}

/// A figure for tables: whole numbers as they are, others with three significant digits.
pub fn format_value(value: f64) -> String {
    if (value.fract() == 0.0 && value.abs() < 1e15) || value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// Reports of one case side by side: a column per target and, for each target that is not
/// the reference, its ratio to the reference (`×`, above 1 = better than the reference).
pub fn comparison_table(reports: &[Report]) -> String {
    let Some(first) = reports.first() else {
        return String::new();
    };
    let targets: Vec<&str> = reports.iter().map(|r| r.target.as_str()).collect();
    let reference = reports.iter().find(|r| is_reference_label(&r.target));
    let challengers: Vec<&Report> = match reference {
        Some(_) => reports
            .iter()
            .filter(|r| !is_reference_label(&r.target))
            .collect(),
        None => Vec::new(),
    };
    let mut names: Vec<(&str, &str, Better)> = Vec::new();
    for report in reports {
        for m in &report.metrics {
            if !names.iter().any(|(n, _, _)| *n == m.name) {
                names.push((&m.name, &m.unit, m.better));
            }
        }
    }
    let mut header = vec!["metric".to_string(), "unit".to_string()];
    header.extend(targets.iter().map(|t| t.to_string()));
    header.extend(challengers.iter().map(|c| format!("{} vs ref", c.target)));
    let mut rows = vec![header];
    for (name, unit, better) in &names {
        let mut row = vec![name.to_string(), unit.to_string()];
        for report in reports {
            row.push(report.get(name).map(format_value).unwrap_or_default());
        }
        for challenger in &challengers {
            let cell = match (challenger.get(name), reference.and_then(|r| r.get(name))) {
                (Some(c), Some(r)) => ratio(*better, c, r)
                    .map(|x| format!("{x:.2}x"))
                    .unwrap_or_else(|| "-".into()),
                _ => String::new(),
            };
            row.push(cell);
        }
        rows.push(row);
    }
    let mut out = format!("== {} ({})", first.scenario, first.case);
    if !challengers.is_empty() {
        out.push_str("  [vs ref: above 1.00x = better than the reference; throughput is target/ref, latency and memory ref/target]");
    }
    out.push('\n');
    out.push_str(&text_table(&rows));
    out
}

/// Aligned plain-text columns; the first row is the header.
pub fn text_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, s)| {
                if c == 0 {
                    format!("{s:<w$}", w = widths[c])
                } else {
                    format!("{s:>w$}", w = widths[c])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "{}", rule.join("  "));
        }
    }
    out
}

/// Prints reports of one case as a comparison table, then one `RESULT` line each.
pub fn print_reports(reports: &[Report]) {
    println!("{}", comparison_table(reports));
    for report in reports {
        println!("{}", report.result_line());
    }
    println!();
}

/// A channel or user name that no other run uses: `prefix` and a per-process counter, the
/// process id and the clock (at most 32 characters).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000_000)
        .unwrap_or(0);
    let mut name = format!("{prefix}-{n}-{}-{clock:x}", std::process::id());
    name.truncate(32);
    name
}

/// The resident memory of a process, in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The open file descriptors of a process (entries of `/proc/<pid>/fd`).
pub fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on every Linux platform
/// Flack targets).
const USER_HZ: f64 = 100.0;

/// CPU time a process has used so far (user + system, all threads), in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    Some(proc_stat(pid)?.own_ticks / USER_HZ)
}

/// What `/proc/{pid}/stat` says of a process's parent and CPU time.
struct ProcStat {
    ppid: u32,
    /// `utime` + `stime`, in clock ticks.
    own_ticks: f64,
    /// `cutime` + `cstime`: what the children it reaped used, in clock ticks.
    reaped_ticks: f64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3, `state`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Option<f64> { fields.get(i)?.parse().ok() };
    Some(ProcStat {
        ppid: field(1)? as u32,
        own_ticks: field(11)? + field(12)?,
        reaped_ticks: field(13)? + field(14)?,
    })
}

/// Measures the CPU a process uses over an interval, as a percentage of one core.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    pid: Option<u32>,
    start: Option<f64>,
    at: Instant,
}

impl CpuMeter {
    /// Starts measuring `pid` (nothing when `None` or not readable).
    pub fn start(pid: Option<u32>) -> Self {
        CpuMeter {
            pid,
            start: pid.and_then(cpu_seconds),
            at: Instant::now(),
        }
    }

    /// Starts measuring this process.
    pub fn this_process() -> Self {
        Self::start(Some(std::process::id()))
    }

    /// CPU seconds used since the start.
    pub fn used_seconds(&self) -> Option<f64> {
        Some(cpu_seconds(self.pid?)? - self.start?)
    }

    /// Percent of one core used since the start.
    pub fn percent(&self) -> Option<f64> {
        let (start, now) = (self.start?, cpu_seconds(self.pid?)?);
        let elapsed = self.at.elapsed().as_secs_f64();
        (elapsed > 0.0).then(|| 100.0 * (now - start) / elapsed)
    }
}

/// CPU time a process and all its live descendants have used so far, with what their exited
/// children used (`cutime` + `cstime` of whoever reaped them), in seconds: PostgreSQL's
/// postmaster and its backends, say. A child that exits in between moves from the live sum to
/// its parent's `cutime`, so differences over an interval count each tick once.
pub fn tree_cpu_seconds(root: u32) -> Option<f64> {
    // (pid, ppid, own ticks, reaped children's ticks) of every readable process.
    let mut table: Vec<(u32, u32, f64, f64)> = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok());
        if let Some((pid, stat)) = pid.and_then(|pid| Some((pid, proc_stat(pid)?))) {
            table.push((pid, stat.ppid, stat.own_ticks, stat.reaped_ticks));
        }
    }
    if !table.iter().any(|(pid, ..)| *pid == root) {
        return None;
    }
    let mut tree = vec![root];
    let mut k = 0;
    while k < tree.len() {
        let parent = tree[k];
        tree.extend(
            table
                .iter()
                .filter(|(pid, ppid, ..)| *ppid == parent && !tree.contains(pid))
                .map(|(pid, ..)| *pid)
                .collect::<Vec<_>>(),
        );
        k += 1;
    }
    let ticks: f64 = table
        .iter()
        .filter(|(pid, ..)| tree.contains(pid))
        .map(|(_, _, own, reaped)| own + reaped)
        .sum();
    Some(ticks / USER_HZ)
}

/// One process's CPU over an interval.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessCpu {
    /// `node1`, `node2`, … or the name given with the pid (`postgres`, `redis`).
    pub name: String,
    /// Whether it is a Flack node (counted in the server's figures).
    pub node: bool,
    /// Percent of one core.
    pub percent: f64,
    /// CPU seconds.
    pub seconds: f64,
}

/// Measures the CPU of every process of a [`Run`] over an interval: its nodes (each one
/// process) and its extra processes (each with its descendants, [`tree_cpu_seconds`]).
#[derive(Debug, Clone)]
pub struct CpuGroup {
    /// (name, is a node, pid, CPU seconds at the start).
    meters: Vec<(String, bool, u32, Option<f64>)>,
    at: Instant,
}

impl CpuGroup {
    /// Starts measuring every process of `run`.
    pub fn start(run: &Run) -> Self {
        let mut meters = Vec::new();
        for (k, pid) in run.node_pids().into_iter().enumerate() {
            meters.push((format!("node{}", k + 1), true, pid, cpu_seconds(pid)));
        }
        for (name, pid) in &run.extra_pids {
            meters.push((name.clone(), false, *pid, tree_cpu_seconds(*pid)));
        }
        CpuGroup {
            meters,
            at: Instant::now(),
        }
    }

    /// Each readable process's CPU since the start.
    pub fn processes(&self) -> Vec<ProcessCpu> {
        let elapsed = self.at.elapsed().as_secs_f64();
        self.meters
            .iter()
            .filter_map(|(name, node, pid, start)| {
                let now = if *node {
                    cpu_seconds(*pid)
                } else {
                    tree_cpu_seconds(*pid)
                };
                let seconds = now? - (*start)?;
                Some(ProcessCpu {
                    name: name.clone(),
                    node: *node,
                    percent: if elapsed > 0.0 {
                        100.0 * seconds / elapsed
                    } else {
                        0.0
                    },
                    seconds,
                })
            })
            .collect()
    }
}

/// The nodes' CPU summed: (percent of one core, seconds), `None` when no node was readable.
pub fn nodes_cpu(processes: &[ProcessCpu]) -> Option<(f64, f64)> {
    let nodes: Vec<&ProcessCpu> = processes.iter().filter(|p| p.node).collect();
    (!nodes.is_empty()).then(|| {
        (
            nodes.iter().map(|p| p.percent).sum(),
            nodes.iter().map(|p| p.seconds).sum(),
        )
    })
}

/// `node1 45%  node2 40%  postgres 30%  redis 8%` (percent of one core), for logs.
pub fn cpu_shares_line(processes: &[ProcessCpu]) -> String {
    processes
        .iter()
        .map(|p| format!("{} {:.0}%", p.name, p.percent))
        .collect::<Vec<_>>()
        .join("  ")
}

/// Adds each process's CPU (`cpu_pct_node1`, `cpu_pct_postgres`, …, `prefix` before the
/// name) and, over every process, `total_cpu_pct` and `total_us_per_delivery`.
pub fn add_process_cpu(
    report: &mut Report,
    prefix: &str,
    processes: &[ProcessCpu],
    delivered: u64,
) {
    if processes.is_empty() {
        return;
    }
    for p in processes {
        report.metric(
            &format!("{prefix}cpu_pct_{}", p.name),
            p.percent,
            "%",
            Better::Neither,
        );
    }
    let percent: f64 = processes.iter().map(|p| p.percent).sum();
    let seconds: f64 = processes.iter().map(|p| p.seconds).sum();
    report.metric(
        &format!("{prefix}total_cpu_pct"),
        percent,
        "%",
        Better::Neither,
    );
    if delivered > 0 {
        report.metric(
            &format!("{prefix}total_us_per_delivery"),
            seconds * 1e6 / delivered as f64,
            "µs",
            Better::Lower,
        );
    }
}

/// The soft limit on open files of this process (`/proc/self/limits`).
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Latency in milliseconds from a histogram of microseconds.
pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// A histogram of microseconds from 1 µs to 10 minutes, 3 significant digits.
pub fn histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// A small histogram of microseconds (1 µs to 10 minutes, 2 significant digits: 1%), about
/// 20 KiB, for one per receiving client.
pub fn small_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 2).expect("valid histogram bounds")
}

/// Adds p50/p90/p99/max of a microsecond histogram as millisecond figures named
/// `{prefix}_p50_ms`, ….
pub fn add_latencies(
    report: &mut Report,
    prefix: &str,
    h: &hdrhistogram::Histogram<u64>,
    quantiles: &[(&str, f64)],
) {
    for (name, q) in quantiles {
        let value = if h.is_empty() {
            0.0
        } else if *q >= 1.0 {
            ms(h.max())
        } else {
            ms(h.value_at_quantile(*q))
        };
        report.metric(&format!("{prefix}_{name}_ms"), value, "ms", Better::Lower);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_normalise_their_address() {
        let t = Target::flack("127.0.0.1:4000/");
        assert_eq!(t.base_url(), "http://127.0.0.1:4000");
        assert_eq!(t.ws_url(), "ws://127.0.0.1:4000/ws");
        assert_eq!(
            Target::reference("http://127.0.0.1:4100").ws_url(),
            "ws://127.0.0.1:4100/ws"
        );
    }

    #[test]
    fn ratios_say_above_one_is_better() {
        assert_eq!(ratio(Better::Higher, 200.0, 100.0), Some(2.0));
        assert_eq!(ratio(Better::Lower, 4.0, 2.0), Some(0.5));
        assert_eq!(ratio(Better::Lower, 0.0, 2.0), None);
        assert_eq!(ratio(Better::Neither, 1.0, 1.0), None);
    }

    #[test]
    fn reports_round_trip_as_result_lines() {
        let mut r = Report::new("fanout", "c=1", "flack");
        r.count("sent", 10).metric("p99", 1.5, "ms", Better::Lower);
        let line = r.result_line();
        let back: Report = serde_json::from_str(line.strip_prefix("RESULT ").unwrap()).unwrap();
        assert_eq!(back, r);
        let mut reference = Report::new("fanout", "c=1", "reference");
        reference
            .count("sent", 10)
            .metric("p99", 0.75, "ms", Better::Lower);
        let table = comparison_table(&[r, reference]);
        assert!(table.contains("0.50x"), "{table}");
    }

    #[test]
    fn names_are_unique_and_short() {
        let a = unique_name("fanout");
        let b = unique_name("fanout");
        assert_ne!(a, b);
        assert!(a.len() <= 32);
        assert!(crate::protocol::validate_channel_name(&a).is_ok());
    }

    #[test]
    fn clients_go_round_robin_over_the_nodes() {
        let mut run = Run::new(Target::flack("127.0.0.1:4200"), Some(1));
        assert!(!run.is_cluster());
        assert_eq!(run.node(5).base_url(), "http://127.0.0.1:4200");
        run.more_nodes = vec![
            Target::flack("127.0.0.1:4201"),
            Target::flack("127.0.0.1:4202"),
        ];
        run.more_pids = vec![2, 3];
        assert!(run.is_cluster());
        let ports: Vec<&str> = (0..4).map(|i| &run.node(i).base_url()[17..]).collect();
        assert_eq!(ports, ["4200", "4201", "4202", "4200"]);
        assert_eq!(run.node_pids(), [1, 2, 3]);
    }

    #[test]
    fn a_process_tree_counts_at_least_its_root() {
        let me = std::process::id();
        let cpu = CpuGroup::start(&Run {
            extra_pids: vec![("me".into(), me)],
            ..Run::new(Target::flack("x:1"), Some(me))
        });
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        // Own time first: CPU time only grows, so the tree read after it is at least as much
        // (read the other way round, this process's other test threads could tip it).
        let own = cpu_seconds(me).unwrap();
        assert!(tree_cpu_seconds(me).unwrap() >= own);
        let processes = cpu.processes();
        assert_eq!(processes.len(), 2);
        assert_eq!(processes[0].name, "node1");
        assert!(processes[0].node && !processes[1].node);
        assert_eq!(
            nodes_cpu(&processes).map(|(_, s)| s),
            Some(processes[0].seconds)
        );
        let mut r = Report::new("fanout", "c=1", "flack");
        add_process_cpu(&mut r, "", &processes, 10);
        assert!(r.get("cpu_pct_me").is_some() && r.get("total_us_per_delivery").is_some());
        assert!(cpu_shares_line(&processes).starts_with("node1 "));
    }

    #[test]
    fn this_process_is_measurable() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        assert!(cpu_seconds(std::process::id()).is_some());
        assert!(open_files_limit().unwrap() > 0);
        assert!(open_fds(std::process::id()).unwrap() > 0);
    }
}
