//! `apiclient`: the operator's command-line client for the API server.  See the library's
//! documentation for the commands; this file only parses arguments, sets up logging and
//! reports the outcome.
#![forbid(unsafe_code)]

use apiclient::cli::{self, Cli};
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = cli.check() {
        Cli::command()
            .error(ErrorKind::ArgumentConflict, message)
            .exit();
    }

    // Logs go to stderr so stdout carries only the command's output.  Only our own crate logs.
    logging::Logging::new(cli.level())
        .only_crate("apiclient")
        .without_time()
        .without_target()
        .init();

    let mut stdout = std::io::stdout();
    match cli::run(cli, &mut stdout).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(apiclient::error::Error::CommandExit { code }) => ExitCode::from(code),
        Err(e) => {
            eprintln!("apiclient: {e}");
            ExitCode::FAILURE
        }
    }
}
