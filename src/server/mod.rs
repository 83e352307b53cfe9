//! Everything that runs only on the server: settings, identity, the store, the fan-out hub,
//! the application service and the WebSocket endpoint.

pub mod access;
pub mod budgets;
pub mod chat;
pub mod client_addr;
pub mod config;
pub mod front;
pub mod hub;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod serve;
pub mod site;
pub mod sockets;
pub mod state;
pub mod store;
#[cfg(any(test, feature = "load"))]
pub mod testing;
pub mod window_frames;
pub mod ws;

use axum::routing::{get, post};
use axum::Router;
use leptos_axum::{generate_route_list, LeptosRoutes};
use state::AppState;

/// The whole HTTP surface: pages and server functions (Leptos), `/ws`, `/auth/session`,
/// `/auth/sign_out` and static files. Every request passes the front gate (host, origin,
/// identity: see [`identity::identify`]), a body size and time limit, and gets the security
/// headers ([`front`]).
pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(crate::app::App);
    let options = state.leptos_options.clone();
    let max_body = state.config.max_body_bytes;
    let operations = metrics::routes(state.clone());
    Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/auth/session", post(identity::create_session))
        .route("/auth/sign_out", post(front::sign_out))
        .leptos_routes(&state, routes, move || crate::app::shell(options.clone()))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(
            crate::app::shell,
        ))
        .layer(axum::middleware::from_fn(front::server_fn_status))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            identity::identify,
        ))
        .layer(axum::middleware::from_fn_with_state(
            max_body,
            front::limit_body,
        ))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            state.config.body_timeout(),
        ))
        .layer(axum::middleware::from_fn(front::security_headers))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
        // Outside the layers above: probes carry no identity and name the node by address.
        .merge(operations)
}
