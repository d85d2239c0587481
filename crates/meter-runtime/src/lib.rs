//! What every role shares: layered configuration, telemetry (logs and
//! Prometheus metrics), the admin HTTP server (`/metrics`, `/livez`,
//! `/readyz`), and shutdown on signals.

mod admin;
mod clock;
mod config;
mod health;
mod security;
mod shutdown;
mod targets;
mod telemetry;
mod tls;

pub use admin::{serve_admin, AdminConfig};
pub use clock::{now_ms, Clock, ShiftedClock, SystemClock};
pub use config::load_config;
pub use health::Health;
pub use security::{check_exposure, Auth, SecurityConfig};
pub use shutdown::{cancel_on_signal, cancel_when_done};
pub use targets::{check_webhook_url, GuardedResolver};
pub use telemetry::{init_logging, init_logging_or, metrics_handle};
pub use tls::{TlsFiles, TlsListener};
