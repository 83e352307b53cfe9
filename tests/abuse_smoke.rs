//! The abuse scenario, about a second per attack and with small numbers, against Flack in
//! this process (port 0, SQLite, default limits): every attack runs, its counters move, and
//! a fresh browser is served after each. The bars are benchmark figures (`scripts/bench.sh`
//! step `abuse`), so nothing here asserts them, nor any timing.
#![cfg(feature = "load")]

mod common;

use flack::load::abuse::{abuse, AbuseParams, Attack};
use flack::load::{print_reports, Run, Target};
use flack::server::config::{Config, StoreKind};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_runs_and_a_fresh_browser_is_served_after_each() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        store: StoreKind::Sqlite,
        database: dir.path().join("flack.db"),
        ..Config::default()
    };
    let addr = common::serve(config).await;
    // The server is this process: its memory and descriptors are read from here.
    let run = Run::new(
        Target::flack(&format!("http://{addr}")),
        Some(std::process::id()),
    );
    let params = AbuseParams {
        window: Duration::from_secs(1),
        quiet: Duration::from_secs(1),
        settle: Duration::from_millis(300),
        quiesce: Duration::from_secs(2),
        grace: Duration::from_secs(2),
        prepare: Duration::from_secs(15),
        never_read_subscribes: 20,
        slow_sockets: 12,
        ..AbuseParams::quick(1)
    };
    let mut seen = Vec::new();
    let outcome = abuse(&run, &params, |a| {
        seen.push(a.attack);
        print_reports(&[a.report("flack", &params)]);
    })
    .await
    .unwrap();
    println!("{}", outcome.bars_table());
    assert_eq!(seen, Attack::ALL);
    assert!(outcome.quiet.acked > 0, "{:?}", outcome.quiet.first_error);
    assert_eq!(outcome.attacks.len(), Attack::ALL.len());
    for a in &outcome.attacks {
        let name = a.attack.name();
        let count = |row: &str| a.count(row).unwrap_or_else(|| panic!("{name}: no {row}"));
        assert!(a.fresh_ok(), "{name}: {:?}", a.fresh);
        assert!(a.user.sent > 0, "{name}: the normal user chatted");
        assert!(a.user.acked > 0, "{name}: {:?}", a.user.first_error);
        assert!(a.window_secs > 0.0, "{name}: {:?}", a.first_error);
        assert!(a.rss_before_kib.is_some() && a.rss_after_kib.is_some());
        assert!(a.rss_peak_kib >= a.rss_before_kib && a.rss_peak_kib >= a.rss_after_kib);
        assert!(a.fds_peak.is_some_and(|f| f > 0));
        assert!(!a.stopped_early, "{name}");
        // What the attack did, whatever the server let it: these hold against today's
        // server and against one that refuses more of it.
        let tried = || count("sockets_opened") + count("connect_refused");
        match a.attack {
            Attack::SubscribeUnknown | Attack::FrameFlood => {
                assert!(tried() > 0, "{name}");
                assert!(count("frames_sent") > 0, "{name}: {:?}", a.first_error);
                assert!(count("replies") > 0, "{name}");
                if a.attack == Attack::FrameFlood {
                    assert!(count("deletes_sent") > 0 && count("malformed_sent") > 0);
                    assert_eq!(
                        count("frames_sent"),
                        count("deletes_sent") + count("malformed_sent")
                    );
                } else {
                    assert_eq!(count("frames_sent"), count("subscribes_sent"));
                }
            }
            Attack::NeverRead => {
                assert!(count("messages_filled") > 0, "{name}: {:?}", a.first_error);
                assert!(count("messages_filled") <= params.fill_messages as u64);
                assert!(count("fill_identities") >= 1);
                assert!(count("subscribes_sent") > 0, "{name}: {:?}", a.first_error);
            }
            Attack::SlowHttp => {
                assert!(tried() >= params.slow_sockets as u64, "{name}");
                assert!(count("sockets_opened") > 0, "{name}: {:?}", a.first_error);
            }
            Attack::ChannelFlood | Attack::IdentityFlood => {
                let created = if a.attack == Attack::ChannelFlood {
                    count("channels_created")
                } else {
                    count("identities_created")
                };
                assert!(created > 0, "{name}: {:?}", a.first_error);
                assert_eq!(
                    count("requests"),
                    created + count("refused") + count("errors"),
                    "{name}: every request is counted once"
                );
            }
            Attack::ManyWindows => {
                assert!(count("channels_created") > 0, "{name}: {:?}", a.first_error);
                assert!(count("channels_filled") <= count("channels_created"));
                assert!(count("messages_filled") > 0);
                assert!(
                    count("messages_filled")
                        <= (params.window_channels * params.fill_messages) as u64
                );
                assert!(count("windows_received") > 0, "{name}: {:?}", a.first_error);
                assert!(count("windows_received") <= count("subscribes_sent"));
            }
        }
        let report = a.report("flack", &params);
        assert_eq!(report.scenario, "abuse");
        assert!(report.case.starts_with(name), "{}", report.case);
        for row in [
            "rss_before_mib",
            "rss_peak_mib",
            "rss_after_mib",
            "rss_growth_mib",
            "fds_peak",
            "normal_p99_ms",
            "quiet_p99_ms",
            "p99_vs_quiet",
        ] {
            assert!(report.get(row).is_some(), "{name}: no {row}");
        }
        assert_eq!(report.get("fresh_browser_ok"), Some(1.0));
    }
}
