//! Who is on the other end, for per-address budgets and caps. The TCP peer, unless the peer
//! is one of the configured `trusted_proxies`: then the nearest address in `X-Forwarded-For`
//! that is not itself a trusted proxy (an untrusted client can put anything in that header,
//! so it is believed only from proxies we run).

use axum::http::HeaderMap;
use std::net::{IpAddr, SocketAddr};

/// The TCP peer of a request, put in its extensions by [`super::serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The client's address as budgets see it, put in the request by the identity middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The client address of a request from `peer` with `headers`, trusting `X-Forwarded-For`
/// only as far as it was written by `trusted` proxies.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    // Each proxy appends the address it heard from: read from the right, skipping our own.
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return ip,
            // A malformed hop: stop believing the header here.
            Err(_) => break,
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn xff(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let stranger: IpAddr = "127.0.0.9".parse().unwrap();
        let spoofed = xff("10.9.9.9");
        assert_eq!(client_ip(stranger, &spoofed, &[proxy]), stranger);
        assert_eq!(
            client_ip(proxy, &spoofed, &[proxy]),
            "10.9.9.9".parse::<IpAddr>().unwrap()
        );
        // A client's own forged hop to the left of the real one is ignored.
        let chain = xff("1.2.3.4, 10.0.0.5, 127.0.0.1");
        assert_eq!(
            client_ip(proxy, &chain, &[proxy]),
            "10.0.0.5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, &xff("garbage"), &[proxy]), proxy);
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &[proxy]), proxy);
    }
}
