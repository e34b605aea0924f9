//! Targets of the OpenAPI links the create operations declare (`links(...)` on their 201 responses): what a
//! client, and schemathesis' stateful phase, calls next with the id the response holds. An `operationRef` names
//! its target by path and method (operation ids repeat across tags: `get`, `list`, `create`); a lib test in
//! `router` checks that each one resolves to a declared operation and names only its parameters.

pub(crate) const GET_ORGANIZATION: &str = "#/paths/~1api~1organizations~1%7BorgId%7D/get";
pub(crate) const LIST_MEMBERS: &str = "#/paths/~1api~1organizations~1%7BorgId%7D~1members/get";
pub(crate) const LIST_KNOWLEDGE: &str = "#/paths/~1api~1organizations~1%7BorgId%7D~1knowledge/get";
pub(crate) const CREATE_KNOWLEDGE: &str = "#/paths/~1api~1organizations~1%7BorgId%7D~1knowledge/post";
pub(crate) const GET_KNOWLEDGE: &str = "#/paths/~1api~1organizations~1%7BorgId%7D~1knowledge~1%7Bid%7D/get";
pub(crate) const UPDATE_KNOWLEDGE: &str = "#/paths/~1api~1organizations~1%7BorgId%7D~1knowledge~1%7Bid%7D/patch";
pub(crate) const DELETE_KNOWLEDGE: &str = "#/paths/~1api~1organizations~1%7BorgId%7D~1knowledge~1%7Bid%7D/delete";
pub(crate) const LIST_INVITATIONS: &str = "#/paths/~1api~1organizations~1%7BorgId%7D~1invitations/get";
pub(crate) const CREATE_INVITATION: &str = "#/paths/~1api~1organizations~1%7BorgId%7D~1invitations/post";
pub(crate) const REVOKE_INVITATION: &str = "#/paths/~1api~1organizations~1%7BorgId%7D~1invitations~1%7Bid%7D/delete";
pub(crate) const ACCEPT_INVITATION: &str = "#/paths/~1api~1invitations~1%7Bid%7D~1accept/post";
pub(crate) const DECLINE_INVITATION: &str = "#/paths/~1api~1invitations~1%7Bid%7D~1decline/post";
pub(crate) const ORG_AUDIT: &str = "#/paths/~1api~1organizations~1%7BorgId%7D~1audit/get";
