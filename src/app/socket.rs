//! The browser's WebSocket to `/ws`: one API, two bodies. In the browser it connects,
//! decodes [`ServerEvent`]s, and reconnects with exponential backoff (and at once when the
//! network comes back, or when the server closed it because that node is restarting: close
//! code 1012, the next connection reaches another node); on the server every call is a
//! no-op, so components never need `cfg`.

use crate::protocol::{ClientEvent, ServerEvent};

/// The socket's state, for the status indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionStatus {
    /// Opening (first time or after a drop).
    Connecting,
    /// Open: events flow.
    Online,
    /// Closed; a reconnect is scheduled.
    Offline,
}

impl ConnectionStatus {
    /// A short word for the UI and for `data-state`.
    pub fn label(self) -> &'static str {
        match self {
            ConnectionStatus::Connecting => "connecting",
            ConnectionStatus::Online => "online",
            ConnectionStatus::Offline => "offline",
        }
    }
}

/// What the socket tells its owner.
pub struct Handlers {
    /// Every decoded event from the server.
    pub on_event: Box<dyn Fn(ServerEvent)>,
    /// Every status change.
    pub on_status: Box<dyn Fn(ConnectionStatus)>,
    /// Each time the socket (re)opens: resubscribe here.
    pub on_open: Box<dyn Fn()>,
}

/// Delay before reconnect attempt `n` (0-based): 0.5 s doubling to at most 10 s, with jitter
/// so that many clients dropped together do not return together.
pub fn backoff_ms(attempt: u32, jitter: f64) -> u32 {
    let base = 500u32.saturating_mul(1 << attempt.min(5)).min(10_000);
    (base as f64 * (0.75 + 0.5 * jitter.clamp(0.0, 1.0))) as u32
}

/// Delay before reconnecting after a close with `code`: none when the node is restarting
/// ([`CLOSE_SERVICE_RESTART`](crate::protocol::CLOSE_SERVICE_RESTART): the server is fine,
/// another node takes the socket), else [`backoff_ms`].
pub fn reconnect_delay_ms(code: u16, attempt: u32, jitter: f64) -> u32 {
    if code == crate::protocol::CLOSE_SERVICE_RESTART {
        0
    } else {
        backoff_ms(attempt, jitter)
    }
}

#[cfg(feature = "hydrate")]
mod browser {
    use super::*;
    use leptos::prelude::*;
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use std::time::Duration;
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::JsCast;
    use web_sys::{CloseEvent, Event, MessageEvent, WebSocket};

    /// A handle to the browser socket; cheap to copy.
    #[derive(Clone, Copy)]
    pub struct Socket {
        inner: StoredValue<Option<Rc<Inner>>, leptos::prelude::LocalStorage>,
    }

    /// A DOM event callback kept alive as long as it is registered.
    type Listener = Closure<dyn FnMut(Event)>;

    struct Inner {
        handlers: Handlers,
        ws: RefCell<Option<WebSocket>>,
        attempts: Cell<u32>,
        /// Keeps the current socket's callbacks alive.
        callbacks: RefCell<Vec<Listener>>,
        /// Keeps the window's online/offline listeners alive.
        network: RefCell<Vec<Listener>>,
    }

    impl Default for Socket {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Socket {
        /// A socket that is not connected yet.
        pub fn new() -> Self {
            Socket {
                inner: StoredValue::new_local(None),
            }
        }

        /// Connects and keeps reconnecting for the life of the page.
        pub fn connect(&self, handlers: Handlers) {
            let inner = Rc::new(Inner {
                handlers,
                ws: RefCell::new(None),
                attempts: Cell::new(0),
                callbacks: RefCell::new(Vec::new()),
                network: RefCell::new(Vec::new()),
            });
            watch_network(&inner);
            open(&inner);
            self.inner.set_value(Some(inner));
        }

        /// Sends an event; `false` if the socket is not open (the caller falls back to HTTP).
        pub fn send(&self, event: &ClientEvent) -> bool {
            let Ok(text) = serde_json::to_string(event) else {
                return false;
            };
            self.inner.with_value(|inner| {
                inner.as_ref().is_some_and(|inner| {
                    inner.ws.borrow().as_ref().is_some_and(|ws| {
                        ws.ready_state() == WebSocket::OPEN && ws.send_with_str(&text).is_ok()
                    })
                })
            })
        }
    }

    fn url() -> Option<String> {
        let location = window().location();
        let scheme = if location.protocol().ok()? == "https:" {
            "wss"
        } else {
            "ws"
        };
        Some(format!("{scheme}://{}/ws", location.host().ok()?))
    }

    fn open(inner: &Rc<Inner>) {
        (inner.handlers.on_status)(ConnectionStatus::Connecting);
        let Some(ws) = url().and_then(|url| WebSocket::new(&url).ok()) else {
            schedule_reconnect(inner);
            return;
        };
        let on_open = {
            let inner = Rc::downgrade(inner);
            Listener::new(move |_| {
                if let Some(inner) = inner.upgrade() {
                    inner.attempts.set(0);
                    (inner.handlers.on_status)(ConnectionStatus::Online);
                    (inner.handlers.on_open)();
                }
            })
        };
        let on_message = {
            let inner = Rc::downgrade(inner);
            Listener::new(move |ev: Event| {
                let Some(inner) = inner.upgrade() else { return };
                let Some(text) = ev.unchecked_into::<MessageEvent>().data().as_string() else {
                    return;
                };
                match ServerEvent::from_frame(&text) {
                    Ok(event) => (inner.handlers.on_event)(event),
                    Err(e) => leptos::logging::warn!("flack: undecodable frame: {e}"),
                }
            })
        };
        let on_close = {
            let inner = Rc::downgrade(inner);
            let this = ws.clone();
            Listener::new(move |ev: Event| {
                let Some(inner) = inner.upgrade() else { return };
                // Only the current socket's close counts; an old one may close late.
                let current = inner.ws.borrow().as_ref().is_some_and(|ws| ws == &this);
                if current {
                    let code = ev.unchecked_into::<CloseEvent>().code();
                    if code == crate::protocol::CLOSE_SIGNED_OUT {
                        // Signed out (maybe in another tab): start again as someone new.
                        let _ = window().location().reload();
                        return;
                    }
                    leptos::logging::log!("flack: socket closed ({code}), reconnecting");
                    inner.ws.borrow_mut().take();
                    (inner.handlers.on_status)(ConnectionStatus::Offline);
                    schedule_reconnect_after(&inner, code);
                }
            })
        };
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        *inner.callbacks.borrow_mut() = vec![on_open, on_message, on_close];
        *inner.ws.borrow_mut() = Some(ws);
    }

    fn schedule_reconnect(inner: &Rc<Inner>) {
        // 1006: closed abnormally, the backoff applies.
        schedule_reconnect_after(inner, 1006);
    }

    /// Reconnects after the delay a close with `code` calls for. Even "at once" goes through
    /// a timer, so that the socket is not replaced from inside its own close handler.
    fn schedule_reconnect_after(inner: &Rc<Inner>, code: u16) {
        let attempt = inner.attempts.get();
        inner.attempts.set(attempt + 1);
        let delay = reconnect_delay_ms(code, attempt, js_sys::Math::random());
        let inner = Rc::downgrade(inner);
        set_timeout(
            move || {
                if let Some(inner) = inner.upgrade() {
                    if inner.ws.borrow().is_none() {
                        open(&inner);
                    }
                }
            },
            Duration::from_millis(delay.into()),
        );
    }

    /// Going offline drops the socket at once: the browser may not notice for minutes, and
    /// a close cannot complete without a network. Coming back online reconnects without
    /// waiting for the backoff.
    fn watch_network(inner: &Rc<Inner>) {
        let on_offline = {
            let inner = Rc::downgrade(inner);
            Listener::new(move |_| {
                let Some(inner) = inner.upgrade() else { return };
                let dropped = inner.ws.borrow_mut().take();
                if let Some(ws) = dropped {
                    let _ = ws.close();
                    (inner.handlers.on_status)(ConnectionStatus::Offline);
                    schedule_reconnect(&inner);
                }
            })
        };
        let on_online = {
            let inner = Rc::downgrade(inner);
            Listener::new(move |_| {
                if let Some(inner) = inner.upgrade() {
                    if inner.ws.borrow().is_none() {
                        inner.attempts.set(0);
                        open(&inner);
                    }
                }
            })
        };
        let window = window();
        let _ =
            window.add_event_listener_with_callback("offline", on_offline.as_ref().unchecked_ref());
        let _ =
            window.add_event_listener_with_callback("online", on_online.as_ref().unchecked_ref());
        *inner.network.borrow_mut() = vec![on_offline, on_online];
    }
}

#[cfg(not(feature = "hydrate"))]
mod browser {
    use super::*;

    /// The server-side stand-in: never connects, never sends.
    #[derive(Clone, Copy, Default)]
    pub struct Socket;

    impl Socket {
        /// A socket that never connects.
        pub fn new() -> Self {
            Socket
        }

        /// Does nothing outside the browser.
        pub fn connect(&self, _handlers: Handlers) {}

        /// Always `false` outside the browser.
        pub fn send(&self, _event: &ClientEvent) -> bool {
            false
        }
    }
}

pub use browser::Socket;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap_with_jitter() {
        assert_eq!(backoff_ms(0, 0.5), 500);
        assert_eq!(backoff_ms(1, 0.5), 1000);
        assert_eq!(backoff_ms(10, 0.5), 10_000);
        assert!(backoff_ms(3, 0.0) < backoff_ms(3, 1.0));
        assert!(backoff_ms(30, 1.0) <= 12_500);
    }

    #[test]
    fn a_restarting_server_is_reconnected_to_at_once() {
        let restart = crate::protocol::CLOSE_SERVICE_RESTART;
        assert_eq!(reconnect_delay_ms(restart, 0, 0.5), 0);
        assert_eq!(
            reconnect_delay_ms(restart, 7, 1.0),
            0,
            "however many attempts"
        );
        assert_eq!(reconnect_delay_ms(1006, 1, 0.5), backoff_ms(1, 0.5));
        assert_eq!(
            reconnect_delay_ms(crate::protocol::CLOSE_SLOW_CONSUMER, 3, 0.2),
            backoff_ms(3, 0.2)
        );
    }
}
