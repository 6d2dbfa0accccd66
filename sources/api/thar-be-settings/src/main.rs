//! `thar-be-settings`: renders configuration files from settings; see the library documentation.
#![forbid(unsafe_code)]

use clap::Parser;
use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = thar_be_settings::Args::parse();
    // The journal stamps each line itself.
    logging::Logging::new(args.log_level).without_time().init();
    match thar_be_settings::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
