//! Credentials: which sources may report usage for which projects (ingest),
//! and who may read or manage (api). The table holds SHA-256 hashes of the
//! tokens, never the tokens; a presented token is hashed and compared with
//! every entry in constant time.

use std::fmt;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{IdError, ProjectId};

/// An id pattern: `*` (any id), `prefix*` (ids starting with prefix) or an
/// exact id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPattern(String);

impl IdPattern {
    /// Parses a pattern; the part before a trailing `*` must be a valid id
    /// or empty.
    pub fn new(s: &str) -> Result<Self, IdError> {
        match s.strip_suffix('*') {
            Some("") => {}
            Some(prefix) => ProjectId::check(prefix)?,
            None => ProjectId::check(s)?,
        }
        Ok(IdPattern(s.to_owned()))
    }

    /// Whether `id` matches.
    pub fn matches(&self, id: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => id.starts_with(prefix),
            None => id == self.0,
        }
    }
}

impl<'de> Deserialize<'de> for IdPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        IdPattern::new(&s).map_err(|e| serde::de::Error::custom(format!("pattern {s:?}: {e}")))
    }
}

/// What an API token may do. `Manage` includes `Read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Usage, status, history, plans, quotas and webhooks: GET.
    Read,
    /// Setting plans, quotas and webhooks, replaying dead letters.
    Manage,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Read => "read",
            Scope::Manage => "manage",
        })
    }
}

/// The SHA-256 of a token, as stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of a token.
    pub fn of(token: &str) -> Self {
        Self::of_bytes(token.as_bytes())
    }

    /// The SHA-256 of bytes: a client certificate's fingerprint is that of
    /// its DER encoding (`openssl x509 -in c.pem -outform der | sha256sum`).
    pub fn of_bytes(bytes: &[u8]) -> Self {
        TokenHash(Sha256::digest(bytes).into())
    }

    /// Parses 64 hex digits (what `sha256sum` prints).
    pub fn from_hex(s: &str) -> Option<Self> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return None;
        }
        let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let mut out = [0u8; 32];
        for (i, pair) in s.chunks(2).enumerate() {
            out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
        }
        Some(TokenHash(out))
    }

    /// 64 hex digits, as `sha256sum` prints them (for the tokens file).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Equality that takes the same time wherever the hashes differ.
    fn ct_eq(&self, other: &TokenHash) -> bool {
        let diff = self.0.iter().zip(other.0.iter()).fold(0u8, |d, (a, b)| d | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// A source's credential: the source ids it may report as and the projects
/// it may report for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestCredential {
    /// Shown in logs and metrics (never the token).
    pub name: String,
    #[serde(rename = "sha256", deserialize_with = "hash")]
    pub hash: TokenHash,
    pub sources: Vec<IdPattern>,
    pub projects: Vec<IdPattern>,
}

impl IngestCredential {
    /// Whether it may report as `source_id`.
    pub fn may_use_source(&self, source_id: &str) -> bool {
        self.sources.iter().any(|p| p.matches(source_id))
    }

    /// Whether it may report usage of `project_id`.
    pub fn may_report_for(&self, project_id: &str) -> bool {
        self.projects.iter().any(|p| p.matches(project_id))
    }
}

/// An API client's credential and its scopes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiCredential {
    pub name: String,
    #[serde(rename = "sha256", deserialize_with = "hash")]
    pub hash: TokenHash,
    pub scopes: Vec<Scope>,
}

impl ApiCredential {
    /// Whether it holds `scope` (`manage` includes `read`).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| *s == scope || *s == Scope::Manage)
    }
}

fn hash<'de, D: serde::Deserializer<'de>>(d: D) -> Result<TokenHash, D::Error> {
    let s = String::deserialize(d)?;
    TokenHash::from_hex(&s).ok_or_else(|| {
        serde::de::Error::custom("sha256 must be 64 hex digits: the SHA-256 of the token, as `sha256sum` prints it")
    })
}

/// Every credential: the tokens file (`[[ingest]]` and `[[api]]` entries).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[serde(default)]
    pub ingest: Vec<IngestCredential>,
    #[serde(default)]
    pub api: Vec<ApiCredential>,
}

/// Why a credential table is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("two credentials are named {0:?}")]
    DuplicateName(String),
    #[error("credential {0:?}: two credentials have the same token")]
    DuplicateToken(String),
    #[error("credential {0:?}: {1} is empty; it would match nothing")]
    Empty(String, &'static str),
}

impl Credentials {
    /// Checks names and tokens are unique and no list is empty.
    pub fn check(&self) -> Result<(), CredentialsError> {
        let entries = self
            .ingest
            .iter()
            .map(|c| {
                (
                    &c.name,
                    &c.hash,
                    c.sources.is_empty().then_some("sources").or(c.projects.is_empty().then_some("projects")),
                )
            })
            .chain(self.api.iter().map(|c| (&c.name, &c.hash, c.scopes.is_empty().then_some("scopes"))));
        let mut seen: Vec<(&String, &TokenHash)> = Vec::new();
        for (name, hash, empty) in entries {
            if let Some(field) = empty {
                return Err(CredentialsError::Empty(name.clone(), field));
            }
            if seen.iter().any(|(n, _)| *n == name) {
                return Err(CredentialsError::DuplicateName(name.clone()));
            }
            if seen.iter().any(|(_, h)| *h == hash) {
                return Err(CredentialsError::DuplicateToken(name.clone()));
            }
            seen.push((name, hash));
        }
        Ok(())
    }

    /// The ingest credential of `token`, if any.
    pub fn ingest(&self, token: &str) -> Option<&IngestCredential> {
        find(&self.ingest, |c| &c.hash, TokenHash::of(token))
    }

    /// The ingest credential whose `sha256` is the fingerprint of a client
    /// certificate (DER), if any (mTLS).
    pub fn ingest_by_certificate(&self, der: &[u8]) -> Option<&IngestCredential> {
        find(&self.ingest, |c| &c.hash, TokenHash::of_bytes(der))
    }

    /// The API credential of `token`, if any.
    pub fn api(&self, token: &str) -> Option<&ApiCredential> {
        find(&self.api, |c| &c.hash, TokenHash::of(token))
    }
}

/// Compares the presented hash with every entry (no early exit).
fn find<T>(entries: &[T], hash_of: impl Fn(&T) -> &TokenHash, presented: TokenHash) -> Option<&T> {
    let mut found = None;
    for e in entries {
        if hash_of(e).ct_eq(&presented) {
            found = Some(e);
        }
    }
    found
}

/// Why a request carries no usable token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: send the header `authorization: Bearer <token>`")]
    Missing,
    #[error("the authorization header is not `Bearer <token>`")]
    Malformed,
    #[error("unknown or revoked token")]
    Unknown,
}

/// The token of an `authorization` header value.
pub fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(token: &str) -> String {
        TokenHash::of(token).to_hex()
    }

    fn table() -> Credentials {
        let json = serde_json::json!({
            "ingest": [
                {"name": "eu", "sha256": hex("tok-eu"), "sources": ["compute-eu-*"], "projects": ["acme-*", "solo"]},
                {"name": "any", "sha256": hex("tok-any"), "sources": ["*"], "projects": ["*"]},
            ],
            "api": [
                {"name": "billing", "sha256": hex("tok-read"), "scopes": ["read"]},
                {"name": "ops", "sha256": hex("tok-ops"), "scopes": ["manage"]},
            ],
        });
        let c: Credentials = serde_json::from_value(json).unwrap();
        c.check().unwrap();
        c
    }

    #[test]
    fn finds_credentials_by_token_only() {
        let t = table();
        assert_eq!(t.ingest("tok-eu").unwrap().name, "eu");
        assert!(t.ingest("tok-read").is_none(), "an api token is not an ingest token");
        assert!(t.ingest("tok-e").is_none());
        assert!(t.api("tok-eu").is_none());
        assert_eq!(t.api("tok-ops").unwrap().name, "ops");
    }

    #[test]
    fn bindings_and_scopes() {
        let t = table();
        let eu = t.ingest("tok-eu").unwrap();
        assert!(eu.may_use_source("compute-eu-7"));
        assert!(!eu.may_use_source("compute-us-7"));
        assert!(eu.may_report_for("acme-db1") && eu.may_report_for("solo"));
        assert!(!eu.may_report_for("solo2") && !eu.may_report_for("acm"));
        assert!(t.ingest("tok-any").unwrap().may_report_for("x"));
        let (read, ops) = (t.api("tok-read").unwrap(), t.api("tok-ops").unwrap());
        assert!(read.allows(Scope::Read) && !read.allows(Scope::Manage));
        assert!(ops.allows(Scope::Read) && ops.allows(Scope::Manage));
    }

    #[test]
    fn refuses_bad_tables() {
        let bad = |json: serde_json::Value| serde_json::from_value::<Credentials>(json).map(|c| c.check());
        let short = serde_json::json!({"api": [{"name": "a", "sha256": "abc", "scopes": ["read"]}]});
        assert!(bad(short).unwrap_err().to_string().contains("64 hex digits"));
        let pattern =
            serde_json::json!({"ingest": [{"name": "a", "sha256": hex("t"), "sources": ["a b"], "projects": ["*"]}]});
        assert!(bad(pattern).unwrap_err().to_string().contains("pattern \"a b\""));
        let scope = serde_json::json!({"api": [{"name": "a", "sha256": hex("t"), "scopes": ["admin"]}]});
        assert!(bad(scope).is_err());
        let dup = serde_json::json!({"api": [
            {"name": "a", "sha256": hex("t"), "scopes": ["read"]},
            {"name": "b", "sha256": hex("t"), "scopes": ["read"]},
        ]});
        assert_eq!(bad(dup).unwrap().unwrap_err(), CredentialsError::DuplicateToken("b".into()));
        let empty =
            serde_json::json!({"ingest": [{"name": "a", "sha256": hex("t"), "sources": ["*"], "projects": []}]});
        assert_eq!(bad(empty).unwrap().unwrap_err(), CredentialsError::Empty("a".into(), "projects"));
    }

    #[test]
    fn parses_bearer_headers() {
        assert_eq!(bearer(Some("Bearer abc")), Ok("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Ok("abc"));
        assert_eq!(bearer(None), Err(AuthError::Missing));
        assert_eq!(bearer(Some("Basic abc")), Err(AuthError::Malformed));
        assert_eq!(bearer(Some("Bearer ")), Err(AuthError::Malformed));
        assert_eq!(bearer(Some("abc")), Err(AuthError::Malformed));
    }

    #[test]
    fn debug_output_holds_no_hash() {
        let t = table();
        let dump = format!("{t:?}");
        assert!(!dump.contains(&hex("tok-eu")) && dump.contains("TokenHash(..)"), "{dump}");
    }
}
