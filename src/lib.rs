//! Flack: real-time team chat as one Leptos crate. Built with `ssr` it is the axum server;
//! built with `hydrate` it is the WebAssembly client that takes over the server-rendered page.

// Leptos views are deeply nested types; the optimised WebAssembly build needs the room.
#![recursion_limit = "256"]

pub mod api;
pub mod app;
pub mod error;
pub mod json_text;
#[cfg(feature = "load")]
pub mod load;
pub mod paths;
pub mod protocol;
mod protocol_frames;
#[cfg(feature = "ssr")]
pub mod server;
pub mod timestamp;

/// The WebAssembly entry point: hydrates the server-rendered page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
