//! The Flack server: reads the settings, builds the state and the router, serves until told
//! to stop.

use flack::server::config::{Config, StoreKind};
use flack::server::{router, serve::serve, state::AppState};
use leptos::config::get_configuration;
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let config = match Config::load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("flack: bad configuration: {e}");
            std::process::exit(2);
        }
    };
    let filter =
        EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(&config.log));
    if config.log_json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }

    let leptos_options = get_configuration(None)
        .expect("Leptos options come from the environment cargo-leptos sets")
        .leptos_options;
    let listener = match tokio::net::TcpListener::bind(config.address).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("flack: cannot listen on {}: {e}", config.address);
            std::process::exit(1);
        }
    };
    let mut config = config;
    // The port actually bound (the setting may say 0).
    config.address = listener.local_addr().unwrap_or(config.address);
    let address = config.address;
    // What the store is, without a database URL's password.
    let store = match config.store_kind() {
        StoreKind::Postgres => {
            let url = config.database_url.as_deref().unwrap_or_default();
            let host = url.rsplit_once('@').map_or(url, |(_, host)| host);
            format!("PostgreSQL ({host})")
        }
        kind => format!("{kind:?} ({})", config.database.display()),
    };
    let hub = if config.redis_url.is_empty() {
        "in-process".to_string()
    } else {
        format!(
            "Redis ({})",
            config
                .redis_url
                .rsplit_once('@')
                .map_or(config.redis_url.as_str(), |(_, host)| host)
        )
    };
    let state = match AppState::new(config, leptos_options).await {
        Ok(state) => state,
        Err(e) => {
            eprintln!("flack: cannot open the store {store}: {e}");
            std::process::exit(1);
        }
    };
    tracing::info!(%store, %hub, "store open");
    {
        let chat = state.chat.clone();
        let counters = state.sockets.counters.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            let mut last = [0; 6];
            loop {
                every.tick().await;
                chat.forget_idle_limits();
                let now = counters.snapshot();
                if now != last {
                    let [lagged, replays, pages, resets, slow, flood] = now;
                    tracing::info!(
                        lagged,
                        replays,
                        pages,
                        resets,
                        slow,
                        flood,
                        "sockets under load"
                    );
                    last = now;
                }
            }
        });
    }
    let app = router(state.clone());
    tracing::info!("Flack listening on http://{address}");
    serve(listener, state, app, shutdown_signal()).await;
    // Drained. Everything acknowledged was committed before its acknowledgement, so nothing
    // is left to flush: exit now rather than wait for the runtime's blocking threads.
    tracing::info!("stopped");
    std::process::exit(0);
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
