//! The OpenAPI document, served at `/api/docs/openapi.json`: the operations come from the route declarations
//! ([`super`]), this module adds what every operation shares: the document's info, the bearer scheme, the
//! shared schemas and each operation's error responses, derived from its declaration ([`crate::http::route`]).
//!
//! | status | declared on |
//! | --- | --- |
//! | 400 | operations with path or query parameters or a request body |
//! | 401, 403 | authenticated operations (token refused; account deactivated, role or membership missing) |
//! | 503 | every operation (the audit trail cannot record the request); authenticated ones also: auth service or database unavailable |
//! | 404 | operations with path parameters (an unknown or foreign id) |
//! | 413, 415 | operations with a request body |
//! | 429 | every operation (the per-ip limit applies to every request) |
//!
//! Statuses only some handlers return (409) are declared in their annotations.

use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, RefOr, Required};

use crate::api::{audit, invitations, knowledge, me, members, organizations, pagination, session};
use crate::error::{ErrorBody, ErrorCode};

/// The document's own parts; the paths are added by `super::declarations`.
#[derive(OpenApi)]
#[openapi(
    info(title = "IntelliFill API", description = "Supabase-authenticated, multi-tenant API with enforced row-level security. \
        Every operation carries vendor extensions: `x-audit-action` (the audit trail's action), `x-rate-limit` \
        (the rate-limit class: ip, user, auth, org-read, org-write) and, where the route has one, `x-min-role`. \
        Text that contains NUL (U+0000), in a body or a query, is refused with 400 `VALIDATION_ERROR`."),
    components(schemas(
        ErrorBody, ErrorCode, me::Me, me::Membership, session::Session,
        organizations::Organization, organizations::CreateOrganization,
        members::Member, members::UpdateMember,
        invitations::Invitation, invitations::CreateInvitation, invitations::MyInvitation, invitations::MyInvitations,
        pagination::Page<invitations::Invitation>,
        knowledge::Knowledge, knowledge::KnowledgeSummary, knowledge::CreateKnowledge, knowledge::UpdateKnowledge,
        pagination::Page<knowledge::KnowledgeSummary>, audit::AuditEntry, pagination::Page<audit::AuditEntry>,
    )),
)]
pub(crate) struct ApiDoc;

/// The finished document: `doc` (the declared operations) with the bearer scheme and the error responses.
pub(crate) fn finish(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
    );
    for item in doc.paths.paths.values_mut() {
        let path_params = item.parameters.clone().unwrap_or_default();
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            let params = op.parameters.iter().flatten().chain(&path_params);
            let in_path = params.clone().any(|p| matches!(p.parameter_in, ParameterIn::Path));
            let in_query = params.clone().any(|p| matches!(p.parameter_in, ParameterIn::Query));
            add_errors(op, in_path, in_query);
        }
    }
    doc
}

fn add_errors(op: &mut Operation, in_path: bool, in_query: bool) {
    let authenticated = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_body = op.request_body.is_some();
    let mut add = |status: &str, description: &str| {
        if !op.responses.responses.contains_key(status) {
            let response = ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorBody")))),
                )
                .build();
            op.responses.responses.insert(status.to_owned(), RefOr::T(response));
        }
    };
    if in_path || in_query || has_body {
        add("400", "invalid parameter or body (`VALIDATION_ERROR`, `INVALID_ID`, `INVALID_JSON`)");
    }
    if authenticated {
        add("401", "no valid bearer token (`TOKEN_*`, `SESSION_REVOKED`, `USER_BANNED`, `USER_NOT_PROVISIONED`)");
        add(
            "403",
            "not allowed (`ACCOUNT_DEACTIVATED`, `EMAIL_NOT_CONFIRMED`, `ANONYMOUS_NOT_ALLOWED`, `NOT_ORG_MEMBER`, `*_REQUIRED`, `ORG_SUSPENDED`, `FORBIDDEN`)",
        );
    }
    if in_path {
        add("404", "no such entity here (`NOT_FOUND`)");
    }
    if has_body {
        add("413", "request body too large (`PAYLOAD_TOO_LARGE`)");
        add("415", "the body is not `application/json` (`UNSUPPORTED_MEDIA_TYPE`)");
    }
    add("429", "rate limited (`RATE_LIMITED`, with `Retry-After`)");
    if authenticated {
        add(
            "503",
            "auth service, database or audit trail unavailable (`AUTH_SERVICE_UNAVAILABLE`, `DATABASE_UNAVAILABLE`, \
             `AUDIT_UNAVAILABLE`, with `Retry-After`), or the auth service refuses this server's API key \
             (`AUTH_SERVICE_MISCONFIGURED`)",
        );
    } else {
        add("503", "the audit trail cannot record the request (`AUDIT_UNAVAILABLE`, with `Retry-After`)");
    }
    if let Some(body) = &mut op.request_body {
        body.required = Some(Required::True);
    }
}

/// The document as served. utoipa 5.5 serializes a response link's fields in snake case (`operation_ref`,
/// `operation_id`, `request_body`) where OpenAPI spells them in camel case; they are renamed here, so clients
/// (and schemathesis' stateful phase) follow the links.
pub(crate) fn to_json(doc: &utoipa::openapi::OpenApi) -> Vec<u8> {
    use serde_json::Value;
    let mut value = serde_json::to_value(doc).expect("the OpenAPI document serializes");
    fn entries(v: Option<&mut Value>) -> impl Iterator<Item = &mut Value> {
        v.and_then(Value::as_object_mut).into_iter().flat_map(|m| m.values_mut())
    }
    for item in entries(value.get_mut("paths")) {
        for operation in entries(Some(item)) {
            for response in entries(operation.get_mut("responses")) {
                for link in entries(response.get_mut("links")).filter_map(Value::as_object_mut) {
                    for (snake, camel) in [
                        ("operation_ref", "operationRef"),
                        ("operation_id", "operationId"),
                        ("request_body", "requestBody"),
                    ] {
                        if let Some(field) = link.remove(snake) {
                            link.insert(camel.into(), field);
                        }
                    }
                }
            }
        }
    }
    serde_json::to_vec(&value).expect("the OpenAPI document serializes")
}
