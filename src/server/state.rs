//! The state every handler and server function reaches (as axum state and Leptos context).

use super::chat::Chat;
use super::config::Config;
use super::hub::MemoryHub;
use super::store::MemoryStore;
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
    /// State with the in-memory store and hub, and the default channels created.
    pub async fn in_memory(config: Config, leptos_options: LeptosOptions) -> Self {
        let store = Arc::new(MemoryStore::new(config.history_window));
        let hub = Arc::new(MemoryHub::new(config.broadcast_capacity));
        let chat = Arc::new(Chat::new(store, hub, config.history_window));
        chat.ensure_channels(&config.default_channels)
            .await
            .expect("default channel names are valid");
        AppState {
            leptos_options,
            config: Arc::new(config),
            chat,
        }
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
