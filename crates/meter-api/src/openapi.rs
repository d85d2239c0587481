//! The OpenAPI 3.1 document of the HTTP API, served at `/v1/openapi.json`.

use axum::http::header;
use axum::response::IntoResponse;

/// The document (kept next to the handlers; a test checks it lists every route).
pub(crate) const DOCUMENT: &str = include_str!("openapi.json");

pub(crate) async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_route_and_resolves_its_references() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let paths: Vec<&str> = doc["paths"].as_object().expect("paths").keys().map(String::as_str).collect();
        for route in &crate::ROUTES {
            assert!(paths.contains(route), "{route} is served but not in openapi.json");
        }
        assert_eq!(paths.len(), crate::ROUTES.len(), "openapi.json lists a path that is not served");
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for r in DOCUMENT.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = &r[..r.find('"').expect("closing quote")];
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
    }
}
