//! Which update a node takes: pure functions over the manifest, the running image and the
//! node's policy, so the rules can be read and tested in one place.
//!
//! * An entry is *allowed* when it is for the running variant and arch, its version is at most
//!   its `max_version`, and the node's wave for it is open (unless waves are ignored).
//! * Without a version lock the chosen update is the newest allowed entry newer than the
//!   running version. With a lock, it is the locked version if allowed and not the one
//!   running (it may be older: `update-image` then wants `--allow-downgrade`).
//! * `--image V` ([`pick`]) takes exactly V of the running variant and arch, whatever the lock,
//!   the waves and `max_version` say, as Bottlerocket's `updog update -i` does; only a
//!   downgrade needs saying so.

use crate::config::ImageId;
use crate::error::{self, Result};
use serde::Serialize;
use snafu::ensure;
use update_metadata::{Manifest, Timestamp, Update, Version};

/// The node's update policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub seed: u32,
    pub ignore_waves: bool,
    pub version_lock: Option<Version>,
    /// List allowed entries older than (or equal to) the running version too.
    pub all: bool,
    pub now: Timestamp,
}

/// The outcome of a check.
#[derive(Debug, Clone, Serialize)]
pub struct Selection<'a> {
    /// The update the node would take, if any.
    pub chosen: Option<&'a Update>,
    /// Allowed entries, newest first: newer than the running version (all of them with
    /// [`Policy::all`]), and the chosen one in any case.
    pub updates: Vec<&'a Update>,
}

fn is_allowed(update: &Update, running: &ImageId, policy: &Policy) -> bool {
    update.variant == running.variant
        && update.arch == running.arch
        && update.version <= update.max_version
        && (policy.ignore_waves || update.is_ready(policy.seed, policy.now))
}

/// Selects the update for the node running `running`.
pub fn select<'a>(manifest: &'a Manifest, running: &ImageId, policy: &Policy) -> Selection<'a> {
    let mut allowed: Vec<&Update> = manifest
        .updates
        .iter()
        .filter(|u| is_allowed(u, running, policy))
        .collect();
    allowed.sort_by(|a, b| b.version.cmp(&a.version));
    let chosen = match &policy.version_lock {
        Some(lock) => allowed
            .iter()
            .copied()
            .find(|u| &u.version == lock && u.version != running.version),
        None => allowed
            .iter()
            .copied()
            .find(|u| u.version > running.version),
    };
    let updates = allowed
        .into_iter()
        .filter(|u| {
            policy.all || u.version > running.version || chosen.is_some_and(|c| std::ptr::eq(c, *u))
        })
        .collect();
    Selection { chosen, updates }
}

/// The entry of exactly `version` for the running variant and arch; `None` when it is the
/// version running (nothing to do). Refuses a version only listed for another variant or arch,
/// and an older one unless `allow_downgrade`.
pub fn pick<'a>(
    manifest: &'a Manifest,
    running: &ImageId,
    version: &Version,
    allow_downgrade: bool,
) -> Result<Option<&'a Update>> {
    let Some(update) = manifest.find(&running.variant, &running.arch, version) else {
        if let Some(other) = manifest.updates.iter().find(|u| &u.version == version) {
            return error::OtherVariantSnafu {
                version: version.clone(),
                variant: &running.variant,
                arch: &running.arch,
                other: format!("{} {}", other.variant, other.arch),
            }
            .fail();
        }
        let mut available: Vec<&Version> = manifest
            .updates
            .iter()
            .filter(|u| u.variant == running.variant && u.arch == running.arch)
            .map(|u| &u.version)
            .collect();
        available.sort_by(|a, b| b.cmp(a));
        let available = if available.is_empty() {
            "none".to_string()
        } else {
            available
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        return error::NoSuchVersionSnafu {
            version: version.clone(),
            variant: &running.variant,
            arch: &running.arch,
            available,
        }
        .fail();
    };
    check_direction(update, running, allow_downgrade)?;
    Ok((update.version != running.version).then_some(update))
}

/// Refuses an update older than the running version unless `allow_downgrade`.
pub fn check_direction(update: &Update, running: &ImageId, allow_downgrade: bool) -> Result<()> {
    ensure!(
        update.version >= running.version || allow_downgrade,
        error::DowngradeSnafu {
            version: update.version.clone(),
            running: running.version.clone(),
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use update_metadata::Images;

    fn entry(variant: &str, version: &str, max: &str) -> Update {
        Update {
            variant: variant.into(),
            arch: "x86_64".into(),
            version: version.parse().unwrap(),
            max_version: max.parse().unwrap(),
            waves: BTreeMap::new(),
            images: Images {
                boot: format!("b-{variant}-{version}"),
                root: format!("r-{variant}-{version}"),
                hash: format!("h-{variant}-{version}"),
            },
        }
    }

    fn running(version: &str) -> ImageId {
        ImageId {
            variant: "dev".into(),
            arch: "x86_64".into(),
            version: version.parse().unwrap(),
            build_id: None,
        }
    }

    fn policy() -> Policy {
        Policy {
            seed: 100,
            ignore_waves: false,
            version_lock: None,
            all: false,
            now: "2024-06-01T00:00:00Z".parse().unwrap(),
        }
    }

    fn versions(updates: &[&Update]) -> Vec<String> {
        updates.iter().map(|u| u.version.to_string()).collect()
    }

    #[test]
    fn newest_allowed_of_this_variant() {
        let manifest = Manifest {
            updates: vec![
                entry("dev", "1.0.0", "1.2.0"),
                entry("dev", "1.2.0", "1.2.0"),
                entry("dev", "1.3.0", "1.2.0"), // above max_version: pulled
                entry("dev", "1.1.0", "1.2.0"),
                entry("node", "1.5.0", "1.5.0"),
            ],
            migrations: BTreeMap::new(),
        };
        let s = select(&manifest, &running("1.0.0"), &policy());
        assert_eq!(s.chosen.unwrap().version, Version::new(1, 2, 0));
        assert_eq!(versions(&s.updates), ["1.2.0", "1.1.0"]);

        let all = Policy {
            all: true,
            ..policy()
        };
        let s = select(&manifest, &running("1.1.0"), &all);
        assert_eq!(versions(&s.updates), ["1.2.0", "1.1.0", "1.0.0"]);

        let s = select(&manifest, &running("1.2.0"), &policy());
        assert!(s.chosen.is_none() && s.updates.is_empty());

        // A lock takes exactly its version, older ones included, never the running one.
        let locked = |v: &str| Policy {
            version_lock: Some(v.parse().unwrap()),
            ..policy()
        };
        let s = select(&manifest, &running("1.2.0"), &locked("1.1.0"));
        assert_eq!(s.chosen.unwrap().version, Version::new(1, 1, 0));
        assert_eq!(versions(&s.updates), ["1.1.0"]);
        assert!(select(&manifest, &running("1.1.0"), &locked("1.1.0"))
            .chosen
            .is_none());
        assert!(select(&manifest, &running("1.0.0"), &locked("1.3.0"))
            .chosen
            .is_none());
    }

    #[test]
    fn waves_hold_back_late_seeds() {
        let mut update = entry("dev", "2.0.0", "2.0.0");
        update.waves = [
            (0, "2024-05-31T00:00:00Z".parse().unwrap()),
            (1024, "2024-06-10T00:00:00Z".parse().unwrap()),
        ]
        .into();
        let manifest = Manifest {
            updates: vec![update],
            migrations: BTreeMap::new(),
        };
        let early = Policy {
            seed: 0,
            ..policy()
        };
        assert!(select(&manifest, &running("1.0.0"), &early)
            .chosen
            .is_some());
        let late = Policy {
            seed: 1500,
            ..policy()
        };
        assert!(select(&manifest, &running("1.0.0"), &late).chosen.is_none());
        let ignoring = Policy {
            ignore_waves: true,
            ..late
        };
        assert!(select(&manifest, &running("1.0.0"), &ignoring)
            .chosen
            .is_some());
    }

    #[test]
    fn exact_picks() {
        let manifest = Manifest {
            updates: vec![
                entry("dev", "1.0.0", "1.1.0"),
                entry("dev", "1.1.0", "1.1.0"),
                entry("node", "2.0.0", "2.0.0"),
            ],
            migrations: BTreeMap::new(),
        };
        let v = |s: &str| -> Version { s.parse().unwrap() };
        let got = pick(&manifest, &running("1.0.0"), &v("1.1.0"), false).unwrap();
        assert_eq!(got.unwrap().version, v("1.1.0"));
        assert!(pick(&manifest, &running("1.1.0"), &v("1.1.0"), false)
            .unwrap()
            .is_none());

        let err = pick(&manifest, &running("1.1.0"), &v("1.0.0"), false).unwrap_err();
        assert!(err.to_string().contains("--allow-downgrade"), "{err}");
        assert!(pick(&manifest, &running("1.1.0"), &v("1.0.0"), true)
            .unwrap()
            .is_some());

        let err = pick(&manifest, &running("1.0.0"), &v("2.0.0"), false).unwrap_err();
        assert!(err.to_string().contains("for node x86_64"), "{err}");
        let err = pick(&manifest, &running("1.0.0"), &v("3.0.0"), false).unwrap_err();
        assert!(err.to_string().contains("available: 1.1.0, 1.0.0"), "{err}");
    }
}
