//! The browser around the page: whether the tab is hidden, browser notifications (asked for
//! only after a click on "Enable notifications", shown only while the tab is hidden), and
//! the clock. No-ops on the server, so components need no `cfg`.

#[cfg(feature = "hydrate")]
mod browser {
    use leptos::prelude::*;
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::JsCast;
    use web_sys::{Notification, NotificationOptions, NotificationPermission, VisibilityState};

    /// Whether the page is hidden (another tab, minimised).
    pub fn hidden() -> bool {
        document().visibility_state() == VisibilityState::Hidden
    }

    /// Calls `f(hidden)` whenever the page is hidden or shown again.
    pub fn on_visibility(f: impl Fn(bool) + 'static) {
        let listener = Closure::<dyn Fn()>::new(move || f(hidden()));
        let _ = document().add_event_listener_with_callback(
            "visibilitychange",
            listener.as_ref().unchecked_ref(),
        );
        listener.forget(); // for the life of the page
    }

    /// Milliseconds since the epoch.
    pub fn now_ms() -> f64 {
        js_sys::Date::now()
    }

    /// Whether notifications may be shown.
    pub fn allowed() -> bool {
        Notification::permission() == NotificationPermission::Granted
    }

    /// Whether the browser could still be asked.
    pub fn askable() -> bool {
        Notification::permission() == NotificationPermission::Default
    }

    /// Asks for permission (call from a click); `done(granted)` follows.
    pub fn ask(done: impl Fn(bool) + 'static) {
        let Ok(promise) = Notification::request_permission() else {
            return;
        };
        leptos::task::spawn_local(async move {
            let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
            done(allowed());
        });
    }

    /// Shows a notification while the tab is hidden; a click on it opens `path`.
    pub fn show(title: &str, path: &str) {
        if !hidden() || !allowed() {
            return;
        }
        let options = NotificationOptions::new();
        options.set_tag(path);
        let Ok(note) = Notification::new_with_options(title, &options) else {
            return;
        };
        let path = path.to_string();
        let on_click = Closure::<dyn Fn()>::new(move || {
            let _ = window().focus();
            let _ = window().location().set_href(&path);
        });
        note.set_onclick(Some(on_click.as_ref().unchecked_ref()));
        on_click.forget();
    }
}

#[cfg(not(feature = "hydrate"))]
mod browser {
    /// Never hidden outside the browser.
    pub fn hidden() -> bool {
        false
    }
    /// Does nothing outside the browser.
    pub fn on_visibility(_f: impl Fn(bool) + 'static) {}
    /// Milliseconds since the epoch.
    pub fn now_ms() -> f64 {
        0.0
    }
    /// Never outside the browser.
    pub fn allowed() -> bool {
        false
    }
    /// Never outside the browser.
    pub fn askable() -> bool {
        false
    }
    /// Does nothing outside the browser.
    pub fn ask(_done: impl Fn(bool) + 'static) {}
    /// Does nothing outside the browser.
    pub fn show(_title: &str, _path: &str) {}
}

pub use browser::*;
