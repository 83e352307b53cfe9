//! The user interface: the HTML shell, the routes, and the components of each page. Rendered
//! on the server first, then hydrated in the browser.

pub mod browse;
mod channel;
pub mod chat_state;
mod client;
mod home;
mod message;
mod message_groups;
mod message_list;
pub mod notify;
pub mod people;
pub mod prefs;
pub mod server_page;
mod sidebar;
pub mod socket;
pub mod time;
mod url_error;
mod workspace;

pub use client::ChatClient;

use leptos::prelude::*;
use leptos_router::components::{ParentRoute, Route, Router, Routes};
use leptos_router::{path, SsrMode};

/// The page's Content-Security-Policy, with this response's nonce (server only).
#[cfg(feature = "ssr")]
fn set_page_policy() {
    if let (Some(nonce), Some(response)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) {
        if let Ok(value) = axum::http::HeaderValue::from_str(&crate::server::front::page_policy(
            &nonce.to_string(),
        )) {
            response.insert_header(axum::http::header::CONTENT_SECURITY_POLICY, value);
        }
    }
}

/// The HTML document around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    set_page_policy();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                // Plain tags in the shell (rendered by the server only), not leptos_meta's
                // components: the bundle need not carry a head manager for three fixed tags.
                <link rel="stylesheet" id="leptos" href="/pkg/flack.css"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <title>"Flack"</title>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The app: shared client state, the hydration marker, and the routes.
#[component]
pub fn App() -> impl IntoView {
    let client = ChatClient::new();
    provide_context(client);
    // Effects run only in the browser, after hydration.
    Effect::new(move |_| {
        client.start();
        if let Some(root) = document().document_element() {
            let _ = root.set_attribute("data-hydrated", "true");
        }
    });

    view! {
        <Router>
            <Routes fallback=|| view! { <p class="not-found">"Page not found."</p> }>
                // Async: the server sends each page complete, so it works without JavaScript.
                <ParentRoute path=path!("") view=workspace::Workspace ssr=SsrMode::Async>
                    <Route path=path!("") view=home::Home ssr=SsrMode::Async/>
                    <Route path=path!("c/:name") view=channel::ChannelPage ssr=SsrMode::Async/>
                    <Route path=path!("c/:name/t/:message") view=channel::ChannelPage ssr=SsrMode::Async/>
                    <Route path=path!("d/:id") view=channel::DirectPage ssr=SsrMode::Async/>
                    <Route path=path!("d/:id/t/:message") view=channel::DirectPage ssr=SsrMode::Async/>
                    <Route path=path!("channels") view=server_page::ServerPage ssr=SsrMode::Async/>
                    <Route path=path!("people") view=server_page::ServerPage ssr=SsrMode::Async/>
                </ParentRoute>
            </Routes>
        </Router>
    }
}
