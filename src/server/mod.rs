//! Everything that runs only on the server: settings, identity, the store, the fan-out hub,
//! the application service and the WebSocket endpoint.

pub mod chat;
pub mod config;
pub mod hub;
pub mod identity;
pub mod state;
pub mod store;
pub mod ws;

use axum::routing::{get, post};
use axum::Router;
use leptos_axum::{generate_route_list, LeptosRoutes};
use state::AppState;

/// The whole HTTP surface: pages and server functions (Leptos), `/ws`, `/auth/session` and
/// static files, with identity on everything but static files and `/auth/session`.
pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(crate::app::App);
    let options = state.leptos_options.clone();
    Router::new()
        .route("/ws", get(ws::upgrade))
        .leptos_routes(&state, routes, move || crate::app::shell(options.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            identity::identify,
        ))
        .route("/auth/session", post(identity::create_session))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(
            crate::app::shell,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
