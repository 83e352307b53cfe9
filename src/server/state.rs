//! The state every handler and server function reaches (as axum state and Leptos context).

use super::chat::Chat;
use super::config::{Config, StoreKind};
use super::hub::MemoryHub;
use super::store::{MemoryStore, SqliteStore, Store};
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
    /// The application service.
    pub chat: Arc<Chat>,
}

impl AppState {
    /// Opens the configured store, starts the hub and the write pipeline, and creates the
    /// default channels.
    pub async fn new(config: Config, leptos_options: LeptosOptions) -> Result<Self, AppError> {
        let store: Arc<dyn Store> = match config.store {
            StoreKind::Memory => Arc::new(MemoryStore::new(config.history_window)),
            StoreKind::Sqlite => Arc::new(
                SqliteStore::open(
                    &config.database,
                    config.history_window,
                    config.sqlite_full_sync,
                )
                .await?,
            ),
        };
        let hub = Arc::new(MemoryHub::new(config.broadcast_capacity));
        let chat = Arc::new(Chat::new(
            store,
            hub,
            config.history_window,
            config.post_limit(),
        ));
        chat.ensure_channels(&config.default_channels).await?;
        Ok(AppState {
            leptos_options,
            config: Arc::new(config),
            chat,
        })
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
