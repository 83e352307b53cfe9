//! The frame around every page: the name prompt for newcomers, then the header, the channel
//! sidebar and the open page.

use super::sidebar::Sidebar;
use super::{prefs, ChatClient};
use crate::api::{get_me, SetDisplayName};
use crate::protocol::UserInfo;
use leptos::prelude::*;
use leptos_router::components::Outlet;

/// The signed-in user, for the pages inside the workspace.
#[derive(Clone)]
pub struct Me(pub UserInfo);

/// Asks a newcomer for a display name; everyone else gets the chat layout.
#[component]
pub fn Workspace() -> impl IntoView {
    let set_name = ServerAction::<SetDisplayName>::new();
    let me = Resource::new(move || set_name.version().get(), |_| get_me());

    // Keep the browser's copy of the name in step with the server's.
    Effect::new(move |_| {
        if let Some(Ok(UserInfo {
            name: Some(name), ..
        })) = me.get()
        {
            prefs::set_display_name(&name);
        }
    });

    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match me.await {
                    Ok(user) if user.name.is_some() => {
                        provide_context(Me(user.clone()));
                        view! {
                            <div class="app">
                                <Header user set_name/>
                                <Sidebar/>
                                <main class="pane">
                                    <Outlet/>
                                </main>
                            </div>
                        }
                            .into_any()
                    }
                    Ok(_) => view! { <Welcome set_name/> }.into_any(),
                    Err(error) => {
                        view! { <p role="alert" class="error">{error.to_string()}</p> }.into_any()
                    }
                }
            })}
        </Transition>
    }
}

/// The first-visit prompt. A name this browser remembers (the server may have forgotten it)
/// is sent again without asking.
#[component]
fn Welcome(set_name: ServerAction<SetDisplayName>) -> impl IntoView {
    Effect::new(move |_| {
        if let Some(name) = prefs::display_name() {
            if set_name.version().get_untracked() == 0 {
                set_name.dispatch(SetDisplayName { name });
            }
        }
    });
    view! {
        <main class="welcome">
            <h1>"Welcome to Flack"</h1>
            <p>"Choose the name others will see next to your messages."</p>
            <NameForm set_name submit="Continue" current=String::new()/>
        </main>
    }
}

/// The display-name form, used by the prompt and by "Change name".
#[component]
fn NameForm(
    set_name: ServerAction<SetDisplayName>,
    submit: &'static str,
    current: String,
) -> impl IntoView {
    let error = move || {
        set_name
            .value()
            .get()
            .and_then(Result::err)
            .map(|e| view! { <p role="alert" class="error">{e.to_string()}</p> })
    };
    view! {
        <ActionForm action=set_name>
            <div class="field">
                <label for="display-name">"Display name"</label>
                <input
                    id="display-name"
                    name="name"
                    value=current
                    autocomplete="nickname"
                    autofocus
                />
                <button type="submit">{submit}</button>
            </div>
            {error}
        </ActionForm>
    }
}

/// The top bar: brand, connection status, and who you are.
#[component]
fn Header(user: UserInfo, set_name: ServerAction<SetDisplayName>) -> impl IntoView {
    let client = expect_context::<ChatClient>();
    let editing = RwSignal::new(false);
    let name = user.name.clone().unwrap_or_default();
    let tag = user.id.tag();
    let status = move || client.status.get().label();
    view! {
        <header class="topbar">
            <span class="brand">"Flack"</span>
            <span class="status" data-state=status title="Live connection">
                {status}
            </span>
            <span class="me">
                <span data-testid="me-name">{name.clone()}</span>
                <span class="tag" title="Your user tag">{tag}</span>
            </span>
            <button type="button" class="link" on:click=move |_| editing.update(|e| *e = !*e)>
                "Change name"
            </button>
            <Show when=move || editing.get()>
                <div class="rename">
                    <NameForm set_name submit="Save" current=name.clone()/>
                </div>
            </Show>
        </header>
    }
}
