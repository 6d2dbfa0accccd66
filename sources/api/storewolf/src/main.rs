//! `storewolf`: seeds the datastore with defaults; see the library documentation.
#![forbid(unsafe_code)]

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Creates and seeds the Ballast datastore with default settings and metadata.
#[derive(Debug, Parser)]
// `--version` names the datastore version to create, so clap must not add its own flag of
// that name (the two clash, and debug builds refuse to start).
#[command(version, about, disable_version_flag = true)]
struct Args {
    /// Directory that holds the versioned datastore and its `current` link.
    #[arg(long, default_value = constants::DATASTORE_DIR)]
    datastore_path: PathBuf,
    /// Datastore version to create when the store does not exist yet.
    #[arg(long, default_value = "0.1")]
    version: String,
    /// Extra defaults files (TOML), merged after the shared defaults in the order given.
    #[arg(long = "defaults")]
    defaults: Vec<PathBuf>,
    /// Also commit the launch transaction.
    #[arg(long)]
    commit: bool,
    #[arg(long, default_value = "info")]
    log_level: logging::LevelFilter,
}

fn main() -> ExitCode {
    let args = Args::parse();
    logging::init(args.log_level);
    let result = storewolf::load_defaults(&args.defaults).and_then(|defaults| {
        storewolf::run(&args.datastore_path, &args.version, &defaults, args.commit)
    });
    match result {
        Ok(seeded) => {
            tracing::info!(
                "seeded {} settings, dropped {} stale transactions",
                seeded.settings.len(),
                seeded.dropped_transactions.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("storewolf: {e}");
            ExitCode::FAILURE
        }
    }
}
