//! The front door: the accept loop. Every connection is counted against a global cap and a
//! per-address cap before any byte is read, HTTP/1 runs with a timer (a connection that takes
//! longer than `header_timeout_secs` to send a request head, or sits idle that long between
//! requests, is closed), and the accept loop keeps going when the process runs out of file
//! descriptors instead of ending. Told to stop, it drains: no new connections, every
//! WebSocket closed with 1012 ("service restart"), requests in progress finished, all within
//! `shutdown_drain_secs`.

use super::budgets::budget_key;
use super::client_addr::PeerAddr;
use super::state::AppState;
use crate::protocol::CLOSE_SERVICE_RESTART;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::Service;

/// Open connections, in total and per client address, against their caps.
#[derive(Debug)]
pub struct Connections {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; frees its place when the last holder drops it. An upgraded
/// WebSocket holds it too (see [`ConnectionSlot`]), so sockets count for as long as they live.
#[derive(Debug)]
pub struct Admitted {
    connections: Arc<Connections>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.total.fetch_sub(1, Ordering::Relaxed);
        let mut per_ip = self.connections.per_ip.lock().expect("connections lock");
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Put in every request's extensions: the connection's place, for handlers (the WebSocket
/// upgrade) that outlive the HTTP exchange.
#[derive(Debug, Clone)]
pub struct ConnectionSlot(pub Arc<Admitted>);

impl Connections {
    /// Caps of `max_total` connections and `max_per_ip` from one address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Connections {
            max_total: max_total.max(1),
            max_per_ip: max_per_ip.max(1),
            total: AtomicUsize::new(0),
            per_ip: Mutex::default(),
        })
    }

    /// A place for a connection from `ip`, or `None` when a cap is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        self.admit_within(ip, self.max_per_ip)
    }

    /// A place for a connection from one of our own proxies, which carries many clients:
    /// only the total cap applies (their clients are capped by their own address, at the
    /// WebSocket).
    pub fn admit_proxy(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        self.admit_within(ip, usize::MAX)
    }

    fn admit_within(self: &Arc<Self>, ip: IpAddr, max_per_ip: usize) -> Option<Admitted> {
        let mut per_ip = self.per_ip.lock().expect("connections lock");
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return None;
        }
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= max_per_ip {
            return None;
        }
        *count += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(Admitted {
            connections: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Connections open now from `ip`.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.per_ip
            .lock()
            .expect("connections lock")
            .get(&ip)
            .copied()
            .unwrap_or(0)
    }
}

/// How long the accept loop pauses after a failed accept (out of descriptors, most often)
/// before it tries again; connections already open keep being served meanwhile.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The reason sent with [`CLOSE_SERVICE_RESTART`] to every WebSocket of a stopping node.
pub const SHUTDOWN_REASON: &str = "server restarting";
/// How often the drain looks whether every WebSocket has gone.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Serves `app` on `listener` until `shutdown` resolves, then drains: stops accepting (the
/// listener is closed, so a proxy in front tries another node), asks every WebSocket to close
/// with 1012, lets open HTTP exchanges finish (idle kept-alive connections are closed at
/// once) and sockets complete their closing handshake, for up to `shutdown_drain_secs`.
/// Connections over the caps in `state` are closed at once, unread.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let header_timeout = state.config.header_timeout();
    let connections = state.connections.clone();
    let mut shutdown = std::pin::pin!(shutdown);
    let (stopping, stop_signal) = watch::channel(false);
    let mut open = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; pausing");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
            // Reap finished connection tasks so the set stays as large as what is open.
            Some(_) = open.join_next(), if !open.is_empty() => continue,
        };
        let admitted = if state.config.trusted_proxies.contains(&peer.ip()) {
            connections.admit_proxy(peer.ip())
        } else {
            connections.admit(budget_key(peer.ip()))
        };
        let Some(admitted) = admitted else {
            tracing::debug!(%peer, "connection cap reached; closing");
            drop(tcp);
            continue;
        };
        // Chat frames are small and latency-bound: send each at once instead of waiting to
        // coalesce (Nagle's algorithm costs tens of milliseconds at low rates).
        let _ = tcp.set_nodelay(true);
        open.spawn(serve_connection(
            tcp,
            peer,
            Arc::new(admitted),
            app.clone(),
            header_timeout,
            stop_signal.clone(),
        ));
    }
    // Stop accepting: connections from now on are refused, not left waiting in the backlog.
    drop(listener);
    let deadline = Instant::now() + state.config.shutdown_drain();
    let sockets = state
        .sockets
        .close_all(CLOSE_SERVICE_RESTART, SHUTDOWN_REASON);
    let _ = stopping.send(true);
    tracing::info!(
        sockets,
        connections = open.len(),
        drain_secs = state.config.shutdown_drain_secs,
        "draining"
    );
    let drained = tokio::time::timeout_at(deadline, async {
        while open.join_next().await.is_some() {}
        // Upgraded sockets run outside the connection tasks: wait for their close too.
        while state.sockets.open() > 0 {
            tokio::time::sleep(DRAIN_POLL).await;
        }
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("drained"),
        Err(_) => tracing::warn!(
            connections = open.len(),
            sockets = state.sockets.open(),
            "drain time over; dropping what is left"
        ),
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: Arc<Admitted>,
    app: Router,
    header_timeout: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(PeerAddr(peer));
        req.extensions_mut().insert(ConnectionSlot(slot.clone()));
        app.clone().call(req)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // Also bounds how long a kept-alive connection may sit idle between requests.
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stopping.changed() => {
            // Finish the request in progress (if any), answer it with `Connection: close`,
            // then close; an idle connection closes now.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, %peer, "connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_address_and_in_total() {
        let connections = Connections::new(3, 2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let first = connections.admit(a).unwrap();
        let _second = connections.admit(a).unwrap();
        assert!(connections.admit(a).is_none(), "per-address cap");
        let _third = connections.admit(b).unwrap();
        assert!(connections.admit(b).is_none(), "total cap");
        drop(first);
        assert_eq!(connections.open_from(a), 1);
        assert!(connections.admit(b).is_some(), "a freed place is reused");
    }

    #[test]
    fn a_trusted_proxy_is_held_only_to_the_total() {
        let connections = Connections::new(3, 1);
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..3)
            .filter_map(|_| connections.admit_proxy(proxy))
            .collect();
        assert_eq!(held.len(), 3);
        assert!(
            connections.admit_proxy(proxy).is_none(),
            "the total still holds"
        );
    }
}
