//! The frame around every page: the name prompt for newcomers, then the header, the channel
//! sidebar and the open page.

use super::sidebar::Sidebar;
use super::{prefs, ChatClient};
use crate::api::{set_display_name, SetDisplayName};
use crate::error::AppError;
use crate::protocol::UserInfo;
use leptos::either::EitherOf3;
use leptos::prelude::*;
use leptos::server::SharedValue;
use leptos::server_fn::ServerFn;
use leptos::task::spawn_local;
use leptos_router::components::Outlet;

/// The signed-in user, for the pages inside the workspace (their name can change while the
/// page is open).
#[derive(Clone, Copy)]
pub struct Me(RwSignal<Option<UserInfo>>);

impl Me {
    /// The signed-in user, tracked.
    pub fn get(&self) -> Option<UserInfo> {
        self.0.get()
    }

    /// The signed-in user now, untracked.
    pub fn get_untracked(&self) -> Option<UserInfo> {
        self.0.get_untracked()
    }
}

/// Sends a display name to the server and keeps its answer.
///
/// A plain form posting to the server function (so it works without JavaScript) whose submit
/// the browser turns into a call: leptos' `ActionForm` would do the same, at the price of a
/// form-data decoder in the bundle.
#[derive(Clone, Copy)]
struct NameSetter {
    answer: RwSignal<Option<Result<UserInfo, AppError>>>,
    sent: RwSignal<bool>,
}

impl NameSetter {
    fn new() -> Self {
        Self {
            answer: RwSignal::new(None),
            sent: RwSignal::new(false),
        }
    }

    fn send(self, name: String) {
        self.sent.set(true);
        spawn_local(async move {
            let answer = set_display_name(name).await;
            self.answer.set(Some(answer));
        });
    }
}

/// The caller as the identity middleware found them at the start of this request.
#[cfg(feature = "ssr")]
fn caller_of_this_request() -> Option<UserInfo> {
    use crate::server::identity::{of_this_request, CurrentUser};
    of_this_request::<CurrentUser>().map(|CurrentUser(user)| user)
}

/// In the browser the workspace is only ever built while hydrating, from the server's value.
#[cfg(not(feature = "ssr"))]
fn caller_of_this_request() -> Option<UserInfo> {
    None
}

/// Asks a newcomer for a display name; everyone else gets the chat layout.
///
/// Who the user is comes with the page (a shared value, not a resource), so the layout is
/// built once: inside a `Suspense`, server rendering would build it up to three times, and
/// every resource below it (channel list, channel history) would be fetched and serialized
/// into the page as often.
#[component]
pub fn Workspace() -> impl IntoView {
    let set_name = NameSetter::new();
    let me = Me(RwSignal::new(
        SharedValue::new(caller_of_this_request).into_inner(),
    ));
    provide_context(me);

    // A name just set (or changed) takes effect at once.
    Effect::new(move |_| {
        if let Some(Ok(user)) = set_name.answer.get() {
            me.0.set(Some(user));
        }
    });
    // Keep the browser's copy of the name in step with the server's.
    Effect::new(move |_| {
        if let Some(UserInfo {
            name: Some(name), ..
        }) = me.get()
        {
            prefs::set_display_name(&name);
        }
    });

    // Whether the user has a name (None: no user at all); renaming does not rebuild the page.
    let named = Memo::new(move |_| me.0.with(|u| u.as_ref().map(|u| u.name.is_some())));
    move || match named.get() {
        Some(true) => EitherOf3::A(view! {
            <div class="app">
                <Header me set_name/>
                <Sidebar/>
                <main class="pane">
                    <Outlet/>
                </main>
            </div>
        }),
        Some(false) => EitherOf3::B(view! { <Welcome set_name/> }),
        None => EitherOf3::C(view! {
            <p role="alert" class="error">"Flack could not tell who you are. Reload the page."</p>
        }),
    }
}

/// The first-visit prompt. A name this browser remembers (the server may have forgotten it)
/// is sent again without asking.
#[component]
fn Welcome(set_name: NameSetter) -> impl IntoView {
    Effect::new(move |_| {
        if let Some(name) = prefs::display_name() {
            if !set_name.sent.get_untracked() {
                set_name.send(name);
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
fn NameForm(set_name: NameSetter, submit: &'static str, current: String) -> impl IntoView {
    let error = move || {
        set_name
            .answer
            .get()
            .and_then(Result::err)
            .map(|e| view! { <p role="alert" class="error">{e.to_string()}</p> })
    };
    let input = NodeRef::<leptos::html::Input>::new();
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        if let Some(input) = input.get() {
            ev.prevent_default();
            set_name.send(input.value());
        }
    };
    view! {
        <form method="post" action=SetDisplayName::url() on:submit=on_submit>
            <div class="field">
                <label for="display-name">"Display name"</label>
                <input
                    id="display-name"
                    name="name"
                    node_ref=input
                    value=current
                    autocomplete="nickname"
                    autofocus
                />
                <button type="submit">{submit}</button>
            </div>
            {error}
            <super::url_error::UrlError path=SetDisplayName::PATH/>
        </form>
    }
}

/// The top bar: brand, connection status, and who you are.
#[component]
fn Header(me: Me, set_name: NameSetter) -> impl IntoView {
    let client = expect_context::<ChatClient>();
    let editing = RwSignal::new(false);
    let name = move || me.get().and_then(|u| u.name).unwrap_or_default();
    let tag = move || me.get().map(|u| u.id.tag());
    let status = move || client.status.get().label();
    view! {
        <header class="topbar">
            <span class="brand">"Flack"</span>
            <span class="status" data-state=status title="Live connection">
                {status}
            </span>
            <span class="me">
                <span data-testid="me-name">{name}</span>
                <span class="tag" title="Your user tag">{tag}</span>
            </span>
            <button type="button" class="link" on:click=move |_| editing.update(|e| *e = !*e)>
                "Change name"
            </button>
            // A plain form: it works without JavaScript; with it, the browser forgets the name
            // it would otherwise offer the next identity.
            <form
                method="post"
                action="/auth/sign_out"
                class="sign-out"
                on:submit=move |_| prefs::forget_all()
            >
                <button
                    type="submit"
                    class="link"
                    title="Until accounts exist, a signed-out identity cannot be recovered: you will start again with a new one."
                >
                    "Sign out"
                </button>
            </form>
            <Show when=move || editing.get()>
                <div class="rename">
                    <NameForm set_name submit="Save" current=name()/>
                </div>
            </Show>
        </header>
    }
}
