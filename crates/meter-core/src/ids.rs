//! Identifiers: projects and sources. Validated once at the edge.

use std::fmt;

/// Longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_ID_LEN} bytes")]
    TooLong,
    #[error("contains {0:?}; allowed are ASCII letters, digits and - _ . :")]
    BadChar(char),
}

fn check(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    // Byte by byte (every id of every batch is checked): the first byte
    // outside the allowed ASCII starts the character named.
    match s.bytes().position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))) {
        Some(i) => Err(IdError::BadChar(s[i..].chars().next().expect("a character starts at a refused byte"))),
        None => Ok(()),
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        /// Shared text: an id is cloned into every event of a batch, and a
        /// clone must not allocate.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            /// Validates and wraps an id.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                Self::parse(&s.into())
            }

            /// Validates and wraps a borrowed id: one allocation (the
            /// shared text), where `new(s.to_owned())` makes two.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                check(s)?;
                Ok(Self(s.into()))
            }

            /// Checks `s` as `new` would, without taking it.
            pub fn check(s: &str) -> Result<(), IdError> {
                check(s)
            }

            /// Where this id's shared text lives: the same for its clones,
            /// different for any other id alive at the same time. A cheap
            /// map key for ids held by one owner (no hashing of the text).
            pub fn shared_addr(&self) -> usize {
                std::sync::Arc::as_ptr(&self.0) as *const u8 as usize
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A project (one isolated Postgres database and its computes).
    ProjectId
);
id_type!(
    /// A reporting source (a compute node); batches are numbered per source.
    SourceId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_neon_style_ids() {
        assert!(ProjectId::new("proud-sun-123456").is_ok());
        assert!(SourceId::new("compute-ep-1:pod.3").is_ok());
    }

    #[test]
    fn refuses_bad_ids() {
        assert_eq!(ProjectId::new(""), Err(IdError::Empty));
        assert_eq!(ProjectId::new("a b"), Err(IdError::BadChar(' ')));
        // The whole character is named, not its first byte.
        assert_eq!(SourceId::new("node-\u{e9}t\u{e9}"), Err(IdError::BadChar('\u{e9}')));
        assert_eq!(ProjectId::new("p-\u{1f600}"), Err(IdError::BadChar('\u{1f600}')));
        assert_eq!(ProjectId::new("x".repeat(129)), Err(IdError::TooLong));
    }
}

/// `bytes` as an RFC 9562 UUID string (lower-case hex, 8-4-4-4-12) with
/// `version` (4: random, 8: derived from a hash) and the RFC variant set.
pub fn uuid(mut bytes: [u8; 16], version: u8) -> String {
    bytes[6] = (bytes[6] & 0x0f) | (version << 4);
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

#[cfg(test)]
mod uuid_tests {
    use super::uuid;

    #[test]
    fn uuids_carry_version_and_variant() {
        assert_eq!(uuid([0xff; 16], 4), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(uuid([0; 16], 8), "00000000-0000-8000-8000-000000000000");
    }
}
