//! `thar-be-settings`: renders configuration files from settings; see the library documentation.

use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = thar_be_settings::Args::parse();
    tracing_subscriber::fmt()
        .with_max_level(args.log_level)
        .with_writer(std::io::stderr)
        // The journal stamps each line itself, and colors only help on a terminal.
        .without_time()
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match thar_be_settings::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
