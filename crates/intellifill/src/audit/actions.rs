//! The audit action and entity type of a request, from its route's declaration.
//!
//! The action vocabulary is bounded (one `x-audit-action` per declared route and method, see
//! `http::route`, plus a few fixed names), so the `action` column can be filtered and indexed, and never
//! contains a raw id or a user-supplied path.

/// What the route step notes of the matched route, for the audit row.
#[derive(Debug, Clone, Copy)]
pub struct RouteNote {
    /// The route template (`/api/organizations/{orgId}/knowledge`).
    pub path: &'static str,
    pub action: &'static str,
    pub entity: Option<&'static str>,
}

/// The action of a request that matched no route.
pub(crate) const UNMATCHED: &str = "http.unmatched";

/// Action and entity type of a request to `route` (`None` when no route matched).
pub(crate) fn classify(route: Option<&RouteNote>) -> (&'static str, Option<&'static str>) {
    route.map_or((UNMATCHED, None), |r| (r.action, r.entity))
}

/// Whether the action deletes something (mass-delete detection).
pub(crate) fn is_delete(action: &str) -> bool {
    action.ends_with(".delete") || action.ends_with(".remove")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_come_from_the_route_note_never_from_raw_paths() {
        let note = RouteNote { path: "/api/x/{id}", action: "x.read", entity: Some("x") };
        assert_eq!(classify(Some(&note)), ("x.read", Some("x")));
        assert_eq!(classify(None), (UNMATCHED, None));
        assert!(is_delete("knowledge.delete") && is_delete("members.remove") && !is_delete("knowledge.read"));
    }
}
