//! Pages with nothing to do in the browser — only links and plain forms (Browse channels,
//! the people picker) — are rendered by the server alone, also when the browser navigates to
//! them: the page asks `page_html` for the path and query it shows and puts the answer in
//! place. Their views are compiled into the server only, so the bundle carries one small
//! component for all of them instead of a view, a resource and its hydration for each.

use crate::api::page_html;
use leptos::either::Either;
use leptos::prelude::*;
use leptos_router::hooks::use_location;

/// The server's rendering of the page at the current URL.
#[component]
pub fn ServerPage() -> impl IntoView {
    let location = use_location();
    let page = Resource::new(
        move || (location.pathname.get(), location.search.get()),
        |(path, query)| page_html(path, query),
    );
    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(html) => Either::Left(view! { <div class="server-page" inner_html=html></div> }),
                    Err(e) => Either::Right(view! { <p role="alert" class="error">{e.to_string()}</p> }),
                }
            })}
        </Transition>
    }
}

/// Renders a view to HTML on the server, outside the page being rendered (its own owner,
/// so nothing of it joins the page's hydration data).
#[cfg(feature = "ssr")]
pub fn to_html<V: IntoView + 'static>(view: impl FnOnce() -> V) -> String {
    use leptos::tachys::view::RenderHtml;
    let owner = Owner::new_root(None);
    owner.with(|| view().into_view().to_html())
}

/// One query parameter of a URL's query string (`?a=1&b=2`), decoded.
#[cfg(feature = "ssr")]
pub fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
