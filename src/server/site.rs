//! Where requests may come from. The site is `public_url` (or `http://` and the listening
//! address): a request whose `Host` names anything else is refused, which defeats DNS
//! rebinding, and a browser request whose `Origin` is not this site's scheme, host and port
//! (or one of `allowed_origins`) is refused wherever it could change something.

use axum::http::{header, HeaderMap};
use std::net::{IpAddr, SocketAddr};

/// The site's public address, as requests must name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// `http` or `https`.
    scheme: String,
    /// `host:port`, lower-case, port always written.
    hosts: Vec<String>,
    /// Listening on every interface with no `public_url`: any IP literal on this port is
    /// this site (a rebinding attack needs a host name, so names are still refused).
    any_ip_on_port: Option<u16>,
    /// Extra browser origins allowed, normalised.
    extra_origins: Vec<String>,
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

/// `host[:port]` as `host:port`, lower-case; `None` if it is not a plausible authority.
fn authority(raw: &str, scheme: &str) -> Option<(String, u16)> {
    let raw = raw.trim().to_ascii_lowercase();
    if raw.is_empty() || raw.contains(['/', '@', '?', '#', ' ']) {
        return None;
    }
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port(scheme),
            None => return None,
        };
        (format!("[{host}]"), port)
    } else {
        match raw.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), port.parse().ok()?),
            None => (raw.clone(), default_port(scheme)),
        }
    };
    Some((host, port))
}

/// `scheme://host:port` of an origin or URL, normalised; `None` if malformed.
fn origin_of(raw: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = raw.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let rest = rest.trim_end_matches('/');
    let (host, port) = authority(rest, &scheme)?;
    Some((scheme, host, port))
}

impl Site {
    /// The site for `public_url` (empty: `http://` and `address`).
    pub fn new(public_url: &str, address: SocketAddr) -> Result<Site, String> {
        Self::with_origins(public_url, address, &[])
    }

    /// The same, allowing `extra` browser origins as well.
    pub fn with_origins(
        public_url: &str,
        address: SocketAddr,
        extra: &[String],
    ) -> Result<Site, String> {
        let extra_origins = extra
            .iter()
            .map(|o| {
                origin_of(o)
                    .map(|(s, h, p)| format!("{s}://{h}:{p}"))
                    .ok_or_else(|| format!("allowed_origins: {o:?} is not an origin"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !public_url.trim().is_empty() {
            let (scheme, host, port) = origin_of(public_url)
                .ok_or_else(|| format!("public_url: {public_url:?} is not an http(s) URL"))?;
            return Ok(Site {
                scheme,
                hosts: vec![format!("{host}:{port}")],
                any_ip_on_port: None,
                extra_origins,
            });
        }
        let port = address.port();
        let ip = address.ip();
        let hosts = if ip.is_loopback() {
            vec![
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
                authority(&address.to_string(), "http")
                    .map(|(h, p)| format!("{h}:{p}"))
                    .unwrap_or_default(),
            ]
        } else {
            vec![authority(&address.to_string(), "http")
                .map(|(h, p)| format!("{h}:{p}"))
                .unwrap_or_default()]
        };
        Ok(Site {
            scheme: "http".into(),
            hosts,
            any_ip_on_port: ip.is_unspecified().then_some(port),
            extra_origins,
        })
    }

    /// Whether the site is served over HTTPS (so its cookie must be `Secure`).
    pub fn is_https(&self) -> bool {
        self.scheme == "https"
    }

    fn host_is_ours(&self, host: &str, port: u16) -> bool {
        let both = format!("{host}:{port}");
        if self.hosts.contains(&both) {
            return true;
        }
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        self.any_ip_on_port == Some(port) && literal.parse::<IpAddr>().is_ok()
    }

    /// Whether a request's `Host` names this site (a request without one, HTTP/1.0, is not).
    pub fn host_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        authority(host, &self.scheme).is_some_and(|(h, p)| self.host_is_ours(&h, p))
    }

    /// Whether a request's `Origin`, if it has one, is this site (same scheme, host and port)
    /// or an allowed origin. Requests without an `Origin` come from clients that are not
    /// browsers, which carry their token explicitly.
    pub fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
            return true;
        };
        let Some((scheme, host, port)) = origin_of(origin) else {
            return false;
        };
        let whole = format!("{scheme}://{host}:{port}");
        if self.extra_origins.contains(&whole) {
            return true;
        }
        scheme == self.scheme && self.host_is_ours(&host, port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn local() -> Site {
        Site::new("", "127.0.0.1:3000".parse().unwrap()).unwrap()
    }

    #[test]
    fn only_our_host_names_pass() {
        let site = local();
        for ok in [
            "127.0.0.1:3000",
            "localhost:3000",
            "LOCALHOST:3000",
            "[::1]:3000",
        ] {
            assert!(site.host_allowed(&headers(&[(header::HOST, ok)])), "{ok}");
        }
        for bad in [
            "attacker.example",
            "attacker.example:3000",
            "127.0.0.1:3001",
            "127.0.0.1",
        ] {
            assert!(
                !site.host_allowed(&headers(&[(header::HOST, bad)])),
                "{bad}"
            );
        }
        assert!(!site.host_allowed(&HeaderMap::new()));
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        let site = local();
        let with = |o: &str| headers(&[(header::ORIGIN, o)]);
        assert!(site.origin_allowed(&with("http://127.0.0.1:3000")));
        assert!(site.origin_allowed(&with("http://localhost:3000")));
        assert!(
            !site.origin_allowed(&with("https://127.0.0.1:3000")),
            "scheme"
        );
        assert!(!site.origin_allowed(&with("http://127.0.0.1:3001")), "port");
        assert!(!site.origin_allowed(&with("http://attacker.example")));
        assert!(!site.origin_allowed(&with("null")));
        assert!(
            site.origin_allowed(&HeaderMap::new()),
            "no Origin: not a browser"
        );
    }

    #[test]
    fn a_public_url_is_the_only_name() {
        let site = Site::with_origins(
            "https://Chat.Example.com/",
            "0.0.0.0:8080".parse().unwrap(),
            &["https://tools.example.com".into()],
        )
        .unwrap();
        assert!(site.is_https());
        assert!(site.host_allowed(&headers(&[(header::HOST, "chat.example.com")])));
        assert!(site.host_allowed(&headers(&[(header::HOST, "chat.example.com:443")])));
        assert!(!site.host_allowed(&headers(&[(header::HOST, "10.0.0.1:8080")])));
        let origin = |o: &str| headers(&[(header::ORIGIN, o)]);
        assert!(site.origin_allowed(&origin("https://chat.example.com")));
        assert!(!site.origin_allowed(&origin("http://chat.example.com")));
        assert!(site.origin_allowed(&origin("https://tools.example.com")));
        assert!(Site::new("ftp://x", "0.0.0.0:1".parse().unwrap()).is_err());
    }

    #[test]
    fn every_interface_accepts_ip_literals_but_no_names() {
        let site = Site::new("", "0.0.0.0:3000".parse().unwrap()).unwrap();
        assert!(site.host_allowed(&headers(&[(header::HOST, "192.0.2.7:3000")])));
        assert!(!site.host_allowed(&headers(&[(header::HOST, "rebind.example:3000")])));
        assert!(!site.is_https());
    }
}
