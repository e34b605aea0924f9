//! The OpenAPI document, generated from the handlers' annotations and served at `/api/docs/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::{audit, knowledge, me, members, organizations, pagination, session};
use crate::error::{ErrorBody, ErrorCode};

#[derive(OpenApi)]
#[openapi(
    info(title = "IntelliFill API", description = "Supabase-authenticated, multi-tenant API with enforced row-level security."),
    paths(
        me::get, session::session, session::logout, audit::org_log, audit::all,
        organizations::list, organizations::create, organizations::get,
        members::list, members::add, members::update, members::remove,
        knowledge::list, knowledge::create, knowledge::get, knowledge::update, knowledge::delete, knowledge::search,
        crate::health::live, crate::health::ready, crate::health::detailed,
    ),
    components(schemas(
        ErrorBody, ErrorCode, me::Me, me::Membership, session::Session,
        organizations::Organization, organizations::CreateOrganization,
        members::Member, members::AddMember, members::UpdateMember,
        knowledge::Knowledge, knowledge::KnowledgeSummary, knowledge::CreateKnowledge, knowledge::UpdateKnowledge,
        pagination::Page<knowledge::KnowledgeSummary>, audit::AuditEntry, pagination::Page<audit::AuditEntry>,
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
