//! The root page: returns to the channel this browser had open last.

use super::prefs;
use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use leptos_router::NavigateOptions;

/// `/`: goes back to the remembered channel, or invites the user to pick one.
#[component]
pub fn Home() -> impl IntoView {
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(path) = prefs::last_conversation() {
            navigate(
                &path,
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
            <p>"Choose a conversation on the left, or create a new channel."</p>
        </section>
    }
}
