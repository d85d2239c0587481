//! The tokens file and the authorization header: parse, check, look up.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meter_core::auth::{bearer, Credentials};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(token) = bearer(Some(text)) {
        assert!(!token.is_empty());
    }
    if let Ok(c) = toml::from_str::<Credentials>(text) {
        if c.check().is_ok() {
            let _ = c.ingest(text);
            let _ = c.api(text);
        }
    }
});
