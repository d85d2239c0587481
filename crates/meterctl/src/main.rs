//! `meterctl`: the operator CLI. See `meterctl --help`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let mut out = std::io::stdout().lock();
    match meterctl::run(std::env::args_os(), &mut out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meterctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
