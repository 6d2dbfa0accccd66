//! `bork`: setting generators; see the library documentation.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Generates settings values for sundog.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a random update-wave seed (a JSON integer from 0 to 2047).
    Seed,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Seed => bork::write_seed(&mut std::io::stdout().lock()),
    };
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bork: {e}");
            ExitCode::FAILURE
        }
    }
}
