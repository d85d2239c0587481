//! Request ids, as Neon's API has them: a client's `X-Request-ID` is honoured
//! (when it is 1-128 visible ASCII characters), otherwise a UUID v4 is made;
//! either is echoed in the response's `X-Request-ID`, carried by the
//! request's log span and written into every error body.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The header, both ways.
pub(crate) static HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request this task is answering, if any.
pub(crate) fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// A client's id is kept when it is 1-128 characters, each visible ASCII.
fn acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A random UUID (version 4, RFC 9562 variant), lower-case hex.
fn new_id() -> String {
    let n = rand::random::<u128>() & !(0xf << 76) & !(0x3 << 62) | (0x4 << 76) | (0x2 << 62);
    let h = format!("{n:032x}");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// The middleware (outermost, so the auth layer's errors carry the id too):
/// every request runs in a span `api.request` with its method, path and id.
pub(crate) async fn layer(req: Request, next: Next) -> Response {
    let given = req.headers().get(&HEADER).and_then(|v| v.to_str().ok()).filter(|s| acceptable(s));
    let id = given.map_or_else(new_id, str::to_owned);
    let span = tracing::info_span!("api.request", method = %req.method(), path = %req.uri().path(), request_id = %id);
    let mut response = CURRENT.scope(id.clone(), next.run(req)).instrument(span).await;
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
