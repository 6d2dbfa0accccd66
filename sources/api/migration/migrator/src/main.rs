//! `migrator`: moves the settings datastore to the version the OS expects; see the library
//! documentation.

use clap::Parser;
use migrator::{Options, Outcome, Version};
use std::path::PathBuf;
use std::process::ExitCode;

/// Migrates the Ballast settings datastore forward or back to another OS version.
#[derive(Debug, Parser)]
#[command(version, about)]
#[command(group(clap::ArgGroup::new("target").required(true)
    .args(["target_version", "migrate_to_version_from_os_release"])))]
struct Args {
    /// Directory holding `current` and the `v<version>` stores (its `current` link works too).
    #[arg(long, default_value = "/var/lib/ballast/datastore")]
    datastore_path: PathBuf,
    /// Directory holding the `migrate_v<version>_<name>` programs.
    #[arg(long, visible_alias = "migration-directory")]
    migrations_dir: PathBuf,
    /// Version to migrate the store to.
    #[arg(long)]
    target_version: Option<String>,
    /// Migrate to the VERSION_ID of the running OS (read from --os-release).
    #[arg(long)]
    migrate_to_version_from_os_release: bool,
    #[arg(long, default_value = "/etc/os-release")]
    os_release: PathBuf,
    #[arg(long, default_value = "info")]
    log_level: tracing_subscriber::filter::LevelFilter,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_max_level(args.log_level)
        .with_writer(std::io::stderr)
        .init();
    let target = match &args.target_version {
        Some(text) => Version::parse(text),
        None => migrator::version_from_os_release(&args.os_release),
    };
    let result = target.and_then(|target_version| {
        migrator::run(&Options {
            datastore_path: args.datastore_path,
            migrations_dir: args.migrations_dir,
            target_version,
        })
    });
    match result {
        Ok(Outcome::AlreadyCurrent { version }) => {
            tracing::info!("datastore already at version {version}; nothing to do");
            ExitCode::SUCCESS
        }
        Ok(Outcome::Migrated {
            from,
            to,
            migrations,
            ..
        }) => {
            tracing::info!(
                "migrated datastore from {from} to {to} ({} migrations)",
                migrations.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("migrator: {e}");
            ExitCode::FAILURE
        }
    }
}
