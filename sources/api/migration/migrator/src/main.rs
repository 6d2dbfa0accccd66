//! `migrator`: moves the settings datastore to the version the OS expects; see the library
//! documentation.

use clap::Parser;
use migrator::{MigrationSource, Options, Outcome, Version};
use std::path::PathBuf;
use std::process::ExitCode;

/// Migrates the Ballast settings datastore forward or back to another OS version, running only
/// migrations verified against the signed update metadata.
#[derive(Debug, Parser)]
#[command(version, about)]
#[command(group(clap::ArgGroup::new("target").required(true)
    .args(["target_version", "migrate_to_version_from_os_release"])))]
struct Args {
    /// Directory holding `current` and the `v<version>` stores (its `current` link works too).
    #[arg(long, default_value = constants::DATASTORE_DIR)]
    datastore_path: PathBuf,
    /// The signed mirror of the update repository saved by the updater (metadata/ and
    /// targets/).
    #[arg(long, default_value = constants::MIGRATIONS_DIR)]
    repo_dir: PathBuf,
    /// The root of trust the mirror is verified against.
    #[arg(long, visible_alias = "root-path", default_value = constants::TRUSTED_ROOT_JSON)]
    root_json: PathBuf,
    /// DEVELOPMENT ONLY: run the `migrate_v<version>_<name>` programs of this plain directory
    /// without verifying anything. Images never pass it.
    #[arg(long, conflicts_with_all = ["repo_dir", "root_json"])]
    unsigned_migrations_dir: Option<PathBuf>,
    /// Version to migrate the store to.
    #[arg(long)]
    target_version: Option<String>,
    /// Migrate to the VERSION_ID of the running OS (read from --os-release).
    #[arg(long)]
    migrate_to_version_from_os_release: bool,
    #[arg(long, default_value = constants::OS_RELEASE)]
    os_release: PathBuf,
    #[arg(long, default_value = "info")]
    log_level: logging::LevelFilter,
}

fn main() -> ExitCode {
    let args = Args::parse();
    logging::init(args.log_level);
    let target = match &args.target_version {
        Some(text) => Version::parse(text),
        None => migrator::version_from_os_release(&args.os_release),
    };
    let source = match args.unsigned_migrations_dir {
        Some(dir) => MigrationSource::UnsignedDir(dir),
        None => MigrationSource::Signed {
            repo_dir: args.repo_dir,
            root_json: args.root_json,
        },
    };
    let result = target.and_then(|target_version| {
        migrator::run(&Options {
            datastore_path: args.datastore_path,
            source,
            target_version,
        })
    });
    match result {
        Ok(Outcome::NoDatastore { .. }) | Ok(Outcome::AlreadyCurrent { .. }) => ExitCode::SUCCESS,
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
            eprintln!("{}", migrator::console_line(&e));
            ExitCode::FAILURE
        }
    }
}
