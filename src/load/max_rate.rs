//! The highest rate each sender can keep: fan-out steps at doubling rates until one fails
//! (a loss, a duplicate, or p99 latency or send lag over the limit), then a few bisection
//! steps between the last pass and the first failure. Every loop is bounded.
//!
//! A step that fails on time alone (everything arrived once, but p99 latency or send lag was
//! over the limit) is run again at the same rate, up to `retries` times, and the rate fails
//! only if every try does: on a shared machine one stall of the host (a disk flush, a
//! descheduled core) makes the slowest 1% of a 3 s step by itself, and says nothing about the
//! rate. A loss or a duplicate fails at once. Every target of a run gets the same rule.
//!
//! The report gives the best passing step and the lowest failing one above it (`past_…`), so
//! that the table shows how each target behaves one step past its ceiling: whether it bends
//! (latency grows, everything arrives) or sheds (messages are lost).

use super::fanout::{fanout, FanoutOutcome, FanoutParams};
use super::{add_process_cpu, cpu_shares_line, ms, Better, Report, Result, Run};
use std::time::Duration;

/// How the highest sustainable rate is searched.
#[derive(Debug, Clone)]
pub struct MaxRateParams {
    /// Sockets in the channel.
    pub clients: usize,
    /// Sending sockets.
    pub senders: usize,
    /// Seconds of sending per step.
    pub duration_secs: u32,
    /// The first rate tried (messages per second per sender); then doubled.
    pub start_rate: u32,
    /// The most doubling steps.
    pub max_doublings: u32,
    /// Bisection steps between the last rate that passed and the first that failed.
    pub bisect_steps: u32,
    /// A step passes when every delivery arrived once and both the p99 latency and the p99
    /// send lag (senders keeping to their schedule) are under this.
    pub p99_limit_ms: f64,
    /// How many more tries a step that failed on time alone gets at the same rate.
    pub retries: u32,
    /// Pause between steps, so that the server is idle when the next starts.
    pub settle: Duration,
    /// Grace for late deliveries per step.
    pub grace: Duration,
}

impl MaxRateParams {
    /// The standard search: from 5/s, up to 11 doublings and 3 bisections, p99 < 50 ms, one
    /// more try for a step that fails on time alone.
    pub fn new(clients: usize, senders: usize, duration_secs: u32) -> Self {
        MaxRateParams {
            clients,
            senders,
            duration_secs,
            start_rate: 5,
            max_doublings: 11,
            bisect_steps: 3,
            p99_limit_ms: 50.0,
            retries: 1,
            settle: Duration::from_secs(1),
            grace: Duration::from_secs(3),
        }
    }

    /// `c=100 s=20 d=3 p99<50ms`.
    pub fn case(&self) -> String {
        format!(
            "c={} s={} d={} p99<{}ms",
            self.clients, self.senders, self.duration_secs, self.p99_limit_ms
        )
    }

    fn step(&self, rate: u32) -> FanoutParams {
        FanoutParams {
            grace: self.grace,
            ..FanoutParams::new(self.clients, self.senders, rate, self.duration_secs)
        }
    }
}

/// One step of the search.
#[derive(Debug, Clone)]
pub struct Step {
    /// Messages per second per sender.
    pub rate: u32,
    /// Which try at this rate (0 for the first).
    pub attempt: u32,
    /// Whether it passed.
    pub passed: bool,
    /// What it measured.
    pub outcome: FanoutOutcome,
}

/// The result of a search.
#[derive(Debug, Clone)]
pub struct MaxRate {
    /// The highest rate that passed (0 if none did).
    pub best_rate: u32,
    /// The lowest rate that failed, if one did.
    pub failed_rate: Option<u32>,
    /// Every step, in the order run.
    pub steps: Vec<Step>,
}

impl MaxRate {
    /// The step at the best rate.
    pub fn best(&self) -> Option<&Step> {
        self.steps
            .iter()
            .find(|s| s.passed && s.rate == self.best_rate)
    }

    /// The step one past the ceiling: the lowest rate that failed (above the best, since the
    /// search only tries rates between the best pass and the lowest failure), its last try.
    pub fn past(&self) -> Option<&Step> {
        let failed = self.failed_rate?;
        self.steps
            .iter()
            .rev()
            .find(|s| !s.passed && s.rate == failed)
    }

    /// The figures as a report.
    pub fn report(&self, label: &str, params: &MaxRateParams) -> Report {
        let mut r = Report::new("max-rate", params.case(), label);
        let senders = params.senders as f64;
        r.metric(
            "max_rate_per_sender",
            f64::from(self.best_rate),
            "/s",
            Better::Higher,
        )
        .metric(
            "max_msgs_per_s",
            f64::from(self.best_rate) * senders,
            "/s",
            Better::Higher,
        );
        if let Some(best) = self.best() {
            r.metric(
                "deliveries_per_s",
                best.outcome.deliveries_per_sec,
                "/s",
                Better::Higher,
            )
            .metric(
                "lat_p50_ms",
                best.outcome.latency_ms(0.5),
                "ms",
                Better::Lower,
            )
            .metric(
                "lat_p99_ms",
                best.outcome.latency_ms(0.99),
                "ms",
                Better::Lower,
            );
            if let Some(cpu) = best.outcome.server_cpu_pct {
                r.metric("server_cpu_pct", cpu, "%", Better::Neither);
            }
            if let Some(us) = best.outcome.server_us_per_delivery() {
                r.metric("server_us_per_delivery", us, "µs", Better::Lower);
            }
            if let Some(cpu) = best.outcome.loader_cpu_pct {
                r.metric("loader_cpu_pct", cpu, "%", Better::Neither);
            }
            add_process_cpu(&mut r, "", &best.outcome.processes, best.outcome.delivered);
        }
        if let Some(past) = self.past() {
            let o = &past.outcome;
            r.metric(
                "past_rate_per_sender",
                f64::from(past.rate),
                "/s",
                Better::Higher,
            )
            .metric(
                "past_deliveries_per_s",
                o.deliveries_per_sec,
                "/s",
                Better::Higher,
            )
            .metric("past_lost", o.lost as f64, "", Better::Lower)
            .metric("past_lat_p99_ms", o.latency_ms(0.99), "ms", Better::Lower)
            .metric(
                "past_send_lag_p99_ms",
                o.send_lag_ms(0.99),
                "ms",
                Better::Lower,
            )
            .count("past_resyncs", o.resyncs);
            // Where the CPU went one step past the ceiling (on a cluster).
            add_process_cpu(&mut r, "past_", &o.processes, o.delivered);
        }
        r.count("steps", self.steps.len() as u64);
        // Tries after a first failure on time alone at the same rate.
        r.count(
            "retried_steps",
            self.steps.iter().filter(|s| s.attempt > 0).count() as u64,
        );
        r
    }
}

/// Doubles the rate from `start_rate` until a step fails (or the doublings run out), then
/// bisects between the last pass and the first failure. `on_step` sees every step.
pub async fn max_rate(
    run: &Run,
    params: &MaxRateParams,
    mut on_step: impl FnMut(&Step),
) -> Result<MaxRate> {
    let mut result = MaxRate {
        best_rate: 0,
        failed_rate: None,
        steps: Vec::new(),
    };
    let mut rate = params.start_rate.max(1);
    for _ in 0..=params.max_doublings {
        if !search_step(run, params, rate, &mut result, &mut on_step).await? {
            break;
        }
        rate = rate.saturating_mul(2);
    }
    for _ in 0..params.bisect_steps {
        let Some(failed) = result.failed_rate else {
            break;
        };
        let mid = (result.best_rate + failed) / 2;
        if mid <= result.best_rate || mid >= failed {
            break;
        }
        search_step(run, params, mid, &mut result, &mut on_step).await?;
    }
    Ok(result)
}

/// Runs a step at `rate` (again while it fails on time alone and tries remain); whether the
/// rate passed.
async fn search_step(
    run: &Run,
    params: &MaxRateParams,
    rate: u32,
    result: &mut MaxRate,
    on_step: &mut impl FnMut(&Step),
) -> Result<bool> {
    let mut attempt = 0;
    let passed = loop {
        tokio::time::sleep(params.settle).await;
        let outcome = fanout(run, &params.step(rate)).await?;
        let complete = outcome.complete();
        let passed = complete
            && outcome.latency_ms(0.99) < params.p99_limit_ms
            && outcome.send_lag_ms(0.99) < params.p99_limit_ms;
        let step = Step {
            rate,
            attempt,
            passed,
            outcome,
        };
        on_step(&step);
        result.steps.push(step);
        if passed || !complete || attempt >= params.retries {
            break passed;
        }
        attempt += 1;
    };
    if passed {
        result.best_rate = result.best_rate.max(rate);
    } else {
        result.failed_rate = Some(result.failed_rate.map_or(rate, |f| f.min(rate)));
    }
    Ok(passed)
}

/// A one-line account of a search step, for the log; the tenths of a second whose worst
/// latency was over `limit_ms` are named (seconds from the first send).
pub fn step_line(label: &str, step: &Step, limit_ms: f64) -> String {
    let o = &step.outcome;
    let slow = o.slow_tenths(limit_ms);
    format!(
        "  {label:<14} r={:<5} {}{}  delivered {}/{} lost {} dup {}  {:.0}/s  p50 {:.2} ms  p99 {:.2} ms  max {:.1} ms  lag p99 {:.1} ms{}  server cpu {}{}  loader cpu {}{}{}",
        step.rate,
        if step.passed { "pass" } else { "FAIL" },
        if step.attempt > 0 {
            format!(" (try {})", step.attempt + 1)
        } else {
            String::new()
        },
        o.delivered,
        o.expected,
        o.lost,
        o.duplicated,
        o.deliveries_per_sec,
        o.latency_ms(0.5),
        o.latency_ms(0.99),
        if o.latency.is_empty() { 0.0 } else { ms(o.latency.max()) },
        o.send_lag_ms(0.99),
        if o.resyncs > 0 {
            format!("  resyncs {} (resets {})", o.resyncs, o.resets)
        } else {
            String::new()
        },
        o.server_cpu_pct.map_or("-".into(), |c| format!("{c:.0}%")),
        if o.processes.is_empty() {
            String::new()
        } else {
            format!(" ({})", cpu_shares_line(&o.processes))
        },
        o.loader_cpu_pct.map_or("-".into(), |c| format!("{c:.0}%")),
        if slow.is_empty() {
            String::new()
        } else {
            format!(
                "  over {limit_ms} ms in {} of {} tenths, at {} s",
                slow.len(),
                o.worst_by_tenth.len(),
                slow.iter()
                    .map(|s| format!("{s:.1}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        },
        o.first_error.as_ref().map_or(String::new(), |e| format!("  ({e})")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::small_histogram;

    fn step(rate: u32, passed: bool, lost: u64) -> Step {
        let mut latency = small_histogram();
        latency
            .record(if passed { 10_000 } else { 80_000 })
            .unwrap();
        Step {
            rate,
            attempt: 0,
            passed,
            outcome: FanoutOutcome {
                connected: 4,
                connect_failed: 0,
                sent: u64::from(rate),
                expected: u64::from(rate) * 4,
                delivered: u64::from(rate) * 4 - lost,
                lost,
                duplicated: 0,
                unexpected: 0,
                acks: 0,
                errors: 0,
                resyncs: 2,
                resets: 0,
                closed_early: 0,
                latency,
                send_lag: small_histogram(),
                connect: small_histogram(),
                deliveries_per_sec: f64::from(rate) * 4.0,
                server_cpu_pct: None,
                server_cpu_secs: None,
                processes: Vec::new(),
                loader_cpu_pct: None,
                first_error: None,
                worst_by_tenth: if passed {
                    vec![10_000; 10]
                } else {
                    vec![10_000, 80_000, 10_000, 60_000]
                },
            },
        }
    }

    #[test]
    fn a_step_line_names_the_tenths_over_the_limit() {
        let failed = step_line("pg", &step(40, false, 0), 50.0);
        assert!(
            failed.contains("over 50 ms in 2 of 4 tenths, at 0.1 0.3 s"),
            "{failed}"
        );
        let passed = step_line("pg", &step(20, true, 0), 50.0);
        assert!(!passed.contains("tenths"), "{passed}");
    }

    #[test]
    fn the_report_shows_the_step_past_the_ceiling() {
        // Doubling 10, 20, 40 (fails), then bisection 30 (fails): 30 is one step past 20.
        let found = MaxRate {
            best_rate: 20,
            failed_rate: Some(30),
            steps: vec![
                step(10, true, 0),
                step(20, true, 0),
                step(40, false, 9),
                step(30, false, 3),
            ],
        };
        assert_eq!(found.past().map(|s| s.rate), Some(30));
        let report = found.report("flack", &MaxRateParams::new(4, 1, 1));
        assert_eq!(report.get("max_rate_per_sender"), Some(20.0));
        assert_eq!(report.get("deliveries_per_s"), Some(80.0));
        assert_eq!(report.get("past_rate_per_sender"), Some(30.0));
        assert_eq!(report.get("past_deliveries_per_s"), Some(120.0));
        assert_eq!(report.get("past_lost"), Some(3.0));
        assert_eq!(report.get("past_resyncs"), Some(2.0));
        assert!(report.get("past_lat_p99_ms").unwrap() >= 79.0);

        let never_failed = MaxRate {
            best_rate: 10,
            failed_rate: None,
            steps: vec![step(10, true, 0)],
        };
        assert!(never_failed.past().is_none());
        let report = never_failed.report("flack", &MaxRateParams::new(4, 1, 1));
        assert_eq!(report.get("past_rate_per_sender"), None);
    }
}
