//! The state every handler and server function reaches (as axum state and Leptos context).

use super::budgets::{Allowance, Budgets, ByteRate};
use super::chat::{Chat, Limits};
use super::config::{Config, StoreKind};
use super::hub::{Hub, MemoryHub, RedisHub, RedisHubOptions};
use super::identity::Tokens;
use super::limits::{redis::Node, redis::NodeOptions, Backing, SocketCap};
use super::serve::Connections;
use super::site::Site;
use super::sockets::Sockets;
use super::store::{CacheLimits, PostgresStore, SqliteStore, Store};
use crate::error::AppError;
use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use std::sync::Arc;

/// Shared application state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Leptos' own settings (site root, output name).
    pub leptos_options: LeptosOptions,
    /// Flack's settings.
    pub config: Arc<Config>,
    /// Where requests may come from.
    pub site: Arc<Site>,
    /// Issues and checks identity tokens.
    pub tokens: Arc<Tokens>,
    /// The application service.
    pub chat: Arc<Chat>,
    /// Open TCP connections against their caps (by peer address).
    pub connections: Arc<Connections>,
    /// Open WebSockets against the per-client cap (by client address, behind proxies too;
    /// over the cluster with Redis) and this process' total.
    pub socket_slots: Arc<dyn SocketCap>,
    /// Open WebSockets by token, and the bytes they have queued.
    pub sockets: Arc<Sockets>,
}

impl AppState {
    /// Opens the configured store, starts the hub and the write pipeline, and creates the
    /// default channels.
    pub async fn new(config: Config, leptos_options: LeptosOptions) -> Result<Self, AppError> {
        let site = config.site().map_err(AppError::internal)?;
        // With several nodes a name changed or a token signed out on another node must
        // count here at once: users are read from the database every time.
        let caches = CacheLimits {
            users: if config.redis_url.is_empty() {
                config.user_cache_entries
            } else {
                0
            },
        };
        let store: Arc<dyn Store> = match config.store_kind() {
            StoreKind::Memory => Arc::new(SqliteStore::in_memory(caches).await?),
            StoreKind::Sqlite => Arc::new(
                SqliteStore::open(&config.database, config.sqlite_full_sync, caches).await?,
            ),
            StoreKind::Postgres => {
                let url = config
                    .database_url
                    .as_deref()
                    .filter(|url| !url.is_empty())
                    .ok_or_else(|| AppError::internal("store = \"postgres\" needs database_url"))?;
                let linger = std::time::Duration::from_millis(config.postgres_batch_linger_ms);
                Arc::new(
                    PostgresStore::connect(url, config.postgres_pool_size, caches)
                        .await?
                        .with_batch_linger(linger)
                        .with_full_sync(config.postgres_full_sync),
                )
            }
        };
        let tokens = Tokens::new(store.secret().await?);
        let hub: Arc<dyn Hub> =
            if config.redis_url.is_empty() {
                Arc::new(MemoryHub::new(config.broadcast_capacity))
            } else {
                let options = RedisHubOptions {
                    url: config.redis_url.clone(),
                    prefix: config.redis_prefix.clone(),
                    capacity: config.broadcast_capacity,
                };
                Arc::new(RedisHub::connect(options).await.map_err(|e| {
                    AppError::internal(format!("Redis at {}: {e}", config.redis_url))
                })?)
            };
        let backing = if config.redis_url.is_empty() {
            Backing::Local
        } else {
            // This node's id in the shared limits and presence.
            let node = NodeOptions {
                url: config.redis_url.clone(),
                prefix: config.redis_prefix.clone(),
                node: uuid::Uuid::new_v4().simple().to_string(),
                alive_ttl: std::time::Duration::from_secs(config.redis_node_ttl_secs.max(1)),
            };
            Backing::Redis(Node::start(node).await.map_err(AppError::internal)?)
        };
        let budgets = Budgets::on(
            &backing,
            Allowance {
                per_hour: config.new_identities_per_hour,
                burst: config.new_identities_burst,
            },
            Allowance {
                per_hour: config.new_channels_per_hour,
                burst: config.new_channels_burst,
            },
            ByteRate {
                per_second: config.join_bytes_per_sec_per_ip,
                burst: config.join_bytes_burst_per_ip,
            },
        );
        let limits = Limits {
            window: config.history_window,
            post: config.post_limit(),
            open: config.open_limit(),
            max_channels: config.max_channels,
            max_memberships: config.max_memberships,
            join_cache_bytes: config.join_cache_bytes,
        };
        let chat = Arc::new(Chat::with_backing(store, hub, limits, budgets, &backing));
        chat.ensure_channels(&config.default_channels).await?;
        Ok(AppState {
            leptos_options,
            site: Arc::new(site),
            tokens: Arc::new(tokens),
            chat,
            connections: Connections::new(config.max_connections, config.max_connections_per_ip),
            socket_slots: backing.socket_cap(config.max_connections, config.max_connections_per_ip),
            sockets: Arc::new(Sockets::default()),
            config: Arc::new(config),
        })
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
