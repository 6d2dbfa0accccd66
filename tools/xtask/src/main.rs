//! `cargo xtask`: the build host's entry point. Every Makefile.toml task calls one of these
//! subcommands, so `cargo make X` and `cargo xtask X` do the same thing.

mod bench_api;
mod host;
mod test;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Build, run, test and measure Ballast")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every check and test: formatting, clippy, unit, integration and end-to-end tests.
    Test(test::TestArgs),
    /// Print performance figures.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
    /// Build an image and boot it in QEMU (not available yet).
    Run,
    /// Build a variant's image (not available yet).
    Build,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// API server: GET /settings throughput and commit_and_apply latency.
    Api(bench_api::BenchApiArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Test(args) => test::run(&args),
        Command::Bench { what } => match what {
            Bench::Api(args) => bench_api::run(&args),
        },
        Command::Run | Command::Build => Err(anyhow::anyhow!(
            "building and booting images is not available yet (see README, 'Status'); \
             `cargo xtask test` and `cargo xtask bench api` work today"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
