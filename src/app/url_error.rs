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
        let from = query.get("__path")?;
        (from.trim_end_matches('/') == path.trim_end_matches('/')).then_some(())?;
        let error: AppError = ServerFnUrlError::<AppError>::decode_err(&query.get("__err")?);
        Some(error.to_string())
    };
    move || error().map(|e| view! { <p role="alert" class="error">{e}</p> })
}
