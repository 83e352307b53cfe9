//! The load generator's scenarios, briefly and with small numbers, against Flack (in this
//! process, on port 0, memory and SQLite stores) and the reference relay: every count must be
//! exact. Nothing here asserts speed.
#![cfg(feature = "load")]

mod common;

use flack::load::connections::{connections, ConnectionsParams};
use flack::load::fanout::{fanout, FanoutParams};
use flack::load::history::{history, page_snapshot, HistoryParams};
use flack::load::max_rate::{max_rate, MaxRateParams};
use flack::load::{reference, summary, wasm, Report, Run, Target};
use flack::protocol::HISTORY_WINDOW;
use flack::server::config::{Config, StoreKind};
use std::time::Duration;

/// Flack with the given store and rate limits out of the way; its base URL.
async fn start_flack(store: StoreKind) -> String {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let config = Config {
        store,
        database: dir.path().join("flack.db"),
        rate_limit_per_sec: 1_000_000,
        rate_limit_burst: 1_000_000,
        frame_rate_per_sec: 1_000_000,
        frame_burst: 1_000_000,
        subscribe_rate_per_sec: 1_000_000,
        subscribe_burst: 1_000_000,
        join_bytes_per_sec_per_ip: 1 << 40,
        join_bytes_burst_per_ip: 1 << 40,
        new_identities_per_hour: 1_000_000,
        new_identities_burst: 1_000_000,
        new_channels_per_hour: 1_000_000,
        new_channels_burst: 1_000_000,
        max_connections_per_ip: 100_000,
        max_connections: 100_000,
        ..Config::default()
    };
    let addr = common::serve(config).await;
    format!("http://{addr}")
}

/// The reference relay serving `page`; its base URL.
async fn start_reference(page: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(reference::serve(listener, page.into()));
    format!("http://{addr}")
}

/// Both targets, labelled as the benchmark labels them; this process is both servers.
async fn both(store: StoreKind) -> Vec<Run> {
    let me = Some(std::process::id());
    vec![
        Run::new(Target::flack(&start_flack(store).await), me),
        Run::new(
            Target::reference(&start_reference(reference::generated_page().to_vec()).await),
            me,
        ),
    ]
}

fn small_fanout() -> FanoutParams {
    FanoutParams {
        grace: Duration::from_secs(10),
        ..FanoutParams::new(10, 3, 20, 1)
    }
}

async fn fanout_is_exact(store: StoreKind) -> Vec<Report> {
    fanout_exactly(store, small_fanout()).await
}

async fn fanout_exactly(store: StoreKind, params: FanoutParams) -> Vec<Report> {
    let mut reports = Vec::new();
    for run in both(store).await {
        let outcome = fanout(&run, &params).await.unwrap();
        let label = &run.label;
        assert_eq!(outcome.connected, 10, "{label}");
        assert_eq!(outcome.sent, 3 * 20, "{label}");
        assert_eq!(
            outcome.expected,
            3 * 20 * 10,
            "{label}: everyone, senders too"
        );
        assert_eq!(
            outcome.delivered, outcome.expected,
            "{label}: {:?}",
            outcome.first_error
        );
        assert_eq!(outcome.lost, 0, "{label}");
        assert_eq!(outcome.duplicated, 0, "{label}");
        assert_eq!(outcome.unexpected, 0, "{label}");
        assert_eq!(outcome.closed_early, 0, "{label}");
        assert_eq!(outcome.errors, 0, "{label}");
        assert_eq!(outcome.resets, 0, "{label}");
        assert!(outcome.complete(), "{label}");
        assert_eq!(outcome.latency.len(), outcome.delivered, "{label}");
        assert_eq!(outcome.connect.len(), 10, "{label}");
        if run.target.is_flack() {
            assert_eq!(outcome.acks, outcome.sent, "every send acknowledged");
        } else {
            assert_eq!(outcome.acks, 0);
        }
        let report = outcome.report(&run.label, &params);
        assert_eq!(report.get("expected"), Some(600.0));
        assert_eq!(report.get("delivered"), Some(600.0));
        assert_eq!(report.get("lost"), Some(0.0));
        reports.push(report);
    }
    reports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_delivers_every_message_to_every_client_once() {
    let reports = fanout_is_exact(StoreKind::Memory).await;
    // The final table of a run has a row per figure and the ratio column.
    let log: String = reports.iter().map(|r| r.result_line() + "\n").collect();
    let table = summary::markdown(&summary::parse_results(&log));
    assert!(
        table.contains("| fanout | c=10 s=3 r=20 d=1 | delivered |  | 600 | 600 | - |"),
        "{table}"
    );
    assert!(table.contains("flack vs ref"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_to_members_of_many_channels_is_exact() {
    // Every client a member of 4 channels, messages in one: each message also concerns
    // every member's own stream, and still reaches each socket exactly once.
    let params = FanoutParams {
        memberships: 4,
        ..small_fanout()
    };
    let reports = fanout_exactly(StoreKind::Memory, params).await;
    assert_eq!(reports[0].case, "c=10 s=3 r=20 d=1 m=4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_fanout_delivers_every_message_once() {
    fanout_is_exact(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_idle_connection_is_held() {
    let params = ConnectionsParams {
        hold: Duration::from_millis(500),
        batch: 64,
        concurrency: 16,
        ..ConnectionsParams::new(200)
    };
    for run in both(StoreKind::Memory).await {
        let outcome = connections(&run, &params).await.unwrap();
        let label = &run.label;
        assert_eq!(outcome.held, 200, "{label}: {:?}", outcome.first_error);
        assert_eq!(outcome.failed, 0, "{label}");
        assert_eq!(outcome.connect.len(), 200, "{label}");
        assert!(outcome.rss_before_kib.is_some() && outcome.rss_after_kib.is_some());
        assert_eq!(
            outcome.report(label, &params).get("held"),
            Some(200.0),
            "{label}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_history_page_and_join_is_whole() {
    let flack = Target::flack(&start_flack(StoreKind::Memory).await);
    // The reference serves a real Flack page, as in the benchmark.
    let page = page_snapshot(&flack).await.unwrap();
    let last = format!("history message {HISTORY_WINDOW} of {HISTORY_WINDOW}");
    assert!(String::from_utf8_lossy(&page).contains(&last));
    let me = Some(std::process::id());
    let runs = [
        Run::new(flack, me),
        Run::new(Target::reference(&start_reference(page.clone()).await), me),
    ];
    let params = HistoryParams {
        clients: 8,
        requests: 50,
        joins: 50,
        rate: 200,
        paced_requests: 40,
        rich: false,
    };
    for run in runs {
        let outcome = history(&run, &params).await.unwrap();
        let label = &run.label;
        let p = &outcome.page;
        assert_eq!(p.ok, 50, "{label}: {:?}", p.first_error);
        assert_eq!(p.failed, 0, "{label}");
        assert_eq!(p.latency.len(), 50, "{label}");
        let paced = outcome.paced.as_ref().expect("a paced run was asked for");
        assert_eq!(paced.ok, 40, "{label}: {:?}", paced.first_error);
        assert_eq!(paced.failed, 0, "{label}");
        assert_eq!(paced.latency.len(), 40, "{label}");
        let reports = outcome.reports(label, &params);
        if run.target.is_flack() {
            let join = outcome
                .join
                .as_ref()
                .expect("Flack is joined over the socket");
            assert_eq!(join.ok, 50, "{:?}", join.first_error);
            assert_eq!(join.failed, 0);
            assert_eq!(reports.len(), 3);
        } else {
            assert_eq!(p.page_bytes, page.len());
            assert!(outcome.join.is_none());
            assert_eq!(reports.len(), 2);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_messages_with_reactions_and_threads_is_served() {
    let flack = Target::flack(&start_flack(StoreKind::Memory).await);
    let params = HistoryParams {
        clients: 4,
        requests: 20,
        joins: 0,
        rate: 200,
        paced_requests: 20,
        rich: true,
    };
    let run = Run::new(flack, Some(std::process::id()));
    let outcome = history(&run, &params).await.unwrap();
    assert_eq!(outcome.page.ok, 20, "{:?}", outcome.page.first_error);
    let paced = outcome.paced.as_ref().expect("a paced run was asked for");
    assert_eq!(paced.ok, 20, "{:?}", paced.first_error);
    assert!(outcome.join.is_none(), "no joins were asked for");
    let reports = outcome.reports("flack", &params);
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[1].case, "rate=200/s requests=20 reactions+threads");
    // The run checked that every message shows its reactions and replies before loading.
    assert!(reports[0].get("page_bytes").unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_search_is_bounded() {
    let params = MaxRateParams {
        start_rate: 10,
        max_doublings: 1,
        bisect_steps: 1,
        // Retries have a test of their own; here each rate is tried once.
        retries: 0,
        settle: Duration::from_millis(100),
        ..MaxRateParams::new(4, 2, 1)
    };
    for run in both(StoreKind::Memory).await {
        let mut seen = 0;
        let found = max_rate(&run, &params, |_| seen += 1).await.unwrap();
        // At most two doubling steps and one bisection.
        assert!(
            (1..=3).contains(&found.steps.len()),
            "{}",
            found.steps.len()
        );
        assert_eq!(seen, found.steps.len());
        for step in &found.steps {
            assert_eq!(step.outcome.expected, u64::from(step.rate) * 2 * 4);
        }
        let report = found.report(&run.label, &params);
        assert_eq!(
            report.get("max_rate_per_sender"),
            Some(f64::from(found.best_rate))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_fails_on_time_alone_is_tried_again_before_its_rate_fails() {
    let search = |p99_limit_ms| MaxRateParams {
        start_rate: 10,
        max_doublings: 0,
        bisect_steps: 0,
        p99_limit_ms,
        settle: Duration::from_millis(100),
        ..MaxRateParams::new(4, 2, 1)
    };
    let run = both(StoreKind::Memory).await.remove(0);
    // No latency is under 0 ms: every delivery arrives, and each try fails on time.
    let strict = search(0.0);
    let found = max_rate(&run, &strict, |_| {}).await.unwrap();
    let tries: Vec<(u32, u32, bool)> = found
        .steps
        .iter()
        .map(|s| (s.rate, s.attempt, s.passed))
        .collect();
    assert_eq!(tries, [(10, 0, false), (10, 1, false)]);
    assert!(found.steps.iter().all(|s| s.outcome.complete()));
    assert_eq!((found.best_rate, found.failed_rate), (0, Some(10)));
    assert_eq!(found.past().map(|s| s.attempt), Some(1), "the last try");
    // A step that passes is not run again.
    let found = max_rate(&run, &search(60_000.0), |_| {}).await.unwrap();
    assert_eq!(found.steps.len(), 1);
    assert_eq!((found.best_rate, found.failed_rate), (10, None));
}

#[test]
fn bundle_sizes_are_raw_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.wasm"), vec![0u8; 10_000]).unwrap();
    std::fs::write(dir.path().join("app.js"), "x".repeat(3000)).unwrap();
    std::fs::write(dir.path().join("app.css"), "body{}").unwrap();
    let sizes = wasm::wasm_size(dir.path()).unwrap();
    let names: Vec<&str> = sizes.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["app.js", "app.wasm"]);
    assert_eq!(sizes[1].raw, 10_000);
    assert!(sizes[1].gzip > 0 && sizes[1].gzip < 10_000);
    assert!(wasm::wasm_size(&dir.path().join("missing")).is_err());
}
