//! Standard Webhooks signatures: `webhook-signature: v1,<base64 of
//! HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, where the secret is
//! `whsec_` followed by the base64 of the key.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a signature does not verify (or a secret is unusable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("secret must be whsec_ followed by base64")]
    BadSecret,
    #[error("no v1 signature matches")]
    Mismatch,
    #[error("timestamp outside the tolerance")]
    Stale,
}

fn key(secret: &str) -> Result<Vec<u8>, SignError> {
    let b64 = secret.strip_prefix("whsec_").ok_or(SignError::BadSecret)?;
    let key = STANDARD.decode(b64).map_err(|_| SignError::BadSecret)?;
    if key.is_empty() {
        return Err(SignError::BadSecret);
    }
    Ok(key)
}

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// Checks that a secret is usable.
pub fn check_secret(secret: &str) -> Result<(), SignError> {
    key(secret).map(|_| ())
}

/// The `webhook-signature` header value.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SignError> {
    let tag = mac(&key(secret)?, id, timestamp, body).finalize().into_bytes();
    Ok(format!("v1,{}", STANDARD.encode(tag)))
}

/// Verifies a `webhook-signature` header (space-separated signatures) in
/// constant time, and that `timestamp` is within `tolerance_s` of `now_s`.
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), SignError> {
    if (now_s - timestamp).abs() > tolerance_s {
        return Err(SignError::Stale);
    }
    let key = key(secret)?;
    for sig in header.split(' ') {
        let Some(b64) = sig.strip_prefix("v1,") else { continue };
        let Ok(tag) = STANDARD.decode(b64) else { continue };
        if mac(&key, id, timestamp, body).verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    Err(SignError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks specification.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;

    #[test]
    fn matches_the_spec_example() {
        assert_eq!(sign(SECRET, ID, TS, BODY).unwrap(), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn verifies_and_detects_tampering() {
        let h = sign(SECRET, ID, TS, BODY).unwrap();
        assert_eq!(verify(SECRET, ID, TS, BODY, &format!("v1,bogus {h}"), TS, 300), Ok(()));
        assert_eq!(verify(SECRET, ID, TS, br#"{"test": 2432232315}"#, &h, TS, 300), Err(SignError::Mismatch));
        assert_eq!(verify(SECRET, "msg_other", TS, BODY, &h, TS, 300), Err(SignError::Mismatch));
        assert_eq!(verify(SECRET, ID, TS, BODY, &h, TS + 301, 300), Err(SignError::Stale));
        assert_eq!(sign("nope", ID, TS, BODY), Err(SignError::BadSecret));
    }
}
