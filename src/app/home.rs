//! The root page: returns to the channel this browser had open last.

use super::{channel_path, prefs};
use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use leptos_router::NavigateOptions;

/// `/`: goes back to the remembered channel, or invites the user to pick one.
#[component]
pub fn Home() -> impl IntoView {
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(channel) = prefs::last_channel() {
            navigate(
                &channel_path(&channel),
                NavigateOptions {
                    replace: true,
                    ..Default::default()
                },
            );
        }
    });
    view! {
        <section class="empty">
            <h1>"Pick a channel"</h1>
            <p>"Choose a channel on the left, or create a new one."</p>
        </section>
    }
}
