//! `/channels`: every channel, a page at a time, by name ("Browse channels"). The sidebar
//! lists only the channels you use, so it stays short however many exist.

use crate::api::browse_channels;
use crate::paths::channel_path;
use crate::protocol::CHANNEL_PAGE;
use leptos::either::Either;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

/// One page of channels; "More channels" leads to the next (a plain link).
#[component]
pub fn BrowseChannels() -> impl IntoView {
    let query = use_query_map();
    let after = move || query.read().get("after");
    let page = Resource::new(after, browse_channels);
    view! {
        <section class="browse">
            <h1>"Browse channels"</h1>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match page.await {
                        Ok(channels) => {
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
                            Either::Left(view! {
                                <ul class="channel-directory">{items}</ul>
                                {next.map(|last| view! {
                                    <p>
                                        <a href=format!("/channels?after={last}")>"More channels"</a>
                                    </p>
                                })}
                            })
                        }
                        Err(e) => Either::Right(view! { <p role="alert" class="error">{e.to_string()}</p> }),
                    }
                })}
            </Transition>
        </section>
    }
}
