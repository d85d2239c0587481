//! Request ids, as Neon's API has them: a client's `X-Request-ID` is honoured
//! (when it is 1-128 visible ASCII characters), otherwise a UUID v4 is made;
//! either is echoed in the response's `X-Request-ID`, carried by the
//! request's log span and written into every error body. The same context
//! says which error shape the request gets: Neon's flat one under `/api/v2`,
//! ours elsewhere.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The header, both ways.
pub(crate) static HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// What the request's answers need to know about it.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub(crate) id: String,
    /// Under `/api/v2` (Neon's surface).
    pub(crate) neon: bool,
}

tokio::task_local! {
    static CURRENT: Context;
}

/// The context of the request this task is answering, if any.
pub(crate) fn current() -> Option<Context> {
    CURRENT.try_with(Clone::clone).ok()
}

/// A client's id is kept when it is 1-128 characters, each visible ASCII.
fn acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A random UUID (version 4).
fn new_id() -> String {
    meter_core::ids::uuid(rand::random(), 4)
}

/// The middleware (outermost, so the auth layer's errors carry the id too):
/// every request runs in a span `api.request` with its method, path and id.
pub(crate) async fn layer(req: Request, next: Next) -> Response {
    let given = req.headers().get(&HEADER).and_then(|v| v.to_str().ok()).filter(|s| acceptable(s));
    let id = given.map_or_else(new_id, str::to_owned);
    let span = tracing::info_span!("api.request", method = %req.method(), path = %req.uri().path(), request_id = %id);
    let context = Context { id: id.clone(), neon: req.uri().path().starts_with(crate::neon::PREFIX) };
    let mut response = CURRENT.scope(context, next.run(req)).instrument(span).await;
    let value = HeaderValue::from_str(&id).expect("visible ASCII is a header value");
    response.headers_mut().insert(HEADER.clone(), value);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_uuid_v4() {
        for _ in 0..100 {
            let id = new_id();
            let parts: Vec<&str> = id.split('-').collect();
            assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12], "{id}");
            assert!(parts[2].starts_with('4'), "{id}");
            assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{id}");
            assert!(acceptable(&id));
        }
        assert_ne!(new_id(), new_id());
    }

    #[test]
    fn client_ids_must_be_short_visible_ascii() {
        assert!(acceptable("req-1:abc/XYZ"));
        for bad in ["", "has space", "tab\t", "é", &"x".repeat(129)] {
            assert!(!acceptable(bad), "{bad:?}");
        }
    }
}
