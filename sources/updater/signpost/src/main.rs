//! `signpost`: see the library's documentation for the commands. This file parses arguments,
//! sets up logging and prints the outcome.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand, ValueEnum};
use disk_layout::BootSet;
use signpost::deadline::{self, Outcome};
use signpost::{Operation, Signpost};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// Wait until the running set is marked successful; if that does not happen within
    /// ballast.boot-deadline= seconds of boot (default 300), reboot so the other set boots.
    BootDeadline {
        /// Deadline in seconds since boot, instead of the kernel command line's.
        #[arg(long)]
        seconds: Option<u64>,
        /// Command that reboots the node.
        #[arg(long, default_value = "systemctl reboot")]
        reboot_command: String,
    },
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
        Command::BootDeadline {
            seconds,
            reboot_command,
        } => return boot_deadline(&signpost, seconds, &reboot_command),
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

/// The `boot-deadline` command: watch, and reboot when the deadline passes.
fn boot_deadline(
    signpost: &Signpost,
    seconds: Option<u64>,
    reboot_command: &str,
) -> signpost::Result<()> {
    let deadline = match seconds {
        Some(0) => None,
        Some(s) => Some(Duration::from_secs(s)),
        None => {
            let cmdline = std::fs::read_to_string(signpost::CMDLINE_PATH).unwrap_or_default();
            deadline::from_cmdline(&cmdline).unwrap_or_else(|warning| {
                tracing::warn!("{warning}");
                Some(deadline::DEFAULT_DEADLINE)
            })
        }
    };
    let outcome = deadline::watch(
        signpost,
        deadline,
        Duration::from_secs(2),
        uptime,
        std::thread::sleep,
    )?;
    match outcome {
        Outcome::AlreadySuccessful => {
            tracing::info!(
                "set {} booted successfully before; no deadline",
                signpost.active()
            )
        }
        Outcome::MarkedSuccessful => {
            tracing::info!("set {} was marked successful in time", signpost.active())
        }
        Outcome::Disabled => tracing::warn!(
            "set {} is not marked successful, but {}=0 turned the deadline off",
            signpost.active(),
            deadline::CMDLINE_PARAM
        ),
        Outcome::Expired => {
            eprintln!(
                "signpost: set {} was not marked successful within {} s of boot; rebooting, so \
                 that the previous set boots (this image's one try is spent)",
                signpost.active(),
                deadline.unwrap_or_default().as_secs()
            );
            reboot(reboot_command);
        }
    }
    Ok(())
}

/// Time since the kernel started, from /proc/uptime (suspend included). Unreadable: the
/// deadline counts as not reached, so a broken /proc never causes a reset.
fn uptime() -> Duration {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or_default()
}

/// Asks systemd for a clean reboot; if that cannot be run or does not happen within a minute,
/// flushes the filesystems and resets directly.
fn reboot(command: &str) {
    let mut words = command.split_whitespace();
    if let Some(program) = words.next() {
        match std::process::Command::new(program).args(words).status() {
            Ok(status) if status.success() => {
                std::thread::sleep(Duration::from_secs(60));
                eprintln!("signpost: '{command}' did not reboot within 60 s; resetting");
            }
            Ok(status) => eprintln!("signpost: '{command}' failed ({status}); resetting"),
            Err(e) => eprintln!("signpost: cannot run '{command}': {e}; resetting"),
        }
    }
    nix::unistd::sync();
    // Returns only on failure.
    let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    eprintln!("signpost: reset failed: {e}");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::Logging::new(cli.log_level.into())
        .only_crate("signpost")
        .without_time()
        .without_target()
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signpost: {e}");
            ExitCode::FAILURE
        }
    }
}
