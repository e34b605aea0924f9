//! The one key function of every limiter: [`write_key`]`(out, parts, scope)`.
//!
//! Scopes: `user`, `org`, `ip`, `user-ip`. Parts are validated (a `user` scope with no
//! authenticated user cannot key on a missing id) and normalised: ids in their canonical lowercase form,
//! IPv4-mapped IPv6 addresses as IPv4, other IPv6 addresses by their /64 (one host usually owns a whole /64,
//! so keying on full addresses would let it rotate through 2^64 keys). A missing part falls back to the ip
//! scope, logged at debug level at most once a minute so a misconfigured route cannot flood the log.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicI64, Ordering};

use uuid::Uuid;

/// What a limiter keys on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    User,
    Org,
    Ip,
    UserIp,
}

impl Scope {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Org => "org",
            Scope::Ip => "ip",
            Scope::UserIp => "user-ip",
        }
    }
}

/// What is known about the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyParts {
    pub user: Option<Uuid>,
    pub org: Option<Uuid>,
    pub ip: Option<IpAddr>,
}

/// The key of `parts` under `scope` (without the policy name and store prefix).
#[cfg(test)]
fn rate_limit_key(parts: &KeyParts, scope: Scope) -> String {
    let mut key = String::with_capacity(64);
    write_key(&mut key, parts, scope);
    key
}

/// The key of `parts` under `scope`, appended to `out` (the limiter prefixes it with its policy name, so no
/// second string is made). Written without `core::fmt` for ids and IPv4 addresses: it runs for every policy
/// of every request, and formatting through `write!` cost more than the limiter's own check.
pub(crate) fn write_key(out: &mut String, parts: &KeyParts, scope: Scope) {
    match (scope, parts.user, parts.org, parts.ip) {
        (Scope::User, Some(u), _, _) => {
            out.push_str("user:");
            push_id(out, u);
        }
        (Scope::Org, _, Some(o), _) => {
            out.push_str("org:");
            push_id(out, o);
        }
        (Scope::UserIp, Some(u), _, Some(ip)) => {
            out.push_str("user-ip:");
            push_id(out, u);
            out.push(':');
            push_ip(out, ip);
        }
        (Scope::Ip, _, _, Some(ip)) => {
            out.push_str("ip:");
            push_ip(out, ip);
        }
        (_, _, _, ip) => {
            if scope != Scope::Ip {
                log_fallback(scope);
            }
            out.push_str("ip:");
            match ip {
                Some(ip) => push_ip(out, ip),
                // No peer address at all (not over TCP): one shared bucket, never an unlimited request.
                None => out.push_str("unknown"),
            }
        }
    }
}

/// An id in its canonical lowercase hyphenated form.
fn push_id(out: &mut String, id: Uuid) {
    out.push_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
}

/// An address as it keys a limit: IPv4-mapped IPv6 as IPv4, other IPv6 by its /64.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => push_v4(out, v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => push_v4(out, v4),
            None => {
                use std::fmt::Write as _;
                let s = v6.segments();
                // Writing to a String cannot fail.
                let _ = write!(out, "{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0));
            }
        },
    }
}

/// Dotted decimal, as `Ipv4Addr`'s `Display` writes it.
fn push_v4(out: &mut String, v4: Ipv4Addr) {
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
}

static LAST_FALLBACK_LOG: AtomicI64 = AtomicI64::new(0);

fn log_fallback(scope: Scope) {
    let now = chrono::Utc::now().timestamp();
    let last = LAST_FALLBACK_LOG.load(Ordering::Relaxed);
    if now - last >= 60 && LAST_FALLBACK_LOG.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        tracing::debug!(scope = scope.as_str(), "rate limit key part missing: keyed on the client ip instead");
    }
    metrics::counter!("rate_limit_key_fallbacks_total", "scope" => scope.as_str()).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_ids_are_written_as_their_display_forms() {
        for a in [0u8, 1, 9, 10, 42, 99, 100, 199, 200, 255] {
            for b in 0..=255u8 {
                let v4 = Ipv4Addr::new(a, b, 255 - b, a ^ b);
                let mut out = String::new();
                push_ip(&mut out, IpAddr::V4(v4));
                assert_eq!(out, v4.to_string());
            }
        }
        let mapped: IpAddr = "::ffff:198.51.100.23".parse().expect("ip");
        let mut out = String::new();
        push_ip(&mut out, mapped);
        assert_eq!(out, "198.51.100.23");
        let v6: IpAddr = "2001:db8:aa:bb:cc:dd:ee:ff".parse().expect("ip");
        let mut out = String::new();
        push_ip(&mut out, v6);
        assert_eq!(out, "2001:db8:aa:bb::/64");
        let id = Uuid::new_v4();
        let mut out = String::new();
        push_id(&mut out, id);
        assert_eq!(out, id.to_string());
    }

    #[test]
    fn keys_are_normalised_and_fall_back_to_the_ip() {
        let user = Uuid::parse_str("6F9619FF-8B86-D011-B42D-00CF4FC964FF").expect("uuid");
        let org = Uuid::new_v4();
        let v4: IpAddr = "203.0.113.7".parse().expect("ip");
        let parts = KeyParts { user: Some(user), org: Some(org), ip: Some(v4) };
        assert_eq!(rate_limit_key(&parts, Scope::User), "user:6f9619ff-8b86-d011-b42d-00cf4fc964ff");
        assert_eq!(rate_limit_key(&parts, Scope::Org), format!("org:{org}"));
        assert_eq!(rate_limit_key(&parts, Scope::UserIp), format!("user-ip:{user}:203.0.113.7"));
        let anonymous = KeyParts { ip: Some(v4), ..KeyParts::default() };
        assert_eq!(rate_limit_key(&anonymous, Scope::User), "ip:203.0.113.7");
        assert_eq!(rate_limit_key(&anonymous, Scope::UserIp), "ip:203.0.113.7");
        assert_eq!(rate_limit_key(&KeyParts::default(), Scope::Ip), "ip:unknown");
    }

    #[test]
    fn ipv6_hosts_share_their_64_and_mapped_v4_is_v4() {
        let a = KeyParts { ip: Some("2001:db8:1:2:aaaa::1".parse().expect("ip")), ..KeyParts::default() };
        let b = KeyParts { ip: Some("2001:db8:1:2:bbbb::9".parse().expect("ip")), ..KeyParts::default() };
        assert_eq!(rate_limit_key(&a, Scope::Ip), rate_limit_key(&b, Scope::Ip));
        assert_eq!(rate_limit_key(&a, Scope::Ip), "ip:2001:db8:1:2::/64");
        let mapped = KeyParts { ip: Some("::ffff:198.51.100.4".parse().expect("ip")), ..KeyParts::default() };
        assert_eq!(rate_limit_key(&mapped, Scope::Ip), "ip:198.51.100.4");
    }
}
