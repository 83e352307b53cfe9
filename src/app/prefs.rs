//! What the browser remembers between visits (local storage): the display name and the last
//! open channel. Only call these from Effects or event handlers, never while rendering: the
//! server has no local storage, and reading it during hydration would change the markup.

use gloo_storage::{LocalStorage as BrowserStorage, Storage};

const DISPLAY_NAME: &str = "flack.display_name";
const LAST_CHANNEL: &str = "flack.last_channel";

fn get(key: &str) -> Option<String> {
    if cfg!(not(target_arch = "wasm32")) {
        return None;
    }
    BrowserStorage::get::<String>(key)
        .ok()
        .filter(|v| !v.is_empty())
}

fn set(key: &str, value: &str) {
    if cfg!(target_arch = "wasm32") {
        // A full or disabled storage only costs the convenience of being remembered.
        let _ = BrowserStorage::set(key, value);
    }
}

/// The display name chosen in this browser.
pub fn display_name() -> Option<String> {
    get(DISPLAY_NAME)
}

/// Remembers the display name.
pub fn set_display_name(name: &str) {
    set(DISPLAY_NAME, name);
}

/// The page of the conversation that was open last (a bare channel name from an older
/// version means that channel).
pub fn last_conversation() -> Option<String> {
    get(LAST_CHANNEL).map(|v| {
        if v.starts_with('/') {
            v
        } else {
            crate::paths::channel_path(&v)
        }
    })
}

/// Remembers the open conversation's page.
pub fn set_last_conversation(path: &str) {
    set(LAST_CHANNEL, path);
}

/// Forgets the last conversation (it no longer exists, or is no longer ours).
pub fn forget_last_conversation() {
    if cfg!(target_arch = "wasm32") {
        BrowserStorage::delete(LAST_CHANNEL);
    }
}

/// Forgets everything this browser remembers (on signing out: the next person starts afresh).
pub fn forget_all() {
    if cfg!(target_arch = "wasm32") {
        BrowserStorage::delete(DISPLAY_NAME);
        BrowserStorage::delete(LAST_CHANNEL);
    }
}
