//! The contract with the updater program (`updog`): the arguments each action passes and the
//! JSON it prints. Global flags (`--json`) go before the subcommand.
//!
//! | action     | command line                                                        |
//! |------------|---------------------------------------------------------------------|
//! | status     | `updog --json status`                                               |
//! | refresh    | `updog --json check-update --all`                                   |
//! | prepare    | `updog update-image --image V [--allow-downgrade] --progress-file F`|
//! | activate   | `updog update-apply`                                                |
//! | deactivate | `updog update-revert`                                               |
//!
//! Exit codes: 0 success, 1 failure (message on stderr), 3 `update-image` found nothing to
//! apply. The `status` output is `api_types::updater::NodeStatus`, declared once for updog and
//! this reader. Of `check-update` only the fields the API needs are read; others are ignored,
//! so the updater can add fields without breaking the API server.

use super::status::{PartitionInfo, Partitions, Refreshed, UpdateImage};
use serde::Deserialize;
use std::path::Path;

/// Exit code of `update-image` when there is nothing to apply.
pub const EXIT_NOTHING_TO_APPLY: i32 = 3;

pub use crate::command::CommandLine;

pub fn status_args() -> Vec<String> {
    vec!["--json".into(), "status".into()]
}

pub fn check_update_args() -> Vec<String> {
    vec!["--json".into(), "check-update".into(), "--all".into()]
}

pub fn update_image_args(version: &str, allow_downgrade: bool, progress: &Path) -> Vec<String> {
    let mut args = vec!["update-image".into(), "--image".into(), version.into()];
    if allow_downgrade {
        args.push("--allow-downgrade".into());
    }
    args.push("--progress-file".into());
    args.push(progress.display().to_string());
    args
}

pub fn update_apply_args() -> Vec<String> {
    vec!["update-apply".into()]
}

pub fn update_revert_args() -> Vec<String> {
    vec!["update-revert".into()]
}

/// An OS image as the updater describes it (running, staged, or a manifest entry).
#[derive(Debug, Clone, Deserialize)]
pub struct Image {
    pub variant: String,
    pub arch: String,
    pub version: String,
}

impl From<Image> for UpdateImage {
    fn from(i: Image) -> Self {
        UpdateImage {
            arch: i.arch,
            version: i.version,
            variant: i.variant,
        }
    }
}

/// `updog --json check-update --all`.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckUpdate {
    pub running: Image,
    pub chosen: Option<Image>,
    #[serde(default)]
    pub updates: Vec<Image>,
}

impl CheckUpdate {
    pub fn parse(stdout: &[u8]) -> Result<CheckUpdate, String> {
        serde_json::from_slice(stdout).map_err(|e| describe_bad_json("check-update", stdout, &e))
    }

    pub fn refreshed(self) -> Refreshed {
        Refreshed {
            available: self.updates.into_iter().map(|u| u.version).collect(),
            chosen: self.chosen.map(UpdateImage::from),
        }
    }
}

/// `updog --json status`.
pub use api_types::updater::NodeStatus as Status;

/// Parses the output of `updog --json status`.
pub fn parse_status(stdout: &[u8]) -> Result<Status, String> {
    serde_json::from_slice(stdout).map_err(|e| describe_bad_json("status", stdout, &e))
}

fn update_image(i: api_types::updater::ImageInfo) -> UpdateImage {
    UpdateImage {
        arch: i.arch,
        version: i.version,
        variant: i.variant,
    }
}

/// The partition facts of the status document. The inactive set counts as staging only when it
/// holds a complete (valid) image.
pub fn partitions(status: Status) -> Partitions {
    let staging = match status.inactive.image {
        Some(image) if status.inactive.valid => Some(PartitionInfo {
            image: update_image(image),
            next_to_boot: status.next_boot == status.inactive.set,
        }),
        _ => None,
    };
    Partitions {
        active: PartitionInfo {
            image: update_image(status.running),
            next_to_boot: status.next_boot == status.active_set,
        },
        staging,
        failed_update: status.failed_update,
    }
}

/// Whether going from `running` to `target` is a downgrade (which `update-image` only does when
/// told). Versions that are not semver are never called downgrades.
pub fn is_downgrade(running: &str, target: &str) -> bool {
    match (
        semver::Version::parse(running.trim_start_matches('v')),
        semver::Version::parse(target.trim_start_matches('v')),
    ) {
        (Ok(running), Ok(target)) => target < running,
        _ => false,
    }
}

fn describe_bad_json(what: &str, stdout: &[u8], e: &serde_json::Error) -> String {
    let text = String::from_utf8_lossy(stdout);
    let shown: String = text.trim().chars().take(200).collect();
    format!(
        "the updater's `{what}` output is not the JSON the API expects ({e}); it printed: \
         {shown:?}. Is --updater-command an updater that follows updog's contract?"
    )
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn prepare_passes_version_progress_and_downgrade() {
        let args = update_image_args("1.2.0", false, Path::new("/run/x/progress.json"));
        assert_eq!(
            args,
            [
                "update-image",
                "--image",
                "1.2.0",
                "--progress-file",
                "/run/x/progress.json"
            ]
        );
        assert!(update_image_args("1.0.0", true, Path::new("p"))
            .contains(&"--allow-downgrade".to_string()));
        assert!(is_downgrade("1.2.0", "1.1.9"));
        assert!(!is_downgrade("1.2.0", "1.10.0"));
        assert!(!is_downgrade("1.2.0", "1.2.0"));
        assert!(!is_downgrade("weird", "1.0.0"));
    }

    #[test]
    fn check_update_output_gives_versions_and_choice() {
        let out =
            br#"{"running":{"variant":"dev","arch":"x86_64","version":"1.0.0","build_id":"abc"},
            "chosen":{"variant":"dev","arch":"x86_64","version":"1.2.0","max_version":"1.2.0",
                      "waves":{},"images":{"boot":"b","root":"r","hash":"h"}},
            "updates":[{"variant":"dev","arch":"x86_64","version":"1.2.0"},
                       {"variant":"dev","arch":"x86_64","version":"1.1.0"}]}"#;
        let refreshed = CheckUpdate::parse(out).unwrap().refreshed();
        assert_eq!(refreshed.available, ["1.2.0", "1.1.0"]);
        assert_eq!(refreshed.chosen.unwrap().version, "1.2.0");
        let none = br#"{"running":{"variant":"dev","arch":"x86_64","version":"1.0.0"},"chosen":null,"updates":[]}"#;
        assert!(CheckUpdate::parse(none)
            .unwrap()
            .refreshed()
            .chosen
            .is_none());
        let err = CheckUpdate::parse(b"aws-k8s-1.15 0.1.4 (v0.0)").unwrap_err();
        assert!(
            err.contains("aws-k8s-1.15") && err.contains("--updater-command"),
            "{err}"
        );
    }

    #[test]
    fn status_output_gives_partitions() {
        let out = br#"{"running":{"variant":"dev","arch":"x86_64","version":"1.0.0","build_id":"abc"},
            "active_set":"A","next_boot":"B",
            "inactive":{"set":"B","image":{"variant":"dev","arch":"x86_64","version":"1.1.0","build_id":"d"},
                        "valid":true,"bootable":true,"successful":false},
            "failed_update":{"version":"0.9.0","set":"B"}}"#;
        let p = partitions(parse_status(out).unwrap());
        assert!(!p.active.next_to_boot);
        assert_eq!(p.active.image.version, "1.0.0");
        let staging = p.staging.unwrap();
        assert!(staging.next_to_boot);
        assert_eq!(staging.image.version, "1.1.0");
        assert_eq!(p.failed_update.unwrap().version, "0.9.0");

        let half_written = br#"{"running":{"variant":"dev","arch":"x86_64","version":"1.0.0"},
            "active_set":"A","next_boot":"A",
            "inactive":{"set":"B","image":{"variant":"dev","arch":"x86_64","version":"1.1.0"},
                        "valid":false,"bootable":false,"successful":false},"failed_update":null}"#;
        let p = partitions(parse_status(half_written).unwrap());
        assert!(p.staging.is_none());
        assert!(p.active.next_to_boot);
    }
}
