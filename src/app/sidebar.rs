//! The channel list (a navigation landmark: the default channels and those you opened
//! lately, with a link to browse them all) and the form that creates a channel.

use super::{channel_path, ChatClient};
use crate::api::{list_channels, CreateChannel};
use crate::protocol::{channel_key, ChannelInfo};
use leptos::either::Either;
use leptos::prelude::*;
use leptos_router::components::A;

/// Your channels, plus "Browse channels" and "create a channel".
#[component]
pub fn Sidebar() -> impl IntoView {
    let client = expect_context::<ChatClient>();
    let create = ServerAction::<CreateChannel>::new();
    let channels = Resource::new(|| (), |_| list_channels());

    // A channel we just created is listed at once, even before the socket announces it.
    Effect::new(move |_| {
        if let Some(Ok(channel)) = create.value().get() {
            client.new_channels.update(|list| {
                if !list
                    .iter()
                    .any(|c| channel_key(&c.name) == channel_key(&channel.name))
                {
                    list.push(channel);
                }
            });
        }
    });

    let listed = move |loaded: Vec<ChannelInfo>| {
        let mut all = loaded;
        for channel in client.new_channels.get() {
            if !all
                .iter()
                .any(|c| channel_key(&c.name) == channel_key(&channel.name))
            {
                all.push(channel);
            }
        }
        all.sort_by_key(|c| channel_key(&c.name));
        all.into_iter()
            .map(|c| {
                let href = channel_path(&c.name);
                view! {
                    <li>
                        <A href=href exact=true>
                            "#"
                            {c.name}
                        </A>
                    </li>
                }
            })
            .collect_view()
    };

    // On a phone the list folds behind a "Conversations" button: a `<details>` (a native
    // disclosure button, expanded or collapsed, that works without JavaScript) whose state
    // CSS applies to the rest of the sidebar; wider screens hide the button and show the
    // list. Opening a channel closes it (`channel.rs`). All static markup, so the bundle
    // pays almost nothing for it.
    view! {
        <aside class="sidebar">
            <details class="conversations">
                <summary>"Conversations"</summary>
            </details>
            <nav aria-label="Channels">
                <h2>"Channels"</h2>
                <p class="browse-link"><a href="/channels">"Browse channels"</a></p>
                <ul class="channels">
                    <Transition fallback=|| ()>
                        {move || Suspend::new(async move {
                            match channels.await {
                                Ok(loaded) => Either::Left(move || listed(loaded.clone())),
                                Err(e) => Either::Right(view! { <li role="alert">{e.to_string()}</li> }),
                            }
                        })}
                    </Transition>
                </ul>
            </nav>
            <CreateChannelForm create/>
        </aside>
    }
}

/// Creates a channel; the server checks the name and opens the new channel.
#[component]
fn CreateChannelForm(create: ServerAction<CreateChannel>) -> impl IntoView {
    let input = NodeRef::<leptos::html::Input>::new();
    Effect::new(move |_| {
        if let (Some(Ok(_)), Some(input)) = (create.value().get(), input.get_untracked()) {
            input.set_value("");
        }
    });
    let error = move || {
        create
            .value()
            .get()
            .and_then(Result::err)
            .map(|e| view! { <p role="alert" class="error">{e.to_string()}</p> })
    };
    view! {
        <ActionForm action=create>
            <div class="field">
                <label for="new-channel">"Channel name"</label>
                <input node_ref=input id="new-channel" name="name" placeholder="e.g. design" autocomplete="off"/>
                <button type="submit">"Create channel"</button>
            </div>
            {error}
        </ActionForm>
    }
}
