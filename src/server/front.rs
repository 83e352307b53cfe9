//! What every response passes on its way out and every request on its way in, besides
//! identity: the body limit, error statuses for server functions, error codes (never text)
//! in URLs, the security headers, and signing out.

use super::identity::{cleared_cookie, secure_cookies, CurrentUser, Provisional, TokenHash};
use super::state::AppState;
use crate::error::AppError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;

/// The header server functions mark their error answers with.
const SERVER_FN_ERROR: &str = "serverfnerror";
/// Error answers of server functions are this small; anything longer is left alone.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// Refuses a request whose body is declared larger than `max` bytes (413, with the limit),
/// and cuts off one that turns out larger while it is read (its reader gets an error).
pub async fn limit_body(State(max): State<usize>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return AppError::BodyTooLarge { max }.into_response();
    }
    let (parts, body) = req.into_parts();
    let limited = Body::new(http_body_util::Limited::new(body, max));
    next.run(Request::from_parts(parts, limited)).await
}

/// Server functions answer every error with status 500, even when the caller sent bad
/// arguments; this gives each error its own status ([`AppError::status`]). It also rewrites
/// an error carried in a page's URL (`?__err=`, how errors reach pages without JavaScript) to
/// its code alone, so that a crafted link cannot put words on a page.
pub async fn server_fn_status(mut req: Request, next: Next) -> Response {
    if let Some(query) = req.uri().query().filter(|q| q.contains("__err=")) {
        let clean = error_codes_only(query);
        let path = req.uri().path().to_string();
        let uri = if clean.is_empty() {
            path
        } else {
            format!("{path}?{clean}")
        };
        if let Ok(uri) = uri.parse() {
            *req.uri_mut() = uri;
        }
    }
    let response = next.run(req).await;
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !response.headers().contains_key(SERVER_FN_ERROR)
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        return AppError::internal("unreadable error").into_response();
    };
    if let Ok(error) = serde_json::from_slice::<AppError>(&bytes) {
        parts.status = error.status();
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The query with every `__err` value decoded, stripped of free text and encoded again (or
/// dropped, with its `__path`, when it is not an error at all).
fn error_codes_only(query: &str) -> String {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let cleaned: Option<Vec<(String, String)>> = pairs
        .iter()
        .map(|(key, value)| {
            if key != "__err" {
                return Some((key.clone(), value.clone()));
            }
            let bytes = URL_SAFE.decode(value).ok()?;
            let error: AppError = serde_json::from_slice(&bytes).ok()?;
            let json = serde_json::to_vec(&error.without_text()).ok()?;
            Some((key.clone(), URL_SAFE.encode(json)))
        })
        .collect();
    let kept = cleaned.unwrap_or_else(|| {
        pairs
            .into_iter()
            .filter(|(k, _)| k != "__err" && k != "__path")
            .collect()
    });
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(kept)
        .finish()
}

/// The Content-Security-Policy of a page whose inline scripts carry `nonce`: scripts only from
/// this site or with the nonce, WebAssembly allowed, no framing, no plugins, forms and
/// connections to this site only.
pub fn page_policy(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'nonce-{nonce}'; img-src 'self' data:; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// Headers on every response: no sniffing, no framing, no referrer to other sites, and a
/// Content-Security-Policy (pages set their own, with the nonce; everything else gets one
/// that allows nothing).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        return response;
    }
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if !html {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
        return response;
    }
    // A page that did not set its policy itself (it does in the shell, but a page must never
    // go out without one that lets it run): read the nonce its scripts carry.
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_PAGE_BYTES).await else {
        return AppError::internal("page too large").into_response();
    };
    let policy = nonce_in(&bytes).map_or_else(page_policy_without_nonce, page_policy);
    tracing::debug!("page policy set from the page's own nonce");
    if let Ok(value) = HeaderValue::from_str(&policy) {
        parts.headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The largest page the policy fallback reads.
const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;

/// The first `nonce="…"` in a page, if its value is plain base64.
fn nonce_in(page: &[u8]) -> Option<&str> {
    const MARK: &[u8] = b"nonce=\"";
    let at = page.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    let len = page[at..].iter().position(|&b| b == b'"')?;
    let nonce = std::str::from_utf8(&page[at..at + len]).ok()?;
    let plain = !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=_-".contains(&b));
    plain.then_some(nonce)
}

/// The page policy for a page with no nonce: no inline script runs.
fn page_policy_without_nonce() -> String {
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        .to_string()
}

/// `POST /auth/sign_out` (a plain form): revokes the caller's token, closes every socket
/// opened with it, clears the cookie and sends the browser home, where it gets a fresh
/// identity. Until accounts exist, a signed-out identity cannot be recovered.
pub async fn sign_out(
    State(state): State<AppState>,
    user: Option<Extension<CurrentUser>>,
    token: Option<Extension<TokenHash>>,
    provisional: Option<Extension<Provisional>>,
) -> Result<Response, AppError> {
    let (Some(Extension(CurrentUser(user))), Some(Extension(TokenHash(token)))) = (user, token)
    else {
        return Err(AppError::Unauthenticated);
    };
    // A provisional identity holds nothing: forgetting its cookie is enough.
    if provisional.is_none() {
        state.chat.store().revoke_token(&user.id, &token).await?;
    }
    let closed = state.sockets.revoke(&token);
    // Its sockets on other nodes close too.
    state.chat.signed_out(&user.id, &token).await;
    tracing::info!(user = %user.id.0, sockets = closed, "signed out");
    let mut response = Redirect::to("/").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, cleared_cookie(secure_cookies(&state)));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(error: &AppError) -> String {
        URL_SAFE.encode(serde_json::to_vec(error).unwrap())
    }

    #[test]
    fn urls_carry_error_codes_not_words() {
        let crafted = AppError::Internal {
            detail: "Call +1 555 0100 now".into(),
        };
        let query = format!("__path=%2Fapi%2Fx&__err={}&keep=1", encoded(&crafted));
        let clean = error_codes_only(&query);
        let err = url::form_urlencoded::parse(clean.as_bytes())
            .find(|(k, _)| k == "__err")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        let back: AppError = serde_json::from_slice(&URL_SAFE.decode(err).unwrap()).unwrap();
        assert_eq!(back, AppError::internal(""));
        assert!(clean.contains("keep=1") && clean.contains("__path="));
        // Not an error at all: dropped, with its path.
        let clean = error_codes_only("__path=%2Fapi%2Fx&__err=bm90IGpzb24&keep=1");
        assert_eq!(clean, "keep=1");
    }

    #[test]
    fn a_page_without_its_policy_gets_one_from_its_own_nonce() {
        let page = br#"<html><head><script nonce="AbC+/9=">x</script></head></html>"#;
        assert_eq!(nonce_in(page), Some("AbC+/9="));
        assert_eq!(
            nonce_in(br#"<script nonce="a'b">"#),
            None,
            "not plain base64"
        );
        assert_eq!(nonce_in(b"<p>no scripts</p>"), None);
        assert!(!page_policy_without_nonce().contains("nonce"));
    }

    #[test]
    fn the_page_policy_names_the_nonce_and_forbids_framing() {
        let policy = page_policy("abc");
        assert!(policy.contains("'nonce-abc'"));
        assert!(policy.contains("'wasm-unsafe-eval'"));
        assert!(policy.contains("frame-ancestors 'none'"));
        assert!(!policy.contains("unsafe-inline"));
    }
}
