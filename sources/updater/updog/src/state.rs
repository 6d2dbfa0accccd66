//! What the updater remembers between runs, in `<cache-dir>/sets.json`:
//!
//! ```json
//! {
//!   "A": {"variant": "dev", "arch": "x86_64", "version": "1.0.0", "build_id": "abc123"},
//!   "B": {"variant": "dev", "arch": "x86_64", "version": "1.1.0", "build_id": "def456"},
//!   "pending": {"set": "B", "version": "1.1.0"},
//!   "failed_update": null
//! }
//! ```
//!
//! * `A`, `B`: the image each set holds, or `null` when unknown or cleared. The running set's
//!   entry is refreshed from os-release at every run; the inactive one is cleared when
//!   `update-image` clears the set and written once all three images are verified.
//! * `pending`: the set `update-apply` told the boot loader to try, and its version.
//! * `failed_update`: a try that did not come back: the pending set is not the one running, its
//!   one try is spent and it never booted successfully, so the node went back to the old set.
//!   It stays until the next `update-image` starts.
//!
//! The GPT attribute bits stay the truth about what boots; this file only adds what they cannot
//! hold (versions). A damaged file is logged and replaced.

use crate::config::ImageId;
use crate::error::{self, Result};
use disk_layout::BootSet;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use snafu::ResultExt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use update_metadata::Version;

/// File name of the state inside the cache directory.
pub const STATE_FILE: &str = "sets.json";
/// File name of the lock inside the cache directory.
pub const LOCK_FILE: &str = "updog.lock";

/// The try `update-apply` started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    #[serde(with = "set_letter")]
    pub set: BootSet,
    pub version: Option<Version>,
}

/// An update whose try did not come back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedUpdate {
    /// The version tried, or `unknown` when the set's image was not recorded (it was written by
    /// something other than `update-image`).
    pub version: String,
    #[serde(with = "set_letter")]
    pub set: BootSet,
    /// The health checks that kept its boot from being marked successful, when the boot's
    /// health gate recorded them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
}

/// The contents of `sets.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(rename = "A", default)]
    pub a: Option<ImageId>,
    #[serde(rename = "B", default)]
    pub b: Option<ImageId>,
    #[serde(default)]
    pub pending: Option<Pending>,
    #[serde(default)]
    pub failed_update: Option<FailedUpdate>,
}

impl State {
    /// Reads the state in `cache_dir`; a missing or damaged file gives an empty state.
    pub fn load(cache_dir: &Path) -> State {
        let path = cache_dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(
                    "the updater state '{}' is damaged ({e}); starting from an empty one",
                    path.display()
                );
                State::default()
            }),
            Err(_) => State::default(),
        }
    }

    /// Writes the state into `cache_dir` atomically.
    pub fn save(&self, cache_dir: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).context(error::JsonSnafu {
            what: "the updater state",
        })?;
        bytes.push(b'\n');
        write_atomic(&cache_dir.join(STATE_FILE), &bytes, true)
    }

    /// The image `set` holds, as far as known.
    pub fn image(&self, set: BootSet) -> Option<&ImageId> {
        match set {
            BootSet::A => self.a.as_ref(),
            BootSet::B => self.b.as_ref(),
        }
    }

    /// Records what `set` holds.
    pub fn set_image(&mut self, set: BootSet, image: Option<ImageId>) {
        match set {
            BootSet::A => self.a = image,
            BootSet::B => self.b = image,
        }
    }

    /// Brings the state up to date with what runs and what the GPT says: the running set holds
    /// `running`; a pending try on the running set is over once that boot is marked
    /// successful; a pending try on the other set whose try is spent without success is a
    /// failed update.
    ///
    /// Running the new set is not success: until its boot is marked successful the try may
    /// still end at the boot deadline, and the old set, booting again, must find the try still
    /// pending to report the failed update. (Clearing it as soon as the new set was running
    /// lost the failure whenever anything asked updog for its status during the failed boot.)
    pub fn observe(&mut self, running: &ImageId, status: &signpost::Status) {
        let active = status.active;
        self.set_image(active, Some(running.clone()));
        let Some(pending) = self.pending.clone() else {
            return;
        };
        if pending.set == active {
            if status.set(active).successful {
                tracing::info!(set = %active, "the pending update to set {active} booted successfully");
                self.pending = None;
            }
            return;
        }
        let flags = status.set(pending.set);
        let try_spent = flags.tries_left == 0 || status.unrecorded_try == Some(pending.set);
        if try_spent && !flags.successful {
            tracing::warn!(
                set = %pending.set,
                version = ?pending.version,
                "the update in set {} was tried and did not boot successfully; the node went \
                 back to set {active}",
                pending.set
            );
            self.failed_update = Some(FailedUpdate {
                version: pending
                    .version
                    .map_or_else(|| "unknown".to_string(), |v| v.to_string()),
                set: pending.set,
                health: None,
            });
            self.pending = None;
        }
    }

    /// Names the failed health checks in the failed update, when the record the tried
    /// version's health gate left ([`constants::HEALTH_BOOT_FAILURE`]) is of that version.
    pub fn note_health(&mut self, record: Option<&api_types::health::BootFailure>) {
        if let (Some(failed), Some(record)) = (self.failed_update.as_mut(), record) {
            if failed.health.is_none() && failed.version == record.version {
                failed.health = Some(record.summary());
            }
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader sees the old or the new contents, never a mix. With `durable`, the file and the
/// directory are flushed to disk too.
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let io = |action: &'static str, path: &Path| error::IoSnafu {
        action,
        path: path.to_path_buf(),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .context(io("create a temporary file in", dir))?;
    tmp.write_all(bytes).context(io("write", tmp.path()))?;
    if durable {
        tmp.as_file().sync_all().context(io("flush", tmp.path()))?;
    }
    tmp.persist(path)
        .map_err(|e| e.error)
        .context(io("replace", path))?;
    if durable {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .context(io("flush", dir))?;
    }
    Ok(())
}

/// The lock that makes one updater at a time change the node's update state.
#[derive(Debug)]
pub struct Lock {
    _lock: Flock<File>,
    pub path: PathBuf,
}

impl Lock {
    /// Takes the lock in `cache_dir` (created if needed); `None` when another process holds it.
    pub fn try_take(cache_dir: &Path) -> Result<Option<Lock>> {
        std::fs::create_dir_all(cache_dir).context(error::IoSnafu {
            action: "create",
            path: cache_dir,
        })?;
        let path = cache_dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .context(error::IoSnafu {
                action: "open",
                path: &path,
            })?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(Lock { _lock: lock, path })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(error::Error::Io {
                action: "lock",
                path,
                source: errno.into(),
            }),
        }
    }

    /// Takes the lock or fails with a message naming it.
    pub fn take(cache_dir: &Path) -> Result<Lock> {
        Self::try_take(cache_dir)?.ok_or_else(|| error::Error::Busy {
            path: cache_dir.join(LOCK_FILE),
        })
    }
}

/// `"A"` or `"B"` in JSON.
pub mod set_letter {
    use super::*;

    pub fn serialize<S: Serializer>(set: &BootSet, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(set.letter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BootSet, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not A or B")))
    }

    /// `A` or `B`, either case.
    pub fn parse(text: &str) -> Option<BootSet> {
        match text {
            "A" | "a" => Some(BootSet::A),
            "B" | "b" => Some(BootSet::B),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_tolerates_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(State::load(dir.path()), State::default());
        let state = State {
            a: Some(ImageId {
                variant: "dev".into(),
                arch: "x86_64".into(),
                version: Version::new(1, 0, 0),
                build_id: Some("abc".into()),
            }),
            b: None,
            pending: Some(Pending {
                set: BootSet::B,
                version: Some(Version::new(1, 1, 0)),
            }),
            failed_update: None,
        };
        state.save(dir.path()).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(STATE_FILE)).unwrap()).unwrap();
        assert_eq!(json["A"]["version"], "1.0.0");
        assert!(json["B"].is_null());
        assert_eq!(json["pending"]["set"], "B");
        assert_eq!(State::load(dir.path()), state);

        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        assert_eq!(State::load(dir.path()), State::default());
    }

    fn image(version: Version) -> ImageId {
        ImageId {
            variant: "dev".into(),
            arch: "x86_64".into(),
            version,
            build_id: None,
        }
    }

    /// The A/B status with `active` running and B's GPT bits as given (A successful).
    fn ab_status(active: BootSet, b_tries: u8, b_successful: bool) -> signpost::Status {
        let set = |set, priority, tries_left, successful| signpost::SetStatus {
            set,
            priority,
            tries_left,
            successful,
            bootable: successful || tries_left > 0,
        };
        signpost::Status {
            disk: "/dev/vda".into(),
            active,
            inactive: active.other(),
            next: active,
            sets: [
                set(BootSet::A, 1, 0, true),
                set(BootSet::B, 2, b_tries, b_successful),
            ],
            inactive_valid: false,
            inactive_bootable: true,
            boot_ever_succeeded: true,
            grub_env: signpost::GrubEnvStatus {
                boot_set: active,
                try_set: None,
                in_sync: true,
            },
            unrecorded_try: None,
        }
    }

    #[test]
    fn a_try_that_ran_but_never_succeeded_is_a_failed_update_back_on_the_old_set() {
        let old = image(Version::new(1, 0, 0));
        let new = image(Version::new(1, 1, 0));
        let mut state = State {
            pending: Some(Pending {
                set: BootSet::B,
                version: Some(new.version.clone()),
            }),
            ..State::default()
        };
        // The new set runs (its try spent) and something asks for the status before the boot
        // deadline: the try is still pending.
        state.observe(&new, &ab_status(BootSet::B, 0, false));
        assert!(state.pending.is_some(), "{state:?}");
        assert!(state.failed_update.is_none(), "{state:?}");
        // The deadline resets the node and A boots again: a failed update.
        state.observe(&old, &ab_status(BootSet::A, 0, false));
        assert!(state.pending.is_none(), "{state:?}");
        let failed = state.failed_update.clone().expect("a failed update");
        assert_eq!((failed.version.as_str(), failed.set), ("1.1.0", BootSet::B));
        // Its health gate's record names the checks; a record of another version does not.
        let record = |version: &str| api_types::health::BootFailure {
            time: "t".into(),
            version: version.into(),
            waited_seconds: 120,
            failures: vec![api_types::health::Failure {
                check: "unit app.service".into(),
                reason: "is failed".into(),
            }],
        };
        state.note_health(Some(&record("1.0.0")));
        assert_eq!(state.failed_update.as_ref().unwrap().health, None);
        state.note_health(Some(&record("1.1.0")));
        assert_eq!(
            state.failed_update.as_ref().unwrap().health.as_deref(),
            Some("health checks failed on 1.1.0 after 120 s: unit app.service is failed")
        );

        // A try whose boot is marked successful is over.
        let mut state = State {
            pending: Some(Pending {
                set: BootSet::B,
                version: Some(new.version.clone()),
            }),
            ..State::default()
        };
        state.observe(&new, &ab_status(BootSet::B, 0, true));
        assert!(state.pending.is_none(), "{state:?}");
        assert!(state.failed_update.is_none(), "{state:?}");
    }

    #[test]
    fn one_lock_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = Lock::take(dir.path()).unwrap();
        let err = Lock::take(dir.path()).unwrap_err();
        assert!(err.to_string().contains("updog.lock"), "{err}");
        drop(first);
        Lock::take(dir.path()).unwrap();
    }
}
