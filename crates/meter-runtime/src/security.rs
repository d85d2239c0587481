//! The `[security]` section, and the credentials of a role: read from the
//! tokens file at start (an error stops the role) and re-read whenever the
//! file changes, so tokens are added and revoked without a restart (a file
//! that no longer parses is logged and the previous table kept).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use meter_core::auth::Credentials;
use meter_core::target::AddressClass;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Authentication and outbound-address policy, shared by every role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// The tokens file (`[[ingest]]` and `[[api]]` entries, SHA-256 of each
    /// token). Absent: ingest and the api do not authenticate.
    pub tokens_file: Option<PathBuf>,
    /// How often the tokens file is checked for changes.
    pub tokens_reload_ms: u64,
    /// Serve ingest and the api without authentication on an address that is
    /// not loopback. Off: such a role refuses to start without `tokens_file`.
    pub allow_unauthenticated: bool,
    /// Address classes webhooks may go to besides public addresses:
    /// "loopback", "private", "link-local", "metadata", "unroutable".
    pub webhook_allowed_targets: Vec<AddressClass>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            tokens_file: None,
            tokens_reload_ms: 2000,
            allow_unauthenticated: false,
            webhook_allowed_targets: Vec::new(),
        }
    }
}

/// A role's view of the credentials; `open` when authentication is off.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    table: Option<Arc<RwLock<Arc<Credentials>>>>,
}

/// Reload outcomes (`ok`, `error`).
const RELOADS: &str = "meter_auth_reloads_total";
/// Credentials loaded, by kind (`ingest`, `api`).
const CREDENTIALS: &str = "meter_auth_credentials";

/// Refuses to serve `role` on a non-loopback `listen` address without a
/// tokens file, unless `security.allow_unauthenticated` says so. Returns
/// whether `listen` is a loopback address.
pub fn check_exposure(cfg: &SecurityConfig, role: &str, listen: &str) -> anyhow::Result<bool> {
    let loopback = listen.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_loopback());
    anyhow::ensure!(
        loopback || cfg.tokens_file.is_some() || cfg.allow_unauthenticated,
        "{role} listens on {listen} without authentication: set security.tokens_file, or \
         security.allow_unauthenticated = true to accept that"
    );
    Ok(loopback)
}

impl Auth {
    /// No authentication.
    pub fn open() -> Self {
        Auth { table: None }
    }

    /// A fixed table (tests).
    pub fn fixed(c: Credentials) -> Self {
        Auth { table: Some(Arc::new(RwLock::new(Arc::new(c)))) }
    }

    /// The current table; `None` when authentication is off.
    pub fn current(&self) -> Option<Arc<Credentials>> {
        self.table.as_ref().map(|t| t.read().expect("credentials lock").clone())
    }

    /// The credentials of `role` listening on `listen`: loaded from
    /// `cfg.tokens_file` and watched until `shutdown`; open when there is no
    /// file and the address is loopback (or unauthenticated is allowed).
    pub fn start(cfg: &SecurityConfig, role: &str, listen: &str, shutdown: CancellationToken) -> anyhow::Result<Auth> {
        metrics::describe_counter!(RELOADS, "Re-reads of the tokens file by outcome (`ok`, `error`).");
        metrics::describe_gauge!(CREDENTIALS, "Credentials loaded from the tokens file, by kind.");
        let Some(path) = cfg.tokens_file.clone() else {
            // On loopback that is the intended local setup; beyond it an
            // operator chose allow_unauthenticated and should know.
            if check_exposure(cfg, role, listen)? {
                tracing::info!(role, listen, "security.unauthenticated");
            } else {
                tracing::warn!(role, listen, "security.unauthenticated");
            }
            return Ok(Auth::open());
        };
        let (creds, mut stamp) = load(&path)?;
        tracing::info!(role, file = %path.display(), ingest = creds.ingest.len(), api = creds.api.len(), "security.tokens_loaded");
        let auth = Auth::fixed(creds);
        let table = auth.table.clone().expect("fixed");
        let every = Duration::from_millis(cfg.tokens_reload_ms.max(100));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                if modified(&path) == stamp {
                    continue;
                }
                match load(&path) {
                    Ok((c, s)) => {
                        tracing::info!(file = %path.display(), ingest = c.ingest.len(), api = c.api.len(), "security.tokens_reloaded");
                        metrics::counter!(RELOADS, "outcome" => "ok").increment(1);
                        *table.write().expect("credentials lock") = Arc::new(c);
                        stamp = s;
                    }
                    Err(e) => {
                        tracing::error!(error = format!("{e:#}"), "security.tokens_reload_failed_keeping_previous");
                        metrics::counter!(RELOADS, "outcome" => "error").increment(1);
                        stamp = modified(&path);
                    }
                }
            }
        });
        Ok(auth)
    }
}

fn modified(path: &Path) -> Option<(SystemTime, u64)> {
    std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())))
}

/// Reads and checks a tokens file (TOML).
fn load(path: &Path) -> anyhow::Result<(Credentials, Option<(SystemTime, u64)>)> {
    let stamp = modified(path);
    let text = std::fs::read_to_string(path).with_context(|| format!("reading tokens file {}", path.display()))?;
    let creds: Credentials =
        toml::from_str(&text).with_context(|| format!("parsing tokens file {}", path.display()))?;
    creds.check().with_context(|| format!("tokens file {}", path.display()))?;
    metrics::gauge!(CREDENTIALS, "kind" => "ingest").set(creds.ingest.len() as f64);
    metrics::gauge!(CREDENTIALS, "kind" => "api").set(creds.api.len() as f64);
    Ok((creds, stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_serve_openly_beyond_loopback() {
        let cfg = SecurityConfig::default();
        let err = Auth::start(&cfg, "ingest", "0.0.0.0:50051", CancellationToken::new()).unwrap_err();
        assert!(err.to_string().contains("security.tokens_file"), "{err}");
        assert!(Auth::start(&cfg, "ingest", "127.0.0.1:50051", CancellationToken::new()).unwrap().current().is_none());
        let allowed = SecurityConfig { allow_unauthenticated: true, ..cfg };
        assert!(Auth::start(&allowed, "api", "10.0.0.1:80", CancellationToken::new()).is_ok());
    }

    #[tokio::test]
    async fn reloads_the_file_and_keeps_the_last_good_table() {
        let dir = std::env::temp_dir().join(format!("meter-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.toml");
        let entry = |name: &str, token: &str| {
            let hex = meter_core::auth::TokenHash::of(token).to_hex();
            format!("[[api]]\nname = \"{name}\"\nsha256 = \"{hex}\"\nscopes = [\"read\"]\n")
        };
        std::fs::write(&path, entry("a", "tok-a")).unwrap();
        let cfg =
            SecurityConfig { tokens_file: Some(path.clone()), tokens_reload_ms: 100, ..SecurityConfig::default() };
        let stop = CancellationToken::new();
        let auth = Auth::start(&cfg, "api", "0.0.0.0:1", stop.clone()).unwrap();
        assert!(auth.current().unwrap().api("tok-a").is_some());
        let wait_for = |want: bool, token: &'static str| {
            let auth = auth.clone();
            async move {
                for _ in 0..50 {
                    if auth.current().unwrap().api(token).is_some() == want {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                false
            }
        };
        std::fs::write(&path, entry("b", "tok-b-longer")).unwrap();
        assert!(wait_for(true, "tok-b-longer").await, "added token never accepted");
        assert!(wait_for(false, "tok-a").await, "revoked token still accepted");
        std::fs::write(&path, "[[api]]\nname = 1\n").unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(auth.current().unwrap().api("tok-b-longer").is_some(), "a broken file must keep the previous table");
        stop.cancel();
        std::fs::remove_dir_all(&dir).ok();
    }
}
