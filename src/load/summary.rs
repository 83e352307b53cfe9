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

#[cfg(test)]
mod tests {
    use super::*;

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
