//! Route template + method -> audit action and entity type.
//!
//! The action vocabulary is bounded (one entry per route and method, plus a few fixed names), so the
//! `action` column can be filtered and indexed, and never contains a raw id or a user-supplied path.

/// Action and entity type of a request to `template` (the matched route, `None` when no route matched).
pub fn classify(method: &http::Method, template: Option<&str>) -> (&'static str, Option<&'static str>) {
    use http::Method as M;
    let Some(template) = template else {
        return ("http.unmatched", None);
    };
    let m = method.clone();
    match (template, m) {
        ("/api/me", M::GET) => ("me.read", Some("user")),
        ("/api/auth/session", M::GET) => ("auth.session", None),
        ("/api/auth/logout", M::POST) => ("auth.logout", None),
        ("/api/organizations", M::GET) => ("organizations.list", Some("organization")),
        ("/api/organizations", M::POST) => ("organizations.create", Some("organization")),
        ("/api/organizations/{orgId}", M::GET) => ("organizations.read", Some("organization")),
        ("/api/organizations/{orgId}/members", M::GET) => ("members.list", Some("membership")),
        ("/api/organizations/{orgId}/members", M::POST) => ("members.add", Some("membership")),
        ("/api/organizations/{orgId}/members/{userId}", M::PATCH) => ("members.update", Some("membership")),
        ("/api/organizations/{orgId}/members/{userId}", M::DELETE) => ("members.remove", Some("membership")),
        ("/api/organizations/{orgId}/knowledge", M::GET) => ("knowledge.list", Some("knowledge_source")),
        ("/api/organizations/{orgId}/knowledge", M::POST) => ("knowledge.create", Some("knowledge_source")),
        ("/api/organizations/{orgId}/knowledge/search", M::GET) => ("knowledge.search", Some("knowledge_source")),
        ("/api/organizations/{orgId}/knowledge/{id}", M::GET) => ("knowledge.read", Some("knowledge_source")),
        ("/api/organizations/{orgId}/knowledge/{id}", M::PATCH) => ("knowledge.update", Some("knowledge_source")),
        ("/api/organizations/{orgId}/knowledge/{id}", M::DELETE) => ("knowledge.delete", Some("knowledge_source")),
        ("/api/organizations/{orgId}/audit", M::GET) => ("audit.list", Some("audit_log")),
        ("/api/admin/audit", M::GET) => ("audit.list_all", Some("audit_log")),
        _ => ("http.other", None),
    }
}

/// The id of the entity a route acts on, from its path parameters (the most specific one).
pub fn entity_id<'a, I: Iterator<Item = (&'a str, &'a str)>>(params: impl Fn() -> I) -> Option<String> {
    for name in ["id", "userId", "orgId"] {
        if let Some((_, v)) = params().find(|(k, _)| *k == name) {
            return Some(super::truncated(v, 64).to_owned());
        }
    }
    None
}

/// Whether the action deletes something (mass-delete detection).
pub fn is_delete(action: &str) -> bool {
    action.ends_with(".delete") || action.ends_with(".remove")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn actions_come_from_templates_never_from_raw_paths() {
        assert_eq!(classify(&Method::POST, Some("/api/organizations/{orgId}/knowledge")).0, "knowledge.create");
        assert_eq!(classify(&Method::DELETE, Some("/api/organizations/{orgId}/members/{userId}")).0, "members.remove");
        assert_eq!(classify(&Method::GET, None).0, "http.unmatched");
        assert_eq!(classify(&Method::PUT, Some("/api/me")).0, "http.other");
    }

    #[test]
    fn entity_is_the_most_specific_parameter() {
        let of = |v: &[(&str, &str)]| entity_id(|| v.iter().copied());
        assert_eq!(of(&[("orgId", "o"), ("id", "k")]).as_deref(), Some("k"));
        assert_eq!(of(&[("orgId", "o")]).as_deref(), Some("o"));
        assert_eq!(of(&[]), None);
        // Cut at 64 characters, never inside a multi-byte one.
        let long = "é".repeat(70);
        assert_eq!(of(&[("id", &long)]), Some("é".repeat(64)));
        assert_eq!(super::super::truncated("abc", 64), "abc");
    }
}
