//! The client's ip address, proxy-aware only behind proxies we trust.
//!
//! `X-Forwarded-For` is written by whoever sent the request, so it is ignored unless the peer (the TCP
//! connection's address) is one of `TRUSTED_PROXIES`. Behind trusted proxies the header is read from the
//! right, skipping trusted hops: the first address that is not ours is the client. A client cannot push
//! its way past that by prepending fake entries, since only the right-most untrusted entry counts.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::config::TrustedProxies;

/// The client address of a request.
pub fn client_ip(parts: &Parts, trusted: &TrustedProxies) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    resolve(peer, &parts.headers, trusted)
}

pub fn resolve(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &TrustedProxies) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.contains(peer) {
        return Some(peer);
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else { return Some(peer) };
        for item in text.split(',').map(str::trim) {
            match item.parse::<IpAddr>() {
                Ok(ip) => hops.push(ip),
                // A malformed chain cannot be trusted past this point: stop at the proxy.
                Err(_) => return Some(peer),
            }
        }
    }
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        client = hop;
        if !trusted.contains(hop) {
            break;
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(v).expect("header"));
        h
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").expect("parse");
        let peer: IpAddr = "203.0.113.9".parse().expect("ip");
        assert_eq!(resolve(Some(peer), &xff("1.2.3.4"), &trusted), Some(peer));
        assert_eq!(resolve(Some(peer), &xff("1.2.3.4"), &TrustedProxies::default()), Some(peer));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 192.168.1.1").expect("parse");
        let peer: IpAddr = "10.0.0.5".parse().expect("ip");
        // The client prepended a fake address: it is not the right-most untrusted one.
        let got = resolve(Some(peer), &xff("6.6.6.6, 198.51.100.7, 192.168.1.1"), &trusted);
        assert_eq!(got, Some("198.51.100.7".parse().expect("ip")));
        assert_eq!(resolve(Some(peer), &xff("garbage"), &trusted), Some(peer));
        assert_eq!(resolve(Some(peer), &HeaderMap::new(), &trusted), Some(peer));
        assert!(TrustedProxies::parse("not-an-ip").is_err());
    }
}
