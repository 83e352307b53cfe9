//! An error a plain form post brought back in the page's URL (`?__path=…&__err=…`, how
//! server functions answer browsers without JavaScript), shown next to its form.

use crate::error::AppError;
use leptos::prelude::*;
use leptos::server_fn::error::ServerFnUrlError;
use leptos_router::hooks::use_query_map;

/// Shows the error of the server function at `path`, if the URL carries one.
#[component]
pub fn UrlError(path: &'static str) -> impl IntoView {
    let query = use_query_map();
    let error = move || {
        let query = query.read();
        error_for(path, &query.get("__path")?, &query.get("__err")?)
    };
    move || error().map(|e| view! { <p role="alert" class="error">{e}</p> })
}

/// The sentence for the error `err` that the server function at `from` returned, if it is
/// the one at `path`.
fn error_for(path: &str, from: &str, err: &str) -> Option<String> {
    (from.trim_end_matches('/') == path.trim_end_matches('/')).then_some(())?;
    let error: AppError = ServerFnUrlError::<AppError>::decode_err(err);
    Some(error.to_string())
}

/// [`UrlError`] for a page the server renders alone, from its query string.
#[cfg(feature = "ssr")]
pub fn error_in_query(query: &str, path: &str) -> Option<String> {
    use crate::paths::query_param;
    error_for(
        path,
        &query_param(query, "__path")?,
        &query_param(query, "__err")?,
    )
}
