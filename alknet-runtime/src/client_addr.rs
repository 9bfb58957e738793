//! Which address an HTTP request counts against: its TCP peer's, or — when that peer is a
//! trusted proxy — the client's, as the proxies recorded it.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use axum::http::header::FORWARDED;

use crate::OperationEnv;
use crate::config::{ProxyHeader, RateLimits};

/// The address the node's rate limits count a request from `peer` against.
///
/// A header is read only when the TCP peer is one of `[rate_limits] trusted_proxies`:
/// then the hops the proxies appended are walked from the nearest back, and the first
/// address that is not a trusted proxy is the client. A hop that is not an address (`unknown`,
/// an obfuscated name, garbage) stops the walk at the proxy that wrote it, since nothing
/// to its left can be trusted. Without trusted proxies no header is looked at.
pub(crate) fn resolve(env: &OperationEnv, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let peer = peer.to_canonical();
    match env.config() {
        Some(config) => behind_proxies(&config.rate_limits, peer, headers),
        None => peer,
    }
}

fn behind_proxies(limits: &RateLimits, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let trusted = |address: &IpAddr| {
        limits
            .trusted_proxies
            .iter()
            .any(|proxy| proxy.contains(address))
    };
    let (name, hop): (_, fn(&str) -> Option<IpAddr>) = match limits.proxy_header {
        ProxyHeader::XForwardedFor => ("x-forwarded-for", forwarded_for_hop),
        ProxyHeader::Forwarded => (FORWARDED.as_str(), forwarded_hop),
    };
    if !trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    // Later header lines were added by nearer proxies, as were later hops within a line.
    for value in headers.get_all(name).iter().rev() {
        let Ok(text) = value.to_str() else {
            return client;
        };
        for element in text.rsplit(',') {
            if !trusted(&client) {
                return client;
            }
            match hop(element) {
                Some(address) => client = address.to_canonical(),
                None => return client,
            }
        }
    }
    client
}

/// One hop of `X-Forwarded-For`: an address, with or without a port.
fn forwarded_for_hop(element: &str) -> Option<IpAddr> {
    address(element.trim())
}

/// The `for=` of one element of RFC 7239's `Forwarded`.
fn forwarded_hop(element: &str) -> Option<IpAddr> {
    let node = element.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then_some(value.trim())
    })?;
    let node = node
        .strip_prefix('"')
        .and_then(|node| node.strip_suffix('"'))
        .unwrap_or(node);
    address(node)
}

/// `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:8080`.
fn address(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse().ok())
        })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::config::ConfigServiceImpl;

    fn limits(text: &str) -> RateLimits {
        ConfigServiceImpl::from_text(text, "test")
            .unwrap()
            .snapshot()
            .rate_limits
            .clone()
    }

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_header_from_an_untrusted_peer_is_ignored() {
        let forged = headers("x-forwarded-for", &["203.0.113.9"]);
        let none = limits("");
        assert_eq!(
            behind_proxies(&none, ip("192.0.2.1"), &forged),
            ip("192.0.2.1")
        );
        let some = limits("[rate_limits]\ntrusted_proxies = [\"10.0.0.0/8\"]\n");
        assert_eq!(
            behind_proxies(&some, ip("192.0.2.1"), &forged),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn from_a_trusted_proxy_the_first_untrusted_hop_is_the_client() {
        let limits = limits("[rate_limits]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.10\"]\n");
        let proxy = ip("10.1.2.3");
        let one = headers("x-forwarded-for", &["203.0.113.9"]);
        assert_eq!(behind_proxies(&limits, proxy, &one), ip("203.0.113.9"));
        // The client wrote the leftmost hop itself; the proxies appended the rest.
        let chain = headers(
            "x-forwarded-for",
            &["198.51.100.1, 203.0.113.9", "192.0.2.10"],
        );
        assert_eq!(behind_proxies(&limits, proxy, &chain), ip("203.0.113.9"));
        // No header: the proxy itself.
        assert_eq!(behind_proxies(&limits, proxy, &HeaderMap::new()), proxy);
        // A hop that is no address stops at the proxy that wrote it.
        let garbage = headers("x-forwarded-for", &["203.0.113.9, unknown"]);
        assert_eq!(behind_proxies(&limits, proxy, &garbage), proxy);
        // Ports and IPv4 written as IPv6 are the address.
        let ported = headers("x-forwarded-for", &["[::ffff:203.0.113.9]:4711"]);
        assert_eq!(behind_proxies(&limits, proxy, &ported), ip("203.0.113.9"));
        // `Forwarded` is not read unless configured.
        let rfc = headers("forwarded", &["for=203.0.113.9"]);
        assert_eq!(behind_proxies(&limits, proxy, &rfc), proxy);
    }

    #[test]
    fn the_forwarded_header_is_read_when_configured() {
        let limits = limits(
            "[rate_limits]\ntrusted_proxies = [\"10.0.0.1\"]\nproxy_header = \"forwarded\"\n",
        );
        let proxy = ip("10.0.0.1");
        let rfc = headers(
            "forwarded",
            &["for=198.51.100.1;proto=https, For=\"[2001:db8:cafe::17]:4711\";by=10.0.0.1"],
        );
        assert_eq!(
            behind_proxies(&limits, proxy, &rfc),
            ip("2001:db8:cafe::17")
        );
        let hidden = headers("forwarded", &["for=_hidden"]);
        assert_eq!(behind_proxies(&limits, proxy, &hidden), proxy);
        let xff = headers("x-forwarded-for", &["203.0.113.9"]);
        assert_eq!(behind_proxies(&limits, proxy, &xff), proxy);
    }
}
