//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers'
//! annotations and the types of `model.rs` (so it cannot drift from what
//! they answer), served at `/v1/openapi.json`.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::{adjustments, config_history, cycles, handlers, history, neon, neon_project, watermark, webhooks};

/// Where the document is served (public: no token needed).
pub(crate) const PATH: &str = "/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "meter API",
        description = "Quotas, plans, project status, CheckQuota, webhook endpoints and dead letters, usage \
            adjustments and consumption history of the usage-metering pipeline, with Neon's field names. Errors are JSON: \
            {\"error\": {\"code\", \"message\", \"param\"?, \"request_id\"}}; every answer carries \
            `X-Request-ID` (the caller's, when it sent one). With credentials configured, every call but this \
            document needs `Authorization: Bearer <token>`: a `read` token for GET, a `manage` token for the rest. \
            The same listener serves Neon's API under /api/v2 (tag `neon`), with Neon's paths, operation ids, \
            parameters and shapes (errors there are Neon's flat GeneralError); Neon's own OpenAPI document is \
            the reference those operations are tested against (README, \"Neon's API\")."
    ),
    paths(
        handlers::list_plans,
        handlers::put_plan,
        handlers::get_plan,
        handlers::list_projects,
        handlers::put_quota,
        handlers::patch_quota,
        handlers::get_quota,
        config_history::quota_history,
        config_history::plan_history,
        handlers::status,
        handlers::check,
        webhooks::list_webhooks,
        webhooks::put_webhook,
        webhooks::patch_webhook,
        webhooks::delete_webhook,
        webhooks::test_webhook,
        webhooks::list_deliveries,
        webhooks::resend_delivery,
        webhooks::list_dead_letters,
        webhooks::replay_dead_letters,
        adjustments::post_adjustment,
        adjustments::list_adjustments,
        history::project,
        history::projects,
        history::fleet,
        watermark::watermark,
        cycles::get_cycle,
        cycles::close_cycle,
        neon::projects,
        neon::account,
        neon_project::get,
        neon_project::patch,
        document,
    ),
    modifiers(&Security),
    tags(
        (name = "quotas", description = "Plans, project quotas, status and CheckQuota."),
        (name = "history", description = "Consumption history from ClickHouse."),
        (name = "adjustments", description = "Corrections of usage, with who made them and why."),
        (name = "webhooks", description = "Alert webhook endpoints, their deliveries and dead letters."),
        (name = "neon", description = "Neon's API (v2): consumption history and the project object, as Neon's clients read them."),
    )
)]
pub(crate) struct ApiDoc;

/// Bearer tokens on every operation but the document itself, with the 401
/// (and, for writes, 403) answers the auth layer gives.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        for (path, item) in doc.paths.paths.iter_mut() {
            if path == PATH {
                continue;
            }
            let ops = [
                (&mut item.get, false),
                (&mut item.put, true),
                (&mut item.patch, true),
                (&mut item.post, true),
                (&mut item.delete, true),
            ];
            for (op, writes) in ops {
                if let Some(op) = op.as_mut() {
                    let error = if path.starts_with("/api/v2/") { "GeneralError" } else { "ErrorBody" };
                    protect(op, writes, error);
                }
            }
        }
    }
}

fn protect(op: &mut Operation, writes: bool, error_schema: &str) {
    let requirement = utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new());
    op.security = Some(vec![requirement]);
    let error = |what: &str| -> RefOr<Response> {
        ResponseBuilder::new()
            .description(what)
            .content(
                "application/json",
                utoipa::openapi::content::ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(error_schema)))
                    .build(),
            )
            .build()
            .into()
    };
    op.responses.responses.insert("401".into(), error("No token, or one that is not configured."));
    if writes {
        op.responses.responses.insert("403".into(), error("The token lacks the `manage` scope."));
    }
}

/// The document, as served.
pub(crate) fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serializes"))
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "quotas", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", content_type = "application/json")))]
pub(crate) async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_route_and_resolves_its_references() {
        let doc: serde_json::Value = serde_json::from_str(json()).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let paths: Vec<&str> = doc["paths"].as_object().expect("paths").keys().map(String::as_str).collect();
        for route in &crate::ROUTES {
            assert!(paths.contains(route), "{route} is served but not in the document");
        }
        assert_eq!(paths.len(), crate::ROUTES.len(), "the document lists a path that is not served");
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let text = json();
        for r in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = &r[..r.find('"').expect("closing quote")];
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
    }

    #[test]
    fn every_protected_operation_documents_its_auth_answers() {
        let doc: serde_json::Value = serde_json::from_str(json()).expect("valid JSON");
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("operations") {
                let responses = &op["responses"];
                if path == PATH {
                    assert!(responses.get("401").is_none(), "the document is public");
                    continue;
                }
                assert!(responses.get("401").is_some(), "{method} {path} lacks 401");
                assert_eq!(responses.get("403").is_some(), method != "get", "{method} {path}: 403 for writes only");
            }
        }
    }
}
