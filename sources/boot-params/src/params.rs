//! The typed parameters: [`VerityRoot`] (what the image builder writes) and [`BootParams`]
//! (everything the early init reads).

use crate::cmdline::Cmdline;
use crate::error::{invalid, MissingParamSnafu, Result};
use crate::{
    DATA, DATA_BLOCKS, DEBUG, HASH, HASH_START, INIT, ON_FAILURE, PREFIX, ROOT, ROOT_HASH, SALT,
};
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
    /// Parses the value of the parameter `key` (named in the error).
    pub fn parse(key: &str, value: &str) -> Result<Self> {
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

/// The dm-verity root of one partition set: which partitions hold the data and the hash tree,
/// and the tree's root hash, salt and size; plus the writable data partition.
///
/// The image builder writes it into each BOOT partition's `grub.cfg` with [`fmt::Display`] (the
/// partition names carry the GRUB variable `${ballast_set}`, which the loader expands to the set
/// letter); the early init reads it back with [`VerityRoot::parse`] and builds the
/// device-mapper table from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityRoot {
    /// `ballast.root=`: the partition holding the erofs image (the dm-verity data device).
    pub root: DeviceSpec,
    /// `ballast.hash=`: the partition holding the dm-verity hash tree.
    pub hash: DeviceSpec,
    /// `ballast.roothash=`: the sha256 root hash, 64 lowercase hex digits.
    pub root_hash: String,
    /// `ballast.salt=`: hex salt, or `-` for none (the spelling dm-verity uses).
    pub salt: String,
    /// `ballast.datablocks=`: number of 4096-byte blocks covered by the hash tree.
    pub data_blocks: u64,
    /// `ballast.hashstart=`: hash device block at which the tree starts; 0 (the default, and
    /// not written) matches `veritysetup format --no-superblock`, 1 a tree behind a verity
    /// superblock.
    pub hash_start_block: u64,
    /// `ballast.data=`: the writable data partition, if any.
    pub data: Option<DeviceSpec>,
}

impl VerityRoot {
    /// The parameters this type owns. The image builder writes them; a variant's own kernel
    /// parameters must not set them.
    pub const PARAMS: &'static [&'static str] =
        &[ROOT, HASH, ROOT_HASH, SALT, DATA_BLOCKS, HASH_START, DATA];

    /// Reads the verity parameters of a kernel command line, ignoring every other parameter.
    pub fn parse(cmdline: &str) -> Result<Self> {
        let mut fields = VerityFields::default();
        for (key, value) in Cmdline::parse(cmdline).params() {
            if Self::PARAMS.contains(&key.as_str()) {
                let Some(value) = value else {
                    return invalid(key, "", "a value is required (key=value)");
                };
                fields.take(key, value)?;
            }
        }
        fields.finish()
    }

    /// The parameters as they go on a kernel command line, separated by single spaces:
    /// `ballast.root=... ballast.hash=... ballast.roothash=... ballast.salt=...
    /// ballast.datablocks=... [ballast.hashstart=...] [ballast.data=...]`.
    pub fn to_cmdline_args(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for VerityRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{ROOT}={} {HASH}={} {ROOT_HASH}={} {SALT}={} {DATA_BLOCKS}={}",
            self.root, self.hash, self.root_hash, self.salt, self.data_blocks
        )?;
        if self.hash_start_block != 0 {
            write!(f, " {HASH_START}={}", self.hash_start_block)?;
        }
        if let Some(data) = &self.data {
            write!(f, " {DATA}={data}")?;
        }
        Ok(())
    }
}

/// The verity parameters seen so far while scanning a command line.
#[derive(Default)]
struct VerityFields {
    root: Option<DeviceSpec>,
    hash: Option<DeviceSpec>,
    root_hash: Option<String>,
    salt: Option<String>,
    data_blocks: Option<u64>,
    hash_start_block: u64,
    data: Option<DeviceSpec>,
}

impl VerityFields {
    /// Records `key=value` if `key` is a verity parameter; returns whether it was one.
    fn take(&mut self, key: &str, value: &str) -> Result<bool> {
        match key {
            ROOT => self.root = Some(DeviceSpec::parse(key, value)?),
            HASH => self.hash = Some(DeviceSpec::parse(key, value)?),
            DATA => self.data = Some(DeviceSpec::parse(key, value)?),
            ROOT_HASH => self.root_hash = Some(parse_root_hash(key, value)?),
            SALT => self.salt = Some(parse_salt(key, value)?),
            DATA_BLOCKS => self.data_blocks = Some(parse_data_blocks(key, value)?),
            HASH_START => {
                self.hash_start_block = value.parse::<u64>().or_else(|_| {
                    invalid(key, value, "expected a block number (0 without superblock)")
                })?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn finish(self) -> Result<VerityRoot> {
        fn required<T>(value: Option<T>, key: &'static str) -> Result<T> {
            value.ok_or_else(|| MissingParamSnafu { key }.build())
        }
        Ok(VerityRoot {
            root: required(self.root, ROOT)?,
            hash: required(self.hash, HASH)?,
            root_hash: required(self.root_hash, ROOT_HASH)?,
            salt: required(self.salt, SALT)?,
            data_blocks: required(self.data_blocks, DATA_BLOCKS)?,
            hash_start_block: self.hash_start_block,
            data: self.data,
        })
    }
}

/// What the early init does after a fatal error has been reported (`ballast.onfailure=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureAction {
    /// `reboot`: so that the boot loader can fall back to the other partition set (default).
    #[default]
    Reboot,
    /// `poweroff`: useful in tests and when a human should look at the console first.
    PowerOff,
}

impl FailureAction {
    /// The spelling on the command line.
    pub fn param_value(self) -> &'static str {
        match self {
            FailureAction::Reboot => "reboot",
            FailureAction::PowerOff => "poweroff",
        }
    }

    fn parse(key: &str, value: &str) -> Result<Self> {
        match value {
            "reboot" => Ok(FailureAction::Reboot),
            "poweroff" => Ok(FailureAction::PowerOff),
            _ => invalid(key, value, "expected reboot or poweroff"),
        }
    }
}

/// The action as a phrase for messages ("rebooting", "powering off").
impl fmt::Display for FailureAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureAction::Reboot => "rebooting",
            FailureAction::PowerOff => "powering off",
        })
    }
}

/// Everything the early init takes from the kernel command line: the verity root and how to
/// run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootParams {
    /// The partitions and hash tree of the root.
    pub verity: VerityRoot,
    /// `ballast.init=`: program executed as PID 1 in the new root.
    pub init: PathBuf,
    /// `ballast.debug`: print more detail (`ballast.debug=0|no|false` turns it off).
    pub debug: bool,
    /// `ballast.onfailure=reboot|poweroff`.
    pub on_failure: FailureAction,
}

impl BootParams {
    /// Boot parameters with the defaults for everything but the verity root.
    pub fn new(verity: VerityRoot) -> Self {
        BootParams {
            verity,
            init: PathBuf::from(DEFAULT_INIT),
            debug: false,
            on_failure: FailureAction::default(),
        }
    }

    /// Parses the `ballast.*` parameters of a kernel command line. Other parameters are
    /// ignored, and so are unknown `ballast.*` keys that have a value (newer boot configurations
    /// keep booting older images); every `ballast.*` parameter except `ballast.debug` needs a
    /// value.
    pub fn parse(cmdline: &str) -> Result<Self> {
        let mut verity = VerityFields::default();
        let mut init = PathBuf::from(DEFAULT_INIT);
        let mut debug = false;
        let mut on_failure = FailureAction::default();
        for (key, value) in Cmdline::parse(cmdline).params() {
            if !key.starts_with(PREFIX) {
                continue;
            }
            // Flags may appear without a value; everything else needs one.
            if key == DEBUG {
                debug = !matches!(value.as_deref(), Some("0" | "no" | "false"));
                continue;
            }
            let Some(value) = value else {
                return invalid(key, "", "a value is required (key=value)");
            };
            if verity.take(key, value)? {
                continue;
            }
            match key.as_str() {
                INIT => {
                    if !value.starts_with('/') {
                        return invalid(key, value, "expected an absolute path");
                    }
                    init = PathBuf::from(value);
                }
                ON_FAILURE => on_failure = FailureAction::parse(key, value)?,
                _ => {}
            }
        }
        Ok(BootParams {
            verity: verity.finish()?,
            init,
            debug,
            on_failure,
        })
    }
}

/// Writes the verity root, then `ballast.init=`, `ballast.debug` and `ballast.onfailure=` when
/// they differ from the defaults.
impl fmt::Display for BootParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.verity)?;
        if self.init.as_path() != std::path::Path::new(DEFAULT_INIT) {
            write!(f, " {INIT}={}", self.init.display())?;
        }
        if self.debug {
            write!(f, " {DEBUG}")?;
        }
        if self.on_failure != FailureAction::default() {
            write!(f, " {ON_FAILURE}={}", self.on_failure.param_value())?;
        }
        Ok(())
    }
}

/// Reads only `ballast.onfailure=` and ignores every error, so that the failure policy is known
/// even when the rest of the command line is broken.
pub fn failure_action(cmdline: &str) -> FailureAction {
    Cmdline::parse(cmdline)
        .params()
        .iter()
        .filter(|(key, _)| key == ON_FAILURE)
        .filter_map(|(key, value)| FailureAction::parse(key, value.as_deref()?).ok())
        .next_back()
        .unwrap_or_default()
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
