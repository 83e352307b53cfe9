//! Who is asking. A browser gets a secret token in a long-lived HttpOnly cookie on its first
//! page view, and with it a provisional identity: an id derived from the token, stored nowhere
//! until the browser chooses a display name (so crawlers and health checks leave no users
//! behind). A bot gets a stored identity at once from `POST /auth/session` and sends its token
//! as a cookie or as `Authorization: Bearer <token>`. Only a hash of each token is stored.

use super::state::AppState;
use crate::error::AppError;
use crate::protocol::{validate_display_name, UserId, UserInfo};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cookie::{Cookie, SameSite};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The identity cookie's name.
pub const COOKIE: &str = "flack_session";
/// How long the identity cookie lives (400 days, the most browsers keep one).
const COOKIE_MAX_AGE_DAYS: i64 = 400;

/// The authenticated user, put in the request's extensions by [`identify`].
#[derive(Debug, Clone)]
pub struct CurrentUser(pub UserInfo);

/// Present (with the token's hash) when [`CurrentUser`] is provisional: not stored yet.
#[derive(Debug, Clone)]
pub struct Provisional(pub String);

/// What [`identify`] put in the request that a page or server function is serving now
/// ([`CurrentUser`], [`Provisional`]), read from the request parts Leptos provides.
pub fn of_this_request<T: Clone + Send + Sync + 'static>() -> Option<T> {
    let parts = leptos::prelude::use_context::<axum::http::request::Parts>()?;
    parts.extensions.get::<T>().cloned()
}

/// The id a token's provisional user has, and keeps once stored: derived from the token
/// (one-way), so it is the same on every request without being stored.
fn provisional_id(token: &str) -> UserId {
    let digest = Sha256::digest(format!("flack-user-id:{token}").as_bytes());
    UserId(hex::encode(&digest[..16]))
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The token a request presents: the cookie first, then a bearer header.
fn presented_token(headers: &HeaderMap) -> Option<String> {
    let from_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_string());
    from_cookie.or_else(|| {
        headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
            .map(|t| t.trim().to_string())
    })
}

fn session_cookie(token: &str, secure: bool) -> HeaderValue {
    let cookie = Cookie::build((COOKIE, token.to_string()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(cookie::time::Duration::days(COOKIE_MAX_AGE_DAYS))
        .build();
    HeaderValue::from_str(&cookie.to_string()).expect("cookie is ASCII")
}

/// Whether a request's `Origin` (if any) is this site or an allowed one. Requests without an
/// Origin come from non-browser clients, which carry their token explicitly.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if allowed.iter().any(|a| a == origin) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    matches!((host, origin_host), (Some(h), Some(o)) if h.eq_ignore_ascii_case(o))
}

/// Static files need no identity.
fn is_asset(path: &str) -> bool {
    path.starts_with("/pkg/")
        || path
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains('.'))
}

/// Middleware: refuses cross-site writes, finds the caller's user (issuing a new token to a
/// browser that has none) and puts it in the request as [`CurrentUser`], with [`Provisional`]
/// when it is not stored yet.
pub async fn identify(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if is_asset(req.uri().path()) {
        return next.run(req).await;
    }
    if req.method() != Method::GET
        && req.method() != Method::HEAD
        && !origin_allowed(req.headers(), &state.config.allowed_origins)
    {
        return AppError::ForeignOrigin.into_response();
    }
    let store = state.chat.store();
    let (token, new_cookie) = match presented_token(req.headers()) {
        Some(token) => (token, None),
        None => {
            let token = new_token();
            let cookie = session_cookie(&token, state.config.secure_cookies);
            (token, Some(cookie))
        }
    };
    let token_hash = hash_token(&token);
    let stored = match new_cookie {
        Some(_) => None,
        None => match store.user_by_token(&token_hash).await {
            Ok(user) => user,
            Err(e) => return e.into_response(),
        },
    };
    let user = match stored {
        Some(user) => user,
        None => {
            req.extensions_mut().insert(Provisional(token_hash));
            UserInfo {
                id: provisional_id(&token),
                name: None,
            }
        }
    };
    req.extensions_mut().insert(CurrentUser(user));
    let mut response = next.run(req).await;
    if let Some(cookie) = new_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Body of `POST /auth/session`.
#[derive(Debug, Deserialize)]
pub struct SessionRequest {
    /// The display name to use.
    pub name: String,
}

/// Answer of `POST /auth/session`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SessionResponse {
    /// The new user.
    pub user: UserInfo,
    /// The secret token: send it as the `flack_session` cookie or as a bearer token.
    pub token: String,
}

/// `POST /auth/session {"name":"bot"}`: a fresh identity with a display name, for clients that
/// are not browsers. Not behind [`identify`], so it never creates a second, anonymous user.
pub async fn create_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(request): Json<SessionRequest>,
) -> Result<Response, AppError> {
    if !origin_allowed(&headers, &state.config.allowed_origins) {
        return Err(AppError::ForeignOrigin);
    }
    let name = validate_display_name(&request.name)?;
    let token = new_token();
    let user = state
        .chat
        .store()
        .create_user(hash_token(&token), Some(name))
        .await?;
    let cookie = session_cookie(&token, state.config.secure_cookies);
    let mut response = Json(SessionResponse { user, token }).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_token_always_means_the_same_provisional_id() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(provisional_id(&a), provisional_id(&a));
        assert_ne!(provisional_id(&a), provisional_id(&b));
        assert_eq!(provisional_id(&a).0.len(), 32);
        assert_ne!(provisional_id(&a).0, hash_token(&a)[..32]);
    }

    #[test]
    fn tokens_come_from_cookie_or_bearer() {
        let h = headers(&[(header::COOKIE, "a=1; flack_session=abc; b=2")]);
        assert_eq!(presented_token(&h).as_deref(), Some("abc"));
        let h = headers(&[(header::AUTHORIZATION, "Bearer xyz")]);
        assert_eq!(presented_token(&h).as_deref(), Some("xyz"));
        assert_eq!(presented_token(&HeaderMap::new()), None);
    }

    #[test]
    fn only_same_or_allowed_origins_pass() {
        let same = headers(&[
            (header::HOST, "127.0.0.1:3000"),
            (header::ORIGIN, "http://127.0.0.1:3000"),
        ]);
        assert!(origin_allowed(&same, &[]));
        let foreign = headers(&[
            (header::HOST, "127.0.0.1:3000"),
            (header::ORIGIN, "http://evil.example"),
        ]);
        assert!(!origin_allowed(&foreign, &[]));
        assert!(origin_allowed(&foreign, &["http://evil.example".into()]));
        assert!(origin_allowed(&headers(&[(header::HOST, "x")]), &[]));
    }

    #[test]
    fn cookies_are_http_only_and_lax() {
        let c = session_cookie("t", false).to_str().unwrap().to_string();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.contains("Max-Age="));
        assert!(session_cookie("t", true)
            .to_str()
            .unwrap()
            .contains("Secure"));
    }

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_ne!(hash_token(&a), a);
        assert_eq!(hash_token(&a), hash_token(&a));
    }
}
