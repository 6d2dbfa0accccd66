//! The `ballast.*` parameters of the kernel command line.
//!
//! The kernel splits its command line at spaces outside double quotes and strips the quotes; this
//! module does the same, so `ballast.init="/usr/lib/systemd/systemd"` and the unquoted form mean
//! the same thing. When a key is repeated, the last occurrence wins, as for kernel parameters.
//! Parameters that do not start with `ballast.` are ignored.

use crate::error::{InvalidParamSnafu, MissingParamSnafu, Result};
use std::fmt;
use std::path::PathBuf;

/// The init program started in the new root when `ballast.init=` is not given.
pub const DEFAULT_INIT: &str = "/usr/lib/systemd/systemd";

/// The largest salt dm-verity accepts, in bytes.
const MAX_SALT_BYTES: usize = 256;

/// How a block device is named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// `PARTLABEL=<name>`: a GPT partition whose partition name is `<name>`.
    PartLabel(String),
    /// An absolute device path such as `/dev/vda1`.
    Path(PathBuf),
}

impl DeviceSpec {
    fn parse(key: &str, value: &str) -> Result<Self> {
        if let Some(label) = value.strip_prefix("PARTLABEL=") {
            if label.is_empty() {
                return invalid(key, value, "the partition name is empty");
            }
            return Ok(DeviceSpec::PartLabel(label.to_string()));
        }
        if value.starts_with("/dev/") && value.len() > "/dev/".len() {
            return Ok(DeviceSpec::Path(PathBuf::from(value)));
        }
        invalid(key, value, "expected PARTLABEL=<name> or a /dev/... path")
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::PartLabel(label) => write!(f, "PARTLABEL={label}"),
            DeviceSpec::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What to do after a fatal error has been reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureAction {
    /// Reboot, so that the boot loader can fall back to the other partition set (the default).
    #[default]
    Reboot,
    /// Power off; useful in tests and when a human should look at the console first.
    PowerOff,
}

impl fmt::Display for FailureAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureAction::Reboot => "rebooting",
            FailureAction::PowerOff => "powering off",
        })
    }
}

/// Everything the early init takes from the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootParams {
    /// `ballast.root=`: the partition holding the erofs data (the dm-verity data device).
    pub root: DeviceSpec,
    /// `ballast.hash=`: the partition holding the dm-verity hash tree.
    pub hash: DeviceSpec,
    /// `ballast.roothash=`: the sha256 root hash, 64 lowercase hex digits.
    pub root_hash: String,
    /// `ballast.salt=`: hex salt, or `-` for none (the spelling dm-verity uses).
    pub salt: String,
    /// `ballast.datablocks=`: number of 4096-byte blocks covered by the hash tree.
    pub data_blocks: u64,
    /// `ballast.hashstart=`: hash device block at which the tree starts; 0 (the default) matches
    /// `veritysetup format --no-superblock`, 1 matches a tree behind a verity superblock.
    pub hash_start_block: u64,
    /// `ballast.data=`: the writable data partition, if any.
    pub data: Option<DeviceSpec>,
    /// `ballast.init=`: program executed as PID 1 in the new root.
    pub init: PathBuf,
    /// `ballast.debug`: print more detail.
    pub debug: bool,
    /// `ballast.onfailure=reboot|poweroff`.
    pub on_failure: FailureAction,
}

impl BootParams {
    /// Parses the `ballast.*` parameters of a kernel command line.
    pub fn parse(cmdline: &str) -> Result<Self> {
        let mut root = None;
        let mut hash = None;
        let mut root_hash = None;
        let mut salt = None;
        let mut data_blocks = None;
        let mut hash_start_block = 0;
        let mut data = None;
        let mut init = PathBuf::from(DEFAULT_INIT);
        let mut debug = false;
        let mut on_failure = FailureAction::default();

        for (key, value) in split(cmdline) {
            let Some(name) = key.strip_prefix("ballast.") else {
                continue;
            };
            // Flags may appear without a value; everything else needs one.
            if name == "debug" {
                debug = !matches!(value.as_deref(), Some("0" | "no" | "false"));
                continue;
            }
            let Some(value) = value else {
                return invalid(&key, "", "a value is required (key=value)");
            };
            match name {
                "root" => root = Some(DeviceSpec::parse(&key, &value)?),
                "hash" => hash = Some(DeviceSpec::parse(&key, &value)?),
                "data" => data = Some(DeviceSpec::parse(&key, &value)?),
                "roothash" => root_hash = Some(parse_root_hash(&key, &value)?),
                "salt" => salt = Some(parse_salt(&key, &value)?),
                "datablocks" => data_blocks = Some(parse_data_blocks(&key, &value)?),
                "hashstart" => {
                    hash_start_block = value.parse::<u64>().or_else(|_| {
                        invalid(
                            &key,
                            &value,
                            "expected a block number (0 without superblock)",
                        )
                    })?
                }
                "init" => {
                    if !value.starts_with('/') {
                        return invalid(&key, &value, "expected an absolute path");
                    }
                    init = PathBuf::from(value);
                }
                "onfailure" => on_failure = parse_failure_action(&key, &value)?,
                // Unknown keys are left alone so that newer boot configurations keep booting
                // older images.
                _ => {}
            }
        }

        Ok(BootParams {
            root: root.ok_or_else(|| {
                MissingParamSnafu {
                    key: "ballast.root",
                }
                .build()
            })?,
            hash: hash.ok_or_else(|| {
                MissingParamSnafu {
                    key: "ballast.hash",
                }
                .build()
            })?,
            root_hash: root_hash.ok_or_else(|| {
                MissingParamSnafu {
                    key: "ballast.roothash",
                }
                .build()
            })?,
            salt: salt.ok_or_else(|| {
                MissingParamSnafu {
                    key: "ballast.salt",
                }
                .build()
            })?,
            data_blocks: data_blocks.ok_or_else(|| {
                MissingParamSnafu {
                    key: "ballast.datablocks",
                }
                .build()
            })?,
            hash_start_block,
            data,
            init,
            debug,
            on_failure,
        })
    }
}

/// Reads only `ballast.onfailure=` and ignores every error, so that the failure policy is known
/// even when the rest of the command line is broken.
pub fn failure_action(cmdline: &str) -> FailureAction {
    split(cmdline)
        .into_iter()
        .filter(|(key, _)| key == "ballast.onfailure")
        .filter_map(|(key, value)| parse_failure_action(&key, value.as_deref()?).ok())
        .next_back()
        .unwrap_or_default()
}

/// Splits a command line into `(key, value)` pairs the way the kernel does: spaces separate
/// parameters unless inside double quotes, quotes are removed, and the first `=` separates the
/// key from the value.
pub fn split(cmdline: &str) -> Vec<(String, Option<String>)> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut in_quotes = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                in_word = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
        .into_iter()
        .map(|word| match word.split_once('=') {
            Some((key, value)) => (key.to_string(), Some(value.to_string())),
            None => (word, None),
        })
        .collect()
}

fn parse_root_hash(key: &str, value: &str) -> Result<String> {
    if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return invalid(key, value, "expected 64 hex digits (a sha256 digest)");
    }
    Ok(value.to_ascii_lowercase())
}

fn parse_salt(key: &str, value: &str) -> Result<String> {
    if value == "-" {
        return Ok(value.to_string());
    }
    if value.is_empty()
        || !value.len().is_multiple_of(2)
        || !value.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return invalid(
            key,
            value,
            "expected an even number of hex digits, or - for no salt",
        );
    }
    if value.len() / 2 > MAX_SALT_BYTES {
        return invalid(key, value, "dm-verity accepts at most 256 salt bytes");
    }
    Ok(value.to_ascii_lowercase())
}

fn parse_data_blocks(key: &str, value: &str) -> Result<u64> {
    match value.parse::<u64>() {
        // The table length is in 512-byte sectors, eight per block; it must not overflow.
        Ok(n) if n > 0 && n.checked_mul(8).is_some() => Ok(n),
        _ => invalid(key, value, "expected a positive number of 4096-byte blocks"),
    }
}

fn parse_failure_action(key: &str, value: &str) -> Result<FailureAction> {
    match value {
        "reboot" => Ok(FailureAction::Reboot),
        "poweroff" => Ok(FailureAction::PowerOff),
        _ => invalid(key, value, "expected reboot or poweroff"),
    }
}

fn invalid<T>(key: &str, value: &str, reason: &str) -> Result<T> {
    InvalidParamSnafu { key, value, reason }.fail()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    const HASH: &str = "4a3c0bd4b5d0b1a5c1b7a0e0a1e36c4e0ab8e1e1b7a9c0fbd3a2d1e0c9b8a7f6";

    fn full() -> String {
        format!(
            "BOOT_IMAGE=/vmlinuz console=ttyS0 quiet ballast.root=PARTLABEL=ROOT-A \
             ballast.hash=PARTLABEL=HASH-A ballast.roothash={HASH} ballast.salt=00ff \
             ballast.datablocks=2560"
        )
    }

    #[test]
    fn parses_the_minimal_set_with_defaults() {
        let p = BootParams::parse(&full()).unwrap();
        assert_eq!(p.root, DeviceSpec::PartLabel("ROOT-A".into()));
        assert_eq!(p.hash, DeviceSpec::PartLabel("HASH-A".into()));
        assert_eq!(p.root_hash, HASH);
        assert_eq!(p.salt, "00ff");
        assert_eq!(p.data_blocks, 2560);
        assert_eq!(p.hash_start_block, 0);
        assert_eq!(p.data, None);
        assert_eq!(p.init, PathBuf::from(DEFAULT_INIT));
        assert!(!p.debug);
        assert_eq!(p.on_failure, FailureAction::Reboot);
    }

    #[test]
    fn parses_optional_keys_paths_and_quotes() {
        let line = format!(
            "{} ballast.data=/dev/vdb1 ballast.init=\"/sbin/testinit\" ballast.debug \
             ballast.onfailure=poweroff ballast.hashstart=1 ballast.future=whatever",
            full().replace("PARTLABEL=HASH-A", "/dev/vda2")
        );
        let p = BootParams::parse(&line).unwrap();
        assert_eq!(p.hash, DeviceSpec::Path("/dev/vda2".into()));
        assert_eq!(p.data, Some(DeviceSpec::Path("/dev/vdb1".into())));
        assert_eq!(p.init, PathBuf::from("/sbin/testinit"));
        assert!(p.debug);
        assert_eq!(p.on_failure, FailureAction::PowerOff);
        assert_eq!(p.hash_start_block, 1);
    }

    #[test]
    fn last_occurrence_wins_and_hash_is_lowercased() {
        let line = format!(
            "{} ballast.datablocks=7 ballast.roothash={}",
            full(),
            HASH.to_uppercase()
        );
        let p = BootParams::parse(&line).unwrap();
        assert_eq!(p.data_blocks, 7);
        assert_eq!(p.root_hash, HASH);
    }

    #[test]
    fn missing_keys_are_named() {
        let err = BootParams::parse("console=ttyS0").unwrap_err();
        assert!(matches!(
            err,
            Error::MissingParam {
                key: "ballast.root"
            }
        ));
        let line = full().replace("ballast.salt=00ff", "");
        let err = BootParams::parse(&line).unwrap_err();
        assert!(err.to_string().contains("ballast.salt"), "{err}");
    }

    #[test]
    fn rejects_bad_values() {
        for (from, to) in [
            (HASH, "abc"),
            (HASH, &"g".repeat(64)),
            ("ballast.salt=00ff", "ballast.salt=0"),
            ("ballast.salt=00ff", "ballast.salt=zz"),
            ("ballast.datablocks=2560", "ballast.datablocks=0"),
            ("ballast.datablocks=2560", "ballast.datablocks=-1"),
            (
                "ballast.datablocks=2560",
                "ballast.datablocks=18446744073709551615",
            ),
            ("ballast.root=PARTLABEL=ROOT-A", "ballast.root=ROOT-A"),
            ("ballast.root=PARTLABEL=ROOT-A", "ballast.root=PARTLABEL="),
            ("ballast.root=PARTLABEL=ROOT-A", "ballast.root"),
        ] {
            let line = full().replace(from, to);
            let err = BootParams::parse(&line).expect_err(&line);
            assert!(matches!(err, Error::InvalidParam { .. }), "{line}: {err}");
        }
        let line = format!("{} ballast.init=sbin/init", full());
        assert!(BootParams::parse(&line).is_err());
        let line = format!("{} ballast.onfailure=explode", full());
        assert!(BootParams::parse(&line).is_err());
    }

    #[test]
    fn salt_may_be_absent_marker() {
        let line = full().replace("ballast.salt=00ff", "ballast.salt=-");
        assert_eq!(BootParams::parse(&line).unwrap().salt, "-");
    }

    #[test]
    fn failure_action_is_read_even_from_a_broken_line() {
        assert_eq!(failure_action(""), FailureAction::Reboot);
        assert_eq!(
            failure_action("ballast.roothash=nonsense ballast.onfailure=poweroff"),
            FailureAction::PowerOff
        );
        assert_eq!(
            failure_action("ballast.onfailure=poweroff ballast.onfailure=bogus"),
            FailureAction::PowerOff
        );
    }

    #[test]
    fn split_follows_kernel_quoting() {
        assert_eq!(
            split("  a=1 \"b=two words\" c=\"x y\" flag\n"),
            vec![
                ("a".to_string(), Some("1".to_string())),
                ("b".to_string(), Some("two words".to_string())),
                ("c".to_string(), Some("x y".to_string())),
                ("flag".to_string(), None),
            ]
        );
        assert_eq!(
            split("k=a=b"),
            vec![("k".to_string(), Some("a=b".to_string()))]
        );
    }
}
