//! The command line, parsed with clap. It lives in the library so that tests drive the same
//! surface as the binary.

use crate::config::Paths;
use crate::state::set_letter;
use clap::{Parser, Subcommand};
use disk_layout::BootSet;
use std::path::PathBuf;
use update_metadata::Version;

/// Where the updater keeps its state and tough's metadata cache.
pub const CACHE_DIR: &str = "/var/lib/updog";
/// The command `--reboot` runs.
pub const REBOOT_COMMAND: &str = "systemctl reboot";

/// Finds, downloads and applies OS updates from the signed update repository.
#[derive(Debug, Parser)]
#[command(name = "updog", version)]
pub struct Args {
    /// Updater configuration (rendered from settings.updates).
    #[arg(long, global = true, default_value = constants::UPDOG_CONFIG)]
    pub config: PathBuf,
    /// What is running: VARIANT_ID, ARCH, VERSION_ID, BUILD_ID.
    #[arg(long, global = true, default_value = constants::OS_RELEASE)]
    pub os_release: PathBuf,
    /// The trusted TUF root.json.
    #[arg(long, global = true, default_value = constants::TRUSTED_ROOT_JSON)]
    pub root_json: PathBuf,
    /// State (sets.json) and tough's metadata cache.
    #[arg(long, global = true, default_value = CACHE_DIR)]
    pub cache_dir: PathBuf,
    /// Where update-image saves the signed metadata and migrations for the migrator.
    #[arg(long, global = true, default_value = constants::MIGRATIONS_DIR)]
    pub migrations_dir: PathBuf,
    /// Where the boot's health gate records the checks that kept a boot from being marked
    /// successful; a failed update of that version reports them.
    #[arg(long, global = true, default_value = constants::HEALTH_BOOT_FAILURE)]
    pub health_failure_file: PathBuf,
    /// The disk (device or image file); by default the boot disk of this node.
    #[arg(long, global = true, requires = "active")]
    pub disk: Option<PathBuf>,
    /// The running set on --disk.
    #[arg(long, global = true, requires = "disk", value_parser = parse_set)]
    pub active: Option<BootSet>,
    /// Print JSON instead of text.
    #[arg(long, short = 'j', global = true)]
    pub json: bool,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    /// The command `--reboot` runs, split at spaces.
    #[arg(long, global = true, default_value = REBOOT_COMMAND)]
    pub reboot_command: String,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the update this node would take, and the allowed ones.
    CheckUpdate {
        /// List older allowed versions too.
        #[arg(long, short = 'a')]
        all: bool,
        /// Do not wait for this node's wave.
        #[arg(long)]
        ignore_waves: bool,
    },
    /// Write an update to the inactive partition set (exit status 3: nothing to do).
    UpdateImage {
        #[command(flatten)]
        image: ImageArgs,
        /// Rewrite this JSON file with the progress about every half second.
        #[arg(long)]
        progress_file: Option<PathBuf>,
    },
    /// Boot the inactive set next, once (it must hold a complete update).
    UpdateApply {
        /// Reboot afterwards.
        #[arg(long, short = 'r')]
        reboot: bool,
    },
    /// Undo update-apply: boot the running set next.
    UpdateRevert,
    /// update-image, then update-apply (exit status 3: nothing to do).
    Update {
        #[command(flatten)]
        image: ImageArgs,
        /// Reboot afterwards.
        #[arg(long, short = 'r')]
        reboot: bool,
    },
    /// Show the running image, both sets and a failed update.
    Status,
}

/// Which update to write.
#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {
    /// Exactly this version (of this node's variant and arch).
    #[arg(long, short = 'i')]
    pub image: Option<Version>,
    /// Do not wait for this node's wave.
    #[arg(long)]
    pub ignore_waves: bool,
    /// Allow a version older than the running one.
    #[arg(long)]
    pub allow_downgrade: bool,
}

fn parse_set(text: &str) -> Result<BootSet, String> {
    set_letter::parse(text).ok_or_else(|| format!("{text:?} is not A or B"))
}

impl Args {
    /// The file paths given (or defaulted).
    pub fn paths(&self) -> Paths {
        Paths {
            config: self.config.clone(),
            os_release: self.os_release.clone(),
            root_json: self.root_json.clone(),
            cache_dir: self.cache_dir.clone(),
            migrations_dir: self.migrations_dir.clone(),
            health_failure: self.health_failure_file.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let args = Args::try_parse_from([
            "updog",
            "--disk",
            "disk.img",
            "--active",
            "a",
            "update-image",
            "--image",
            "1.2.0",
            "--allow-downgrade",
            "--json",
        ])
        .unwrap();
        assert_eq!(args.active, Some(BootSet::A));
        assert!(args.json, "global options go anywhere");
        match args.command {
            Command::UpdateImage { image, .. } => {
                assert_eq!(image.image, Some(Version::new(1, 2, 0)));
                assert!(image.allow_downgrade && !image.ignore_waves);
            }
            other => panic!("{other:?}"),
        }
        assert!(Args::try_parse_from(["updog", "--disk", "d", "status"]).is_err());
        assert!(Args::try_parse_from(["updog", "--disk", "d", "--active", "C", "status"]).is_err());
        let args = Args::try_parse_from(["updog", "check-update", "-a"]).unwrap();
        assert_eq!(args.config, PathBuf::from(constants::UPDOG_CONFIG));
        assert!(matches!(
            args.command,
            Command::CheckUpdate { all: true, .. }
        ));
    }
}
