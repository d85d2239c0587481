//! `meterd`: every role of the metering pipeline in one binary.
//!
//! ```text
//! meterd [--config FILE] ingest|aggregate|load|enforce|api|all|migrate|config|openapi
//! ```
//! Configuration: defaults, then the TOML file, then `METER__SECTION__KEY`
//! environment variables (see deploy/local/meterd.toml for every key).

mod config;
mod roles;

/// mimalloc instead of glibc's allocator: ingest spent ~19 % of its CPU in
/// glibc malloc/free (perf, BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The metering pipeline.
#[derive(Debug, Parser)]
#[command(name = "meterd", version, about)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, short, env = "METER_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Clone, Copy, Subcommand, PartialEq, Eq)]
enum Role {
    /// gRPC ingest: compute nodes -> Kafka.
    Ingest,
    /// Aggregator: usage events -> totals and hourly rows (Kafka).
    Aggregate,
    /// Load: hourly rows (Kafka) -> ClickHouse.
    Load,
    /// Enforcer: totals + quotas -> suspend/resume calls and alert webhooks.
    Enforce,
    /// HTTP API: quotas, plans, project status, CheckQuota, webhooks.
    Api,
    /// Every role in one process (development, small deployments).
    All,
    /// Create the Kafka topics and apply the ClickHouse migrations, then exit.
    Migrate,
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
    /// Print the API's OpenAPI 3.1 document (as served at /v1/openapi.json) and exit.
    Openapi,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.role == Role::Openapi {
        println!("{}", meter_api::openapi_document());
        return ExitCode::SUCCESS;
    }
    meter_runtime::init_logging();
    // Install the recorder before any role records a metric.
    meter_runtime::metrics_handle();
    let cfg = match config::Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("meterd: configuration error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if cli.role == Role::Config {
        println!("{cfg:#?}");
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meterd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(roles::run(cli.role, cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "meterd.failed");
            eprintln!("meterd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
