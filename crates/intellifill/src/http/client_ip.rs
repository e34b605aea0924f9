//! The client's ip address, proxy-aware only behind proxies we trust.
//!
//! `X-Forwarded-For` is written by whoever sent the request, so it is ignored unless the peer (the TCP
//! connection's address) is one of `TRUSTED_PROXIES`. Behind trusted proxies the header is read from the
//! right (every `X-Forwarded-For` field, in order, as one list): trusted hops are skipped, and the first entry
//! that is not a trusted address is the client; everything left of it was written by the client and is
//! ignored, so prepending fake or malformed entries changes nothing. An invalid entry at that position (not an
//! address, `unknown`, non-ASCII) leaves the peer as the client, logged at debug level. Entries may carry a
//! port (`203.0.113.7:4711`, `[2001:db8::1]:4711`) or brackets (`[2001:db8::1]`).
use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::config::TrustedProxies;

/// The client address of a request.
pub(crate) fn client_ip(parts: &Parts, trusted: &TrustedProxies) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    resolve(peer, &parts.headers, trusted)
}

pub(crate) fn resolve(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &TrustedProxies) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.contains(peer) {
        return Some(peer);
    }
    let fields: Vec<&[u8]> = headers.get_all("x-forwarded-for").iter().map(|v| v.as_bytes()).collect();
    let mut client = peer;
    for entry in fields.iter().rev().flat_map(|field| field.rsplit(|b| *b == b',')) {
        let entry = entry.trim_ascii();
        if entry.is_empty() {
            continue;
        }
        match parse_entry(entry) {
            Some(ip) if trusted.contains(ip) => client = ip,
            Some(ip) => return Some(ip),
            None => {
                tracing::debug!(peer = %peer, "X-Forwarded-For entry is not an address; the proxy is the client");
                return Some(peer);
            }
        }
    }
    Some(client)
}

/// One `X-Forwarded-For` entry: an address, optionally with a port, IPv6 optionally in brackets.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    text.strip_prefix('[')?.strip_suffix(']')?.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
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

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn hostile_entries_left_of_the_client_change_nothing() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").expect("parse");
        let peer = Some(ip("10.0.0.5"));
        let client = Some(ip("198.51.100.7"));
        for hostile in ["garbage", "unknown", "1.2.3.4:80", "[2001:db8::1]:443", "", " , ,", "::ffff:zz", "999.1.1.1"] {
            let header = format!("{hostile}, 198.51.100.7, 10.0.0.9");
            assert_eq!(resolve(peer, &xff(&header), &trusted), client, "{header:?}");
        }
        // 100 entries of which only the right-most untrusted one counts.
        let long = (0..99).map(|i| format!("203.0.113.{i}")).chain(["198.51.100.7".into()]).collect::<Vec<_>>();
        assert_eq!(resolve(peer, &xff(&long.join(",")), &trusted), client);
        // Non-ASCII anywhere left of the client.
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_bytes("é\u{ff}, 198.51.100.7".as_bytes()).expect("bytes"));
        assert_eq!(resolve(peer, &h, &trusted), client);
        // Several fields are one list, in order.
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.append("x-forwarded-for", HeaderValue::from_static("198.51.100.7, 10.0.0.9"));
        assert_eq!(resolve(peer, &h, &trusted), client);
    }

    #[test]
    fn ports_and_brackets_are_accepted_at_the_client_position() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").expect("parse");
        let peer = Some(ip("10.0.0.5"));
        assert_eq!(resolve(peer, &xff("198.51.100.7:4711"), &trusted), Some(ip("198.51.100.7")));
        assert_eq!(resolve(peer, &xff("[2001:db8::1]:443"), &trusted), Some(ip("2001:db8::1")));
        assert_eq!(resolve(peer, &xff("[2001:db8::1]"), &trusted), Some(ip("2001:db8::1")));
        assert_eq!(resolve(peer, &xff("2001:db8::1"), &trusted), Some(ip("2001:db8::1")));
    }

    #[test]
    fn an_invalid_entry_at_the_client_position_means_the_peer() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").expect("parse");
        let peer = Some(ip("10.0.0.5"));
        for bad in ["unknown", "garbage", "198.51.100.7:notaport", "[2001:db8::1", "1.2.3.4.5"] {
            assert_eq!(resolve(peer, &xff(&format!("198.51.100.7, {bad}")), &trusted), peer, "{bad:?}");
        }
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_bytes("198.51.100.7, \u{ff}".as_bytes()).expect("bytes"));
        assert_eq!(resolve(peer, &h, &trusted), peer);
        // Only trusted hops: the left-most of them.
        assert_eq!(resolve(peer, &xff("10.1.1.1, 10.2.2.2"), &trusted), Some(ip("10.1.1.1")));
    }
}
