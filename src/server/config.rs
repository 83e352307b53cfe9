//! Flack's runtime settings: built-in defaults, then `Leptos.toml` (or the file named by
//! `FLACK_CONFIG`), then `FLACK_*` environment variables, each overriding the one before.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// Where messages are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// A SQLite file: everything survives restarts.
    Sqlite,
    /// Memory only: the last `history_window` messages per channel, gone on restart.
    Memory,
}

/// All of Flack's own settings. Field names are the keys in `Leptos.toml` and, upper-cased with
/// a `FLACK_` prefix, the environment variables (`FLACK_ADDRESS=0.0.0.0:8080`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the server listens.
    pub address: SocketAddr,
    /// Where messages are kept: `"sqlite"` (durable) or `"memory"`.
    pub store: StoreKind,
    /// The SQLite file (created on first start).
    pub database: std::path::PathBuf,
    /// Wait for the disk on every commit (survives power loss, not just a crash).
    pub sqlite_full_sync: bool,
    /// Messages kept in memory per channel (the spec's 100).
    pub history_window: usize,
    /// Messages per second one user may send, sustained.
    pub rate_limit_per_sec: u32,
    /// Messages one user may send in a burst before the rate applies.
    pub rate_limit_burst: u32,
    /// Refused sends in a row after which a WebSocket is closed (code 4029).
    pub flood_strikes: u32,
    /// Frames queued for one WebSocket; a client that lets more pile up is cut off (4008).
    pub outgoing_queue: usize,
    /// Seconds one write to a client may take before it is cut off.
    pub write_timeout_secs: u64,
    /// Channels that exist from the first start.
    pub default_channels: Vec<String>,
    /// Seconds between WebSocket pings; a peer silent for two intervals is dropped.
    pub ping_interval_secs: u64,
    /// Events buffered per channel for subscribers; one that falls further behind is resynced.
    pub broadcast_capacity: usize,
    /// Browser origins allowed to open the WebSocket and call server functions besides the
    /// site's own (e.g. `"https://chat.example.com"`).
    pub allowed_origins: Vec<String>,
    /// Mark the identity cookie `Secure` (set it when serving over HTTPS).
    pub secure_cookies: bool,
    /// `tracing` filter, e.g. `"info"` or `"flack=debug,tower_http=info"`.
    pub log: String,
    /// Log as JSON lines instead of text.
    pub log_json: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            address: SocketAddr::from(([127, 0, 0, 1], 3000)),
            store: StoreKind::Sqlite,
            database: "flack.db".into(),
            sqlite_full_sync: false,
            history_window: crate::protocol::HISTORY_WINDOW,
            rate_limit_per_sec: 20,
            rate_limit_burst: 60,
            flood_strikes: 20,
            outgoing_queue: 1024,
            write_timeout_secs: 10,
            default_channels: vec!["general".into()],
            ping_interval_secs: 20,
            broadcast_capacity: 1024,
            allowed_origins: Vec::new(),
            secure_cookies: false,
            log: "info".into(),
            log_json: false,
        }
    }
}

impl Config {
    /// Reads the settings: defaults, then the TOML file, then `FLACK_*` variables.
    pub fn load() -> Result<Self, Box<figment::Error>> {
        let file = std::env::var("FLACK_CONFIG").unwrap_or_else(|_| "Leptos.toml".into());
        Self::figment(&file).extract().map_err(Box::new)
    }

    fn figment(file: &str) -> Figment {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(file))
            .merge(Env::prefixed("FLACK_").ignore(&["config"]))
    }

    /// The write timeout as a duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs.max(1))
    }

    /// The per-user sending limit.
    pub fn post_limit(&self) -> super::chat::PostLimit {
        super::chat::PostLimit {
            per_second: self.rate_limit_per_sec,
            burst: self.rate_limit_burst,
        }
    }

    /// The ping interval as a duration.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs.max(1))
    }
}

#[cfg(test)]
// figment's test jail returns its large error type by design.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "flack.toml",
                "history_window = 50\naddress = \"127.0.0.1:4000\"",
            )?;
            jail.set_env("FLACK_ADDRESS", "127.0.0.1:5000");
            let config: Config = Config::figment("flack.toml").extract()?;
            assert_eq!(config.history_window, 50);
            assert_eq!(config.address.port(), 5000);
            assert_eq!(
                config.ping_interval_secs,
                Config::default().ping_interval_secs
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("flack.toml", "histroy_window = 50")?;
            assert!(Config::figment("flack.toml").extract::<Config>().is_err());
            Ok(())
        });
    }

    #[test]
    fn missing_file_means_defaults() {
        let config: Config = Config::figment("/nonexistent/flack.toml")
            .extract()
            .unwrap();
        assert_eq!(config, Config::default());
    }
}
