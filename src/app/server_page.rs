//! Pages with nothing to do in the browser — only links and plain forms (Browse channels,
//! the people picker) — are rendered by the server alone, also when the browser navigates to
//! them: the page asks `page_html` for the path and query it shows and puts the answer in
//! place. Their views are compiled into the server only, so the bundle carries one small
//! component for all of them instead of a view, a resource and its hydration for each.

use crate::error::AppError;
use crate::json_text::JsonAnswer;
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

/// The HTML of a page the server renders alone (`/channels`, `/people`), for the browser's
/// navigation to it: `path` and `query` are the page's URL.
#[server(endpoint = "page_html", output = JsonAnswer)]
pub async fn page_html(path: String, query: String) -> Result<String, AppError> {
    use super::{browse, people};
    use crate::api::ssr::{caller, with_status};
    use crate::paths::query_param;
    with_status(
        async {
            let (state, user) = caller().await?;
            match path.trim_end_matches('/') {
                "/channels" => {
                    let after = query_param(&query, "after");
                    let channels = state.chat.browse(after.as_deref()).await?;
                    Ok(to_html(move || browse::page(channels)))
                }
                "/people" => {
                    let asked = people::Asked::from_query(&query);
                    let found = if asked.q.trim().is_empty() {
                        Ok(Vec::new())
                    } else {
                        state.chat.find_people(&user, &asked.q).await
                    };
                    Ok(to_html(move || people::page(asked, found, user.id)))
                }
                _ => Err(AppError::BadRequest),
            }
        }
        .await,
    )
}

/// Renders a view to HTML on the server, outside the page being rendered (its own owner,
/// so nothing of it joins the page's hydration data).
#[cfg(feature = "ssr")]
fn to_html<V: IntoView + 'static>(view: impl FnOnce() -> V) -> String {
    use leptos::tachys::view::RenderHtml;
    // A new root makes itself the current owner: put back the request's afterwards.
    let outer = Owner::current();
    let owner = Owner::new_root(None);
    let html = owner.with(|| view().into_view().to_html());
    match outer {
        Some(outer) => outer.set(),
        None => owner.unset(),
    }
    html
}
