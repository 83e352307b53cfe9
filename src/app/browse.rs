//! `/channels`: every channel, a page at a time, by name ("Browse channels"). The sidebar
//! lists only the channels you use, so it stays short however many exist. Rendered by the
//! server only (see `server_page.rs`).

#[cfg(feature = "ssr")]
pub use render::page;

#[cfg(feature = "ssr")]
mod render {
    use crate::paths::channel_path;
    use crate::protocol::{ConversationInfo, CHANNEL_PAGE};
    use leptos::prelude::*;

    /// One page of channels; "More channels" leads to the next (a plain link).
    pub fn page(channels: Vec<ConversationInfo>) -> impl IntoView {
        {
            let next = (channels.len() >= CHANNEL_PAGE)
                .then(|| channels.last().and_then(|c| c.name.clone()))
                .flatten();
            let items = channels
                .into_iter()
                .filter_map(|c| c.name)
                .map(|name| {
                    let href = channel_path(&name);
                    view! {
                        <li>
                            <a href=href>"#" {name}</a>
                        </li>
                    }
                })
                .collect_view();
            view! {
                <section class="browse">
                    <h1>"Browse channels"</h1>
                    <ul class="channel-directory">{items}</ul>
                    {next.map(|last| view! {
                        <p>
                            <a href=format!("/channels?after={last}")>"More channels"</a>
                        </p>
                    })}
                </section>
            }
        }
    }
}
