//! The final table of a benchmark run: every `RESULT` line of its log as one markdown table,
//! a row per figure, a column per target, and each target's ratio to the reference.

use super::{format_value, is_reference_label, ratio, Better, Report};

/// The reports in a log (lines starting `RESULT `; everything else is skipped).
pub fn parse_results(log: &str) -> Vec<Report> {
    log.lines()
        .filter_map(|line| line.trim().strip_prefix("RESULT "))
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect()
}

/// One markdown table of all reports: scenario, case and figure per row; a column per target
/// label (in order of appearance); then, for every label that is not the reference, its ratio
/// to the reference of the same case (above 1 = better: target ÷ reference for throughput,
/// reference ÷ target for latency, memory and losses).
pub fn markdown(reports: &[Report]) -> String {
    let mut labels: Vec<&str> = Vec::new();
    for r in reports {
        if !labels.contains(&r.target.as_str()) {
            labels.push(&r.target);
        }
    }
    let reference = labels.iter().copied().find(|l| is_reference_label(l));
    let challengers: Vec<&str> = match reference {
        Some(_) => labels
            .iter()
            .copied()
            .filter(|l| !is_reference_label(l))
            .collect(),
        None => Vec::new(),
    };
    // Rows: (scenario, case, metric) in order of first appearance.
    let mut rows: Vec<(&str, &str, &str, &str, Better)> = Vec::new();
    for r in reports {
        for m in &r.metrics {
            let key = (r.scenario.as_str(), r.case.as_str(), m.name.as_str());
            if !rows.iter().any(|(s, c, n, _, _)| (*s, *c, *n) == key) {
                rows.push((key.0, key.1, key.2, &m.unit, m.better));
            }
        }
    }
    // The last report wins if a (scenario, case, target) appears twice.
    let value = |scenario: &str, case: &str, label: &str, name: &str| {
        reports
            .iter()
            .rev()
            .find(|r| r.scenario == scenario && r.case == case && r.target == label)
            .and_then(|r| r.get(name))
    };
    let mut out = String::from("| scenario | case | metric | unit |");
    for l in &labels {
        out.push_str(&format!(" {l} |"));
    }
    for c in &challengers {
        out.push_str(&format!(" {c} vs ref |"));
    }
    out.push_str("\n|---|---|---|---|");
    for _ in 0..labels.len() + challengers.len() {
        out.push_str("---:|");
    }
    out.push('\n');
    for (scenario, case, name, unit, better) in rows {
        out.push_str(&format!("| {scenario} | {case} | {name} | {unit} |"));
        for l in &labels {
            let cell = value(scenario, case, l, name)
                .map(format_value)
                .unwrap_or_default();
            out.push_str(&format!(" {cell} |"));
        }
        for c in &challengers {
            let cell = match (
                value(scenario, case, c, name),
                reference.and_then(|r| value(scenario, case, r, name)),
            ) {
                (Some(v), Some(r)) => ratio(better, v, r)
                    .map(|x| format!("{x:.2}x"))
                    .unwrap_or_else(|| "-".into()),
                _ => String::new(),
            };
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    out
}

/// The bars of a cluster run: one node on PostgreSQL + Redis keeps at least `min_ratio` of
/// one node on SQLite's highest max-rate, and the big fan-out across the cluster's nodes
/// delivers everything exactly once.
#[derive(Debug, Clone)]
pub struct ClusterBars {
    /// The label of one node on SQLite.
    pub sqlite: String,
    /// The label of one node on PostgreSQL + Redis.
    pub one: String,
    /// The label of the cluster whose fan-out must lose nothing.
    pub cluster: String,
    /// The max-rate case of both (default: that of `one`'s last max-rate report).
    pub max_rate_case: Option<String>,
    /// The fan-out case of the cluster (default: that of `cluster`'s last fan-out report).
    pub fanout_case: Option<String>,
    /// The least share of SQLite's max-rate.
    pub min_ratio: f64,
}

/// Whether each bar was met, with a sentence on each.
#[derive(Debug, Clone, PartialEq)]
pub struct BarsOutcome {
    /// (met, sentence) per bar; `None`: not measured.
    pub bars: Vec<(Option<bool>, String)>,
}

impl BarsOutcome {
    /// Every bar measured and met.
    pub fn all_met(&self) -> bool {
        self.bars.iter().all(|(met, _)| *met == Some(true))
    }

    /// One line per bar.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (met, line) in &self.bars {
            let verdict = match met {
                Some(true) => "met   ",
                Some(false) => "MISSED",
                None => "n/a   ",
            };
            out.push_str(&format!("{verdict}  {line}\n"));
        }
        out
    }
}

/// `node1 45%, postgres 30%, …` from a report's `{prefix}cpu_pct_*` figures.
fn cpu_shares(report: &Report, prefix: &str) -> String {
    let head = format!("{prefix}cpu_pct_");
    let shares: Vec<String> = report
        .metrics
        .iter()
        .filter_map(|m| {
            let name = m.name.strip_prefix(&head)?;
            Some(format!("{name} {:.0}%", m.value))
        })
        .collect();
    if shares.is_empty() {
        String::new()
    } else {
        format!("; cpu (% of a core): {}", shares.join(", "))
    }
}

impl ClusterBars {
    /// Checks the bars against the reports of a run (the last report of a label wins).
    pub fn check(&self, reports: &[Report]) -> BarsOutcome {
        let find = |scenario: &str, case: &str, label: &str| {
            reports
                .iter()
                .rev()
                .find(|r| r.scenario == scenario && r.case == case && r.target == label)
        };
        let case_of = |given: &Option<String>, scenario: &str, label: &str| {
            given.clone().unwrap_or_else(|| {
                reports
                    .iter()
                    .rev()
                    .find(|r| r.scenario == scenario && r.target == label)
                    .map(|r| r.case.clone())
                    .unwrap_or_default()
            })
        };
        let max_rate_case = case_of(&self.max_rate_case, "max-rate", &self.one);
        let fanout_case = case_of(&self.fanout_case, "fanout", &self.cluster);
        let mut bars = Vec::new();
        let sqlite = find("max-rate", &max_rate_case, &self.sqlite);
        let one = find("max-rate", &max_rate_case, &self.one);
        let rate = |r: Option<&Report>| r.and_then(|r| r.get("max_rate_per_sender"));
        bars.push(match (rate(sqlite), rate(one), one) {
            (Some(s), Some(o), Some(one_report)) if s > 0.0 => {
                let x = o / s;
                let mut line = format!(
                    "max-rate {}: {} {} /s per sender vs {} {} /s = {x:.2}x (bar >= {:.2}x",
                    max_rate_case,
                    self.one,
                    format_value(o),
                    self.sqlite,
                    format_value(s),
                    self.min_ratio
                );
                if x < self.min_ratio {
                    line += &format!(
                        ", short by {:.2}x: {} /s per sender needed",
                        self.min_ratio - x,
                        format_value(self.min_ratio * s)
                    );
                }
                line.push(')');
                line += &cpu_shares(one_report, "");
                if one_report.get("past_rate_per_sender").is_some() {
                    line += &format!(
                        "; one step past, at {} /s{}",
                        format_value(one_report.get("past_rate_per_sender").unwrap_or(0.0)),
                        cpu_shares(one_report, "past_")
                    );
                }
                (Some(x >= self.min_ratio), line)
            }
            (Some(_), Some(o), _) => (
                None,
                format!(
                    "max-rate {}: {} passed no rate (so no ratio); {} {} /s per sender",
                    max_rate_case,
                    self.sqlite,
                    self.one,
                    format_value(o)
                ),
            ),
            _ => (
                None,
                format!(
                    "max-rate {}: {} or {} not measured",
                    max_rate_case, self.one, self.sqlite
                ),
            ),
        });
        bars.push(match find("fanout", &fanout_case, &self.cluster) {
            Some(r) => {
                let get = |name: &str| r.get(name).unwrap_or(0.0);
                let complete = get("expected") > 0.0
                    && get("delivered") == get("expected")
                    && get("lost") == 0.0
                    && get("duplicated") == 0.0
                    && get("connect_failed") == 0.0
                    && get("closed_early") == 0.0;
                let line = format!(
                    "fanout {} on {}: delivered {}/{}, lost {}, duplicated {}, join failures {}, closed early {}, p99 {} ms (bar: zero loss){}",
                    fanout_case,
                    self.cluster,
                    format_value(get("delivered")),
                    format_value(get("expected")),
                    format_value(get("lost")),
                    format_value(get("duplicated")),
                    format_value(get("connect_failed")),
                    format_value(get("closed_early")),
                    format_value(get("lat_p99_ms")),
                    cpu_shares(r, "")
                );
                (Some(complete), line)
            }
            None => (
                None,
                format!(
                    "fanout {} on {}: not measured",
                    fanout_case, self.cluster
                ),
            ),
        });
        BarsOutcome { bars }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_bars_say_by_how_much_they_are_missed() {
        let bars = ClusterBars {
            sqlite: "flack-sqlite".into(),
            one: "flack-pg-redis-1".into(),
            cluster: "flack-pg-redis-3".into(),
            max_rate_case: None,
            fanout_case: Some("c=1000 s=10 r=10 d=10".into()),
            min_ratio: 0.5,
        };
        let mut sqlite = Report::new("max-rate", "c=100 s=20 d=3 p99<50ms", "flack-sqlite");
        sqlite.metric("max_rate_per_sender", 160.0, "/s", Better::Higher);
        let mut one = Report::new("max-rate", "c=100 s=20 d=3 p99<50ms", "flack-pg-redis-1");
        one.metric("max_rate_per_sender", 40.0, "/s", Better::Higher)
            .metric("cpu_pct_node1", 60.0, "%", Better::Neither)
            .metric("cpu_pct_postgres", 30.0, "%", Better::Neither);
        let mut fan = Report::new("fanout", "c=1000 s=10 r=10 d=10", "flack-pg-redis-3");
        fan.count("expected", 100).count("delivered", 100);
        fan.metric("lost", 0.0, "", Better::Lower);
        let outcome = bars.check(&[sqlite, one, fan]);
        assert_eq!(outcome.bars[0].0, Some(false));
        assert!(outcome.bars[0].1.contains("0.25x"), "{:?}", outcome.bars[0]);
        assert!(outcome.bars[0].1.contains("80 /s per sender needed"));
        assert!(outcome.bars[0].1.contains("postgres 30%"));
        assert_eq!(outcome.bars[1].0, Some(true));
        assert!(!outcome.all_met());
        assert!(outcome.text().starts_with("MISSED"));
        assert_eq!(bars.check(&[]).bars[1].0, None);
    }

    #[test]
    fn results_become_one_table_with_ratios() {
        let mut flack = Report::new("fanout", "c=1", "flack");
        flack
            .metric("deliveries_per_s", 50.0, "/s", Better::Higher)
            .metric("lat_p99_ms", 4.0, "ms", Better::Lower);
        let mut reference = Report::new("fanout", "c=1", "reference");
        reference
            .metric("deliveries_per_s", 100.0, "/s", Better::Higher)
            .metric("lat_p99_ms", 1.0, "ms", Better::Lower);
        let log = format!(
            "noise\n{}\n{}\n",
            flack.result_line(),
            reference.result_line()
        );
        let reports = parse_results(&log);
        assert_eq!(reports.len(), 2);
        let table = markdown(&reports);
        assert!(
            table.contains("| fanout | c=1 | deliveries_per_s | /s | 50 | 100 | 0.50x |"),
            "{table}"
        );
        assert!(
            table.contains("| lat_p99_ms | ms | 4 | 1 | 0.25x |"),
            "{table}"
        );
    }
}
