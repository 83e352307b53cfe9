//! Flack's runtime settings: built-in defaults, then `Leptos.toml` (or the file named by
//! `FLACK_CONFIG`), then `FLACK_*` environment variables, each overriding the one before.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Where messages are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// A SQLite file: everything survives restarts.
    Sqlite,
    /// Nothing on disk: an SQLite database in memory, gone on restart.
    Memory,
    /// A PostgreSQL database (`database_url`), which several nodes may share.
    Postgres,
}

/// All of Flack's own settings. Field names are the keys in `Leptos.toml` and, upper-cased with
/// a `FLACK_` prefix, the environment variables (`FLACK_ADDRESS=0.0.0.0:8080`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the server listens.
    pub address: SocketAddr,
    /// Where messages are kept: `"sqlite"` (durable, one node), `"memory"` or `"postgres"`
    /// (durable, shared by several nodes; needs `database_url`). A `database_url` starting
    /// with `postgres://` or `postgresql://` means `"postgres"` even when this is left at
    /// `"sqlite"` (see [`Config::store_kind`]).
    pub store: StoreKind,
    /// The SQLite file (created on first start).
    pub database: std::path::PathBuf,
    /// Wait for the disk on every commit (survives power loss, not just a crash).
    pub sqlite_full_sync: bool,
    /// The PostgreSQL database (`postgres://user:password@host:5432/flack`) for
    /// `store = "postgres"`; setting it to such a URL is enough to choose that store.
    pub database_url: Option<String>,
    /// Connections each node keeps to PostgreSQL at most.
    pub postgres_pool_size: u32,
    /// Milliseconds a node's write pipeline waits for more posts before committing a small
    /// batch to PostgreSQL (0: never waits). Each commit costs PostgreSQL far more than the
    /// rows in it, so a short wait keeps a busy node from spending the database on commits.
    pub postgres_batch_linger_ms: u64,
    /// Whether each commit to PostgreSQL waits for its WAL flush (survives a crash of
    /// PostgreSQL or of its machine). `false`: it survives a crash of a Flack node only,
    /// like `sqlite_full_sync = false`, and no commit waits on the disk.
    pub postgres_full_sync: bool,
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
    /// Mark the identity cookie `Secure` even when `public_url` is not HTTPS.
    pub secure_cookies: bool,
    /// The URL people use to reach this server (`https://chat.example.com`). Requests naming
    /// another host are refused, browser requests from another origin too; an `https` URL
    /// makes the identity cookie `Secure`. Empty: `http://` and `address` (and, when that is a
    /// loopback address, `localhost` on the same port).
    pub public_url: String,
    /// Reverse proxies whose `X-Forwarded-For` names the client (their own addresses).
    pub trusted_proxies: Vec<IpAddr>,
    /// Connections open at once, from everyone, on this process (it guards the process'
    /// own file descriptors, so it stays per node in a cluster); WebSockets on this process
    /// are held to it too.
    pub max_connections: usize,
    /// Connections open at once from one client address (IPv6: one /64) on this process.
    /// WebSockets from one address are held to it over the whole cluster (with `redis_url`).
    pub max_connections_per_ip: usize,
    /// Seconds a connection may take to send a request's head, or stay idle between requests.
    pub header_timeout_secs: u64,
    /// Seconds a request's body may take to arrive.
    pub body_timeout_secs: u64,
    /// The largest request body, in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// Bytes queued for one WebSocket; a client that lets more pile up is cut off (4008).
    pub outgoing_queue_bytes: usize,
    /// Frames of any kind one WebSocket may send per second, sustained; past it (and past
    /// `frame_burst`) a frame is refused, and `flood_strikes` refusals in a row close it (4029).
    pub frame_rate_per_sec: u32,
    /// Frames one WebSocket may send at once before `frame_rate_per_sec` applies.
    pub frame_burst: u32,
    /// Channels one user may open per second, sustained (each open sends a whole window, the
    /// dearest answer there is); past it and `subscribe_burst` an open is refused.
    pub subscribe_rate_per_sec: u32,
    /// Channels one user may open at once.
    pub subscribe_burst: u32,
    /// Bytes of channel windows (the answers to joining a channel) one client address may be
    /// sent per second, sustained; past it and `join_bytes_burst_per_ip` a join is refused.
    pub join_bytes_per_sec_per_ip: usize,
    /// Bytes of channel windows one client address may be sent at once.
    pub join_bytes_burst_per_ip: usize,
    /// New identities (stored users) one client address may create per hour, sustained.
    pub new_identities_per_hour: u32,
    /// New identities one client address may create at once.
    pub new_identities_burst: u32,
    /// New channels one client address may create per hour, sustained.
    pub new_channels_per_hour: u32,
    /// New channels one client address may create at once.
    pub new_channels_burst: u32,
    /// Channels the server holds at most; creating more is refused.
    pub max_channels: usize,
    /// Conversations one user may belong to at most (channels and direct messages).
    pub max_memberships: usize,
    /// Users kept in memory; the least recently seen are read again from the database.
    /// With `redis_url` (several nodes) none are kept: another node may rename a user or
    /// sign a token out.
    pub user_cache_entries: usize,
    /// Bytes of recent windows and their serialized join answers, kept to share between the
    /// pages and joins of an unchanged conversation.
    pub join_cache_bytes: usize,
    /// `tracing` filter, e.g. `"info"` or `"flack=debug,tower_http=info"`.
    pub log: String,
    /// Log as JSON lines instead of text.
    pub log_json: bool,
    /// The Redis server that carries events between nodes (`redis://127.0.0.1:6379/`).
    /// Empty: one node, events fan out within this process. Every node of a cluster names
    /// the same Redis and the same PostgreSQL database.
    pub redis_url: String,
    /// Put before every Redis key and channel, so that clusters can share a Redis.
    pub redis_prefix: String,
    /// Seconds a node counts as alive after its last heartbeat on Redis (it beats every
    /// third of that). The WebSockets and presence of a node that dies stop counting for the
    /// cluster this long after. Only with `redis_url`.
    pub redis_node_ttl_secs: u64,
    /// Seconds a node told to stop (SIGTERM, Ctrl-C) waits at most, once it has stopped
    /// accepting connections and asked every WebSocket to close (code 1012), for requests in
    /// progress to finish and sockets to complete their close; then it exits.
    pub shutdown_drain_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            address: SocketAddr::from(([127, 0, 0, 1], 3000)),
            store: StoreKind::Sqlite,
            database: "flack.db".into(),
            sqlite_full_sync: false,
            database_url: None,
            postgres_pool_size: 16,
            postgres_batch_linger_ms: 2,
            postgres_full_sync: true,
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
            public_url: String::new(),
            trusted_proxies: Vec::new(),
            max_connections: 20_000,
            max_connections_per_ip: 256,
            header_timeout_secs: 10,
            body_timeout_secs: 10,
            max_body_bytes: 64 * 1024,
            outgoing_queue_bytes: 4 * 1024 * 1024,
            frame_rate_per_sec: 50,
            frame_burst: 200,
            subscribe_rate_per_sec: 5,
            subscribe_burst: 30,
            join_bytes_per_sec_per_ip: 2 * 1024 * 1024,
            join_bytes_burst_per_ip: 16 * 1024 * 1024,
            new_identities_per_hour: 60,
            new_identities_burst: 20,
            new_channels_per_hour: 30,
            new_channels_burst: 10,
            max_channels: 10_000,
            max_memberships: 1_000,
            user_cache_entries: 50_000,
            join_cache_bytes: 8 * 1024 * 1024,
            log: "info".into(),
            log_json: false,
            redis_url: String::new(),
            redis_prefix: "flack".into(),
            redis_node_ttl_secs: 15,
            shutdown_drain_secs: 10,
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
            // FLACK_TEST_*: where the tests find PostgreSQL and Redis (scripts/services.sh
            // exports them, and servers the tests start inherit them); not settings.
            .merge(Env::prefixed("FLACK_").ignore(&[
                "config",
                "test_postgres_url",
                "test_redis_url",
            ]))
    }

    /// The store to open: `store`, except that a PostgreSQL `database_url` with `store` left at
    /// `"sqlite"` means PostgreSQL.
    pub fn store_kind(&self) -> StoreKind {
        let postgres_url = self
            .database_url
            .as_deref()
            .is_some_and(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"));
        match self.store {
            StoreKind::Sqlite if postgres_url => StoreKind::Postgres,
            kind => kind,
        }
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

    /// The per-user limit on opening channels.
    pub fn open_limit(&self) -> super::chat::PostLimit {
        super::chat::PostLimit {
            per_second: self.subscribe_rate_per_sec,
            burst: self.subscribe_burst,
        }
    }

    /// How long a request head may take, or a connection idle between requests.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs.max(1))
    }

    /// How long a request body may take.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs.max(1))
    }

    /// Where the site is reached: `public_url`, or `http://` and the listening address.
    pub fn site(&self) -> Result<super::site::Site, String> {
        super::site::Site::with_origins(&self.public_url, self.address, &self.allowed_origins)
    }

    /// How long a stopping node waits for what is in progress.
    pub fn shutdown_drain(&self) -> Duration {
        Duration::from_secs(self.shutdown_drain_secs)
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
    fn a_postgres_url_chooses_postgres() {
        figment::Jail::expect_with(|jail| {
            let config: Config = Config::figment("/nonexistent/flack.toml").extract()?;
            assert_eq!(config.store_kind(), StoreKind::Sqlite);
            jail.set_env("FLACK_DATABASE_URL", "postgresql://flack@db/flack");
            let config: Config = Config::figment("/nonexistent/flack.toml").extract()?;
            assert_eq!(config.store_kind(), StoreKind::Postgres);
            assert_eq!(config.postgres_pool_size, 16);
            assert!(
                config.postgres_full_sync,
                "commits wait for the disk unless told"
            );
            jail.set_env("FLACK_POSTGRES_FULL_SYNC", "false");
            let config: Config = Config::figment("/nonexistent/flack.toml").extract()?;
            assert!(!config.postgres_full_sync);
            // A store chosen otherwise stays chosen.
            jail.set_env("FLACK_STORE", "memory");
            let config: Config = Config::figment("/nonexistent/flack.toml").extract()?;
            assert_eq!(config.store_kind(), StoreKind::Memory);
            jail.set_env("FLACK_STORE", "postgres");
            jail.set_env("FLACK_DATABASE_URL", "");
            let config: Config = Config::figment("/nonexistent/flack.toml").extract()?;
            assert_eq!(config.store_kind(), StoreKind::Postgres);
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
    fn the_test_services_variables_are_not_settings() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "FLACK_TEST_POSTGRES_URL",
                "postgres://flack@127.0.0.1:1/postgres",
            );
            jail.set_env("FLACK_TEST_REDIS_URL", "redis://127.0.0.1:1/");
            let config: Config = Config::figment("/nonexistent/flack.toml").extract()?;
            assert_eq!(config, Config::default());
            Ok(())
        });
    }

    #[test]
    fn missing_file_means_defaults() {
        // In a jail too: jails take turns, so another test's FLACK_* variables (set inside
        // its own jail) cannot leak into this one.
        figment::Jail::expect_with(|_| {
            let config: Config = Config::figment("/nonexistent/flack.toml").extract()?;
            assert_eq!(config, Config::default());
            Ok(())
        });
    }
}
