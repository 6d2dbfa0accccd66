//! Manual front end to the `debian` crate: make a lock, fetch what it pins, unpack a package.
//!
//! ```text
//! cargo run -p debian --example debian -- lock --packages systemd,libc6 --exclude debconf,perl-base --out packages/debian.lock
//! cargo run -p debian --example debian -- fetch --lock packages/debian.lock --cache build/cache/debian
//! cargo run -p debian --example debian -- extract DEB DEST
//! ```
//! Set `RUST_LOG=debian=debug` for more detail; `RUST_LOG=debian=warn` hides the dependency tree.

use clap::{Parser, Subcommand};
use debian::{extract, fetch, resolve, sources_or_defaults, Indexes, Lock};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Debian archive client for the Ballast image build")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Resolve packages against the signed archive indexes and write a lock file.
    Lock {
        /// Packages to install, comma-separated (their dependencies are added).
        #[arg(long, value_delimiter = ',', required = true)]
        packages: Vec<String>,
        /// Packages to leave out of the dependency closure, comma-separated.
        #[arg(long, value_delimiter = ',')]
        exclude: Vec<String>,
        /// Where to write the lock.
        #[arg(long, default_value = debian::LOCK_PATH)]
        out: PathBuf,
        /// Cache directory for indexes.
        #[arg(long, default_value = "build/cache/debian")]
        cache: PathBuf,
        /// apt deb822 sources file naming the archives.
        #[arg(long, default_value = debian::sources::HOST_SOURCES_FILE)]
        sources: PathBuf,
    },
    /// Download (or find in the cache) every package a lock pins, checking size and sha256.
    Fetch {
        #[arg(long, default_value = debian::LOCK_PATH)]
        lock: PathBuf,
        #[arg(long, default_value = "build/cache/debian")]
        cache: PathBuf,
    },
    /// Unpack the files of a .deb into a directory (no root needed; owners are not applied).
    Extract { deb: PathBuf, dest: PathBuf },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "debian=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), debian::Error> {
    match command {
        Command::Lock {
            packages,
            exclude,
            out,
            cache,
            sources,
        } => {
            let indexes = Indexes::load(&sources_or_defaults(&sources)?, &cache)?;
            let lock = resolve(&packages, &indexes, &exclude)?;
            if let Ok(old) = Lock::load(&out) {
                for change in old.diff(&lock) {
                    println!("{change}");
                }
            }
            lock.save(&out)?;
            println!(
                "{}: {} packages, {:.1} MiB",
                out.display(),
                lock.packages.len(),
                lock.total_size() as f64 / (1024.0 * 1024.0)
            );
        }
        Command::Fetch { lock, cache } => {
            let lock = Lock::load(&lock)?;
            for path in fetch(&lock, &cache)? {
                println!("{}", path.display());
            }
        }
        Command::Extract { deb, dest } => {
            let written = extract(&deb, &dest)?;
            println!("{} entries written to {}", written.len(), dest.display());
        }
    }
    Ok(())
}
