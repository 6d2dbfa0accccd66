//! `signpost`: see the library's documentation for the commands. This file parses arguments,
//! sets up logging and prints the outcome.

use clap::{Parser, Subcommand, ValueEnum};
use disk_layout::BootSet;
use signpost::{Operation, Signpost};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "signpost",
    about = "Show and change which partition set (A or B) of a Ballast disk boots"
)]
struct Cli {
    /// The disk (device or image file). Without it, the boot disk and running set are found
    /// from the kernel command line and /sys/class/block.
    #[arg(long, requires = "active", global = true)]
    disk: Option<PathBuf>,
    /// The running set, with --disk.
    #[arg(long, value_enum, requires = "disk", global = true)]
    active: Option<Set>,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, default_value = "info", global = true)]
    log_level: tracing::Level,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Set {
    #[value(name = "A", alias = "a")]
    A,
    #[value(name = "B", alias = "b")]
    B,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show both sets, the next boot and the GRUB environment.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Mark the running set as booted successfully.
    MarkSuccessfulBoot,
    /// Make the inactive set unbootable, before writing an update to it.
    ClearInactive,
    /// Give the inactive set one try, after an update was written to it.
    MarkInactiveValid,
    /// Boot the inactive set next, once (it must have been marked valid).
    UpgradeToInactive,
    /// Undo upgrade-to-inactive: keep booting the running set.
    CancelUpgrade,
    /// Boot the inactive set next (it must be bootable).
    RollbackToInactive,
    /// Record a try GRUB used into the GPT and derive the GRUB environment again.
    Reconcile,
    /// Print true if a boot from this disk was ever marked successful, else false.
    HasBootEverSucceeded,
}

fn run(cli: Cli) -> signpost::Result<()> {
    let signpost = match (cli.disk, cli.active) {
        (Some(disk), Some(active)) => Signpost::new(
            disk,
            match active {
                Set::A => BootSet::A,
                Set::B => BootSet::B,
            },
        ),
        _ => Signpost::on_this_node()?,
    };
    let operation = match cli.command {
        Command::Status { json } => {
            let status = signpost.status()?;
            if json {
                println!("{}", status.to_json()?);
            } else {
                println!("{status}");
            }
            return Ok(());
        }
        Command::HasBootEverSucceeded => {
            println!("{}", signpost.has_boot_ever_succeeded()?);
            return Ok(());
        }
        Command::MarkSuccessfulBoot => Operation::MarkSuccessfulBoot,
        Command::ClearInactive => Operation::ClearInactive,
        Command::MarkInactiveValid => Operation::MarkInactiveValid,
        Command::UpgradeToInactive => Operation::UpgradeToInactive,
        Command::CancelUpgrade => Operation::CancelUpgrade,
        Command::RollbackToInactive => Operation::RollbackToInactive,
        Command::Reconcile => Operation::Reconcile,
    };
    let status = signpost.apply(operation)?;
    tracing::info!(
        "{operation} done on {}: set {} boots next",
        status.disk.display(),
        status.next
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(format!("signpost={}", cli.log_level)))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signpost: {e}");
            ExitCode::FAILURE
        }
    }
}
