//! Who is asking. Identities are the server's: every token is 32 random bytes chosen by the
//! server, half of them a MAC of the other half under the server's secret, so a token the
//! server never issued is recognised as such and answered with a fresh one (it never becomes
//! an identity). A browser gets a token in a long-lived HttpOnly cookie on its first page view
//! and with it a provisional identity, stored nowhere until it chooses a display name; its id
//! is derived from the token under the secret, so nobody can choose or grind it offline. A bot
//! gets a stored identity at once from `POST /auth/session` and sends its token as a cookie or
//! as `Authorization: Bearer <token>`. Only a hash of each token is stored; "Sign out" revokes
//! it and closes its sockets.
//!
//! The middleware here is also the site's front gate: it refuses requests for another `Host`
//! and cross-site writes before anything else runs.

use super::client_addr::{client_ip, ClientIp, PeerAddr};
use super::state::AppState;
use crate::error::AppError;
use crate::protocol::{validate_display_name, UserId, UserInfo};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cookie::{Cookie, SameSite};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// The identity cookie's name.
pub const COOKIE: &str = "flack_session";
/// How long the identity cookie lives (400 days, the most browsers keep one).
const COOKIE_MAX_AGE_DAYS: i64 = 400;
/// Random bytes of a token; as many again are its MAC.
const TOKEN_NONCE: usize = 16;

/// The authenticated user, put in the request's extensions by [`identify`].
#[derive(Debug, Clone)]
pub struct CurrentUser(pub UserInfo);

/// Present (with the token's hash) when [`CurrentUser`] is provisional: not stored yet.
#[derive(Debug, Clone)]
pub struct Provisional(pub String);

/// The hash of the token this request presented (or was just given).
#[derive(Debug, Clone)]
pub struct TokenHash(pub String);

/// What [`identify`] put in the request that a page or server function is serving now
/// ([`CurrentUser`], [`Provisional`], [`TokenHash`], [`ClientIp`]), read from the request
/// parts Leptos provides.
pub fn of_this_request<T: Clone + Send + Sync + 'static>() -> Option<T> {
    let parts = leptos::prelude::use_context::<axum::http::request::Parts>()?;
    parts.extensions.get::<T>().cloned()
}

/// Issues and checks tokens under the server's secret.
pub struct Tokens {
    secret: Vec<u8>,
}

type HmacSha256 = Hmac<Sha256>;

impl Tokens {
    /// Tokens under `secret` (kept by the store, so they outlive restarts).
    pub fn new(secret: Vec<u8>) -> Self {
        Tokens { secret }
    }

    fn mac(&self, purpose: &str, data: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key");
        mac.update(purpose.as_bytes());
        mac.update(data);
        mac
    }

    /// A fresh token: random, and signed.
    pub fn issue(&self) -> String {
        let mut nonce = [0u8; TOKEN_NONCE];
        rand::rng().fill_bytes(&mut nonce);
        let tag = self.mac("flack-token:", &nonce).finalize().into_bytes();
        format!("{}{}", hex::encode(nonce), hex::encode(&tag[..TOKEN_NONCE]))
    }

    /// Whether this server issued `token`.
    pub fn issued(&self, token: &str) -> bool {
        let Ok(bytes) = hex::decode(token) else {
            return false;
        };
        if bytes.len() != 2 * TOKEN_NONCE {
            return false;
        }
        let (nonce, tag) = bytes.split_at(TOKEN_NONCE);
        self.mac("flack-token:", nonce)
            .verify_truncated_left(tag)
            .is_ok()
    }

    /// The id of the user a token stands for: derived under the secret, so it cannot be
    /// chosen, predicted or ground for by anyone without it.
    pub fn user_id(&self, token: &str) -> UserId {
        let digest = self
            .mac("flack-user-id:", token.as_bytes())
            .finalize()
            .into_bytes();
        UserId(hex::encode(&digest[..16]))
    }
}

/// How a token is stored: its SHA-256.
pub fn hash_token(token: &str) -> String {
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

/// The cookie that replaces a signed-out one.
pub fn cleared_cookie(secure: bool) -> HeaderValue {
    let cookie = Cookie::build((COOKIE, ""))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(cookie::time::Duration::ZERO)
        .build();
    HeaderValue::from_str(&cookie.to_string()).expect("cookie is ASCII")
}

/// Whether the identity cookie must be `Secure`.
pub fn secure_cookies(state: &AppState) -> bool {
    state.config.secure_cookies || state.site.is_https()
}

/// Static files need no identity.
fn is_asset(path: &str) -> bool {
    path.starts_with("/pkg/")
        || path
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains('.'))
}

/// The client address of a request, as budgets and caps see it.
pub fn client_of(state: &AppState, req: &Request) -> IpAddr {
    let peer = req
        .extensions()
        .get::<PeerAddr>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |PeerAddr(addr)| addr.ip());
    client_ip(peer, req.headers(), &state.config.trusted_proxies)
}

/// Middleware on everything: refuses requests for another host and cross-site writes, notes
/// the client's address, and (but for static files) finds the caller's user, issuing a fresh
/// token to a browser that presents none or one the server did not issue. Puts
/// [`CurrentUser`], [`TokenHash`] and, when not stored yet, [`Provisional`] in the request.
pub async fn identify(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if !state.site.host_allowed(req.headers()) {
        return AppError::ForeignHost.into_response();
    }
    if req.method() != Method::GET
        && req.method() != Method::HEAD
        && !state.site.origin_allowed(req.headers())
    {
        return AppError::ForeignOrigin.into_response();
    }
    let ip = client_of(&state, &req);
    req.extensions_mut().insert(ClientIp(ip));
    // Static files need no identity; `/auth/session` makes its own.
    if is_asset(req.uri().path()) || req.uri().path() == "/auth/session" {
        return next.run(req).await;
    }
    let store = state.chat.store();
    let presented = presented_token(req.headers());
    let mut stored = None;
    if let Some(token) = &presented {
        match store.user_by_token(&hash_token(token)).await {
            Ok(user) => stored = user.map(|user| (token.clone(), user)),
            Err(e) => return e.into_response(),
        }
    }
    let stored_user = stored.is_some();
    let (token, user, new_cookie) = match (stored, presented) {
        (Some((token, user)), _) => (token, user, None),
        (None, Some(token)) if state.tokens.issued(&token) && !revoked(&state, &token).await => {
            let id = state.tokens.user_id(&token);
            (token, UserInfo { id, name: None }, None)
        }
        // None, or one we never issued (or revoked): a fresh identity, never the one offered.
        _ => {
            let token = state.tokens.issue();
            let cookie = session_cookie(&token, secure_cookies(&state));
            let id = state.tokens.user_id(&token);
            (token, UserInfo { id, name: None }, Some(cookie))
        }
    };
    let token_hash = hash_token(&token);
    if new_cookie.is_some() || user.name.is_none() && !stored_user {
        // Not stored until a name is chosen (see `Chat::set_display_name`).
        req.extensions_mut().insert(Provisional(token_hash.clone()));
    }
    req.extensions_mut().insert(TokenHash(token_hash));
    req.extensions_mut().insert(CurrentUser(user));
    let mut response = next.run(req).await;
    if let Some(cookie) = new_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

async fn revoked(state: &AppState, token: &str) -> bool {
    // A store that cannot answer is taken to say "revoked": a fresh identity is harmless.
    state
        .chat
        .store()
        .token_revoked(&hash_token(token))
        .await
        .unwrap_or(true)
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
/// are not browsers; spends one of the address's new-identity budget.
pub async fn create_session(
    State(state): State<AppState>,
    axum::Extension(ClientIp(ip)): axum::Extension<ClientIp>,
    Json(request): Json<SessionRequest>,
) -> Result<Response, AppError> {
    let name = validate_display_name(&request.name)?;
    state.chat.budgets().new_identity(ip).await?;
    let token = state.tokens.issue();
    let user = state
        .chat
        .store()
        .store_user(state.tokens.user_id(&token), hash_token(&token), name)
        .await?;
    let cookie = session_cookie(&token, secure_cookies(&state));
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
    fn only_issued_tokens_are_recognised() {
        let tokens = Tokens::new(b"secret one".to_vec());
        let token = tokens.issue();
        assert_eq!(token.len(), 64);
        assert!(tokens.issued(&token));
        assert_ne!(token, tokens.issue());
        for forged in [
            "",
            "a",
            &"0".repeat(64),
            &token[..63],
            &format!("{token}00"),
        ] {
            assert!(!tokens.issued(forged), "{forged:?}");
        }
        // Flip one digit of the MAC half.
        let mut bad = token.clone().into_bytes();
        bad[40] = if bad[40] == b'0' { b'1' } else { b'0' };
        assert!(!tokens.issued(std::str::from_utf8(&bad).unwrap()));
        // Another server's secret does not accept it.
        assert!(!Tokens::new(b"secret two".to_vec()).issued(&token));
    }

    #[test]
    fn user_ids_depend_on_the_secret() {
        let one = Tokens::new(b"one".to_vec());
        let two = Tokens::new(b"two".to_vec());
        let token = one.issue();
        assert_eq!(one.user_id(&token), one.user_id(&token));
        assert_ne!(one.user_id(&token), two.user_id(&token));
        assert_eq!(one.user_id(&token).0.len(), 32);
        // Not the plain hash the client could compute.
        assert!(!hash_token(&token).starts_with(&one.user_id(&token).0[..8]));
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
    fn cookies_are_http_only_and_lax() {
        let c = session_cookie("t", false).to_str().unwrap().to_string();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.contains("Max-Age="));
        assert!(!c.contains("Secure"));
        assert!(session_cookie("t", true)
            .to_str()
            .unwrap()
            .contains("Secure"));
        assert!(cleared_cookie(false)
            .to_str()
            .unwrap()
            .contains("Max-Age=0"));
    }
}
