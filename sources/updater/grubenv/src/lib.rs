//! The GRUB environment block that tells stock GRUB which partition set to boot, derived from
//! the A/B state in the GPT attribute bits.
//!
//! # Background
//!
//! Two programs need this: the image builder writes the first block into a new image, and
//! `signpost` on the node keeps the block in line with the GPT after every change. It is a crate
//! of its own, depending only on `disk-layout`, so that the node binary does not pull in the
//! image builder.
//!
//! ## Why a derived block
//!
//! The A/B state lives in one place: the priority, tries-left and successful bits of BOOT-A and
//! BOOT-B ([`disk_layout::flags`]). Bottlerocket's GRUB reads those bits itself (a patched
//! `gptprio.next` command); Debian's stock GRUB cannot. So this module writes a *copy* of the
//! decision into a GRUB environment block (`grubenv`, 1024 bytes on the EFI system partition),
//! which stock GRUB reads with `load_env` and can rewrite in place with `save_env`:
//!
//! ```text
//! # GRUB Environment Block
//! boot_set=A
//! try_set=B
//! ###################################...  (padded with '#' to 1024 bytes)
//! ```
//!
//! * `boot_set` is the set to boot when no try is pending.
//! * `try_set`, when not empty, is a set to boot **once**. GRUB clears it in the block
//!   (`set try_set=; save_env try_set`) before it boots that set, so a boot that never marks
//!   success falls back to `boot_set` on its own at the next reset.
//!
//! The block is always derived from the GPT bits, never edited on its own:
//! [`BootSelection::from_flags`] mirrors GRUB's `gptprio.next`. The highest-priority set that
//! has tries left or is successful is chosen; if that set is not successful it becomes
//! `try_set` (choosing it uses up a try), and `boot_set` is what would be chosen once that try
//! is spent.
//!
//! ## The loop on a node
//!
//! GRUB consumes a try in the environment block, not in the GPT. The OS writes that back early
//! in every boot with [`reconcile_disk`]: if the GPT still promises a try that the block no
//! longer holds, GRUB used it, so one try is taken off that set in the GPT (what `gptprio.next`
//! would have done), and the block is derived again. After that, every change of the GPT bits
//! (signpost's `upgrade-to-inactive`, `mark-successful-boot`, ...) is followed by
//! [`sync_disk`]. Order matters: GPT first, then the block. A crash in between leaves a block
//! without the new try, and the next boot's reconcile then counts the try as used: the update is
//! not attempted, and the running set stays the one that boots.
//!
//! Tries above one are handed out one per boot of the fallback set (GRUB would spend them in a
//! row); signpost only ever gives one try. If no set can be booted by those rules (where
//! `gptprio.next` would stop), `boot_set` is the set with the higher priority, A on a tie: the
//! last image given priority is booted rather than nothing.
//!
//! # Usage
//!
//! ```no_run
//! use disk_layout::{read_flags, write_flags, BootSet};
//! use std::path::Path;
//!
//! let disk = Path::new("/dev/vda");
//! // Early in every boot: record a try GRUB used, and derive the block again.
//! let mut flags = grubenv::reconcile_disk(disk)?;
//! // After any change of the GPT bits: GPT first, then the block.
//! flags.mark_successful_boot(BootSet::A);
//! write_flags(disk, &flags).map_err(|source| grubenv::Error::Disk { source })?;
//! let selection = grubenv::sync_disk(disk)?;
//! println!("GRUB boots {} next", selection.boot_set);
//! # Ok::<(), grubenv::Error>(())
//! ```
//!
//! # Current limitations
//!
//! * The block is found by scanning the clusters of the EFI system partition for a well-formed
//!   block ([`locate_in_fat`]); the FAT directory is not read, so the partition must hold
//!   exactly one such block (the image builder checks this when it makes the disk).
//! * Writes go straight to the disk at the block's offset: the EFI system partition must not be
//!   mounted read-write with cached data for that file at the same time.
//! * No locking: the caller (signpost) is expected to be the only writer of the GPT bits and
//!   the block.
#![forbid(unsafe_code)]

pub mod error;

pub use error::{Error, Result};

use disk_layout::{read_flags, read_layout, write_flags, BootFlags, BootSet, PartitionRole};
use error::IoSnafu;
use snafu::{ensure, IntoError, ResultExt};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Size of a GRUB environment block.
pub const ENV_SIZE: usize = 1024;
/// The first line of every block.
pub const SIGNATURE: &str = "# GRUB Environment Block\n";
/// Where the block lives on the EFI system partition.
pub const ESP_PATH: &str = "/EFI/BOOT/grubenv";
/// Variable holding the set to boot when no try is pending.
pub const BOOT_SET_KEY: &str = "boot_set";
/// Variable holding a set to boot once.
pub const TRY_SET_KEY: &str = "try_set";

/// The variables of a GRUB environment block, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrubEnv {
    vars: Vec<(String, String)>,
}

impl GrubEnv {
    /// An empty environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` (keeping its position if it was already set). Keys are GRUB variable names:
    /// ASCII letters, digits and `_`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        check_key(key)?;
        match self.vars.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value.to_string(),
            None => self.vars.push((key.to_string(), value.to_string())),
        }
        Ok(())
    }

    /// All variables, in block order.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The 1024-byte block: signature, one `key=value` line per variable (`\` and newline
    /// escaped with `\`, as GRUB does), then `#` up to the end.
    pub fn render(&self) -> Result<[u8; ENV_SIZE]> {
        let mut text = String::from(SIGNATURE);
        for (key, value) in &self.vars {
            text.push_str(key);
            text.push('=');
            for c in value.chars() {
                if c == '\\' || c == '\n' {
                    text.push('\\');
                }
                text.push(c);
            }
            text.push('\n');
        }
        ensure!(
            text.len() <= ENV_SIZE,
            error::EnvTooLargeSnafu {
                size: ENV_SIZE,
                needed: text.len()
            }
        );
        let mut block = [b'#'; ENV_SIZE];
        block[..text.len()].copy_from_slice(text.as_bytes());
        Ok(block)
    }

    /// Reads a block as GRUB and grub-editenv write it: the signature, `key=value` lines, and
    /// `#` padding to the end. Anything else is refused, which also keeps [`locate_in_fat`]
    /// from mistaking other data for a block.
    pub fn parse(block: &[u8]) -> Result<GrubEnv> {
        let bad = |reason: String| error::EnvMalformedSnafu { reason }.fail();
        if block.len() != ENV_SIZE {
            return bad(format!("{} bytes instead of {ENV_SIZE}", block.len()));
        }
        let Some(mut rest) = block.strip_prefix(SIGNATURE.as_bytes()) else {
            return bad("the signature line is missing".to_string());
        };
        let mut env = GrubEnv::new();
        while let Some(&first) = rest.first() {
            if first == b'#' {
                if rest.iter().all(|&b| b == b'#') {
                    break; // the padding
                }
                // A comment line, such as the warning Debian's grub-editenv writes.
                let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                    return bad("data after the '#' padding".to_string());
                };
                if !rest[..end].iter().all(|b| (0x20..0x7f).contains(b)) {
                    return bad("a comment line with non-printable bytes".to_string());
                }
                rest = &rest[end + 1..];
                continue;
            }
            let Some(eq) = rest.iter().position(|&b| b == b'=') else {
                return bad("a line without '='".to_string());
            };
            let key = std::str::from_utf8(&rest[..eq])
                .ok()
                .filter(|k| valid_key(k))
                .ok_or_else(|| {
                    error::EnvMalformedSnafu {
                        reason: format!(
                            "invalid variable name {:?}",
                            String::from_utf8_lossy(&rest[..eq])
                        ),
                    }
                    .build()
                })?;
            let mut value = Vec::new();
            let mut i = eq + 1;
            loop {
                match rest.get(i) {
                    None => return bad(format!("the value of {key} has no line end")),
                    Some(b'\n') => break,
                    Some(b'\\') => {
                        let Some(&escaped) = rest.get(i + 1) else {
                            return bad(format!("the value of {key} ends in '\\'"));
                        };
                        value.push(escaped);
                        i += 2;
                    }
                    Some(&b) => {
                        value.push(b);
                        i += 1;
                    }
                }
            }
            let value = String::from_utf8(value).map_err(|_| {
                error::EnvMalformedSnafu {
                    reason: format!("the value of {key} is not UTF-8"),
                }
                .build()
            })?;
            env.vars.push((key.to_string(), value));
            rest = &rest[i + 1..];
        }
        Ok(env)
    }
}

fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn check_key(key: &str) -> Result<()> {
    ensure!(
        valid_key(key),
        error::EnvBadKeySnafu {
            key,
            reason: "use ASCII letters, digits and '_' only"
        }
    );
    Ok(())
}

/// What GRUB is told to boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootSelection {
    /// The set to boot when no try is pending.
    pub boot_set: BootSet,
    /// A set to boot once; GRUB clears it before booting it.
    pub try_set: Option<BootSet>,
}

impl BootSelection {
    /// The selection that mirrors what `gptprio.next` would do with `flags` (see the module
    /// documentation).
    pub fn from_flags(flags: &BootFlags) -> Self {
        match flags.peek_next_boot_set() {
            None => BootSelection {
                boot_set: last_resort(flags),
                try_set: None,
            },
            Some(chosen) if flags.get(chosen).successful => BootSelection {
                boot_set: chosen,
                try_set: None,
            },
            Some(chosen) => {
                // Choosing an unproven set spends a try: what is chosen after that?
                let mut spent = *flags;
                spent.get_mut(chosen).tries_left = 0;
                BootSelection {
                    boot_set: spent.peek_next_boot_set().unwrap_or(chosen),
                    try_set: Some(chosen),
                }
            }
        }
    }

    /// Reads the selection as the GRUB script does: any `boot_set` other than `B` means A, and
    /// a `try_set` other than `A` or `B` means no try.
    pub fn from_env(env: &GrubEnv) -> Self {
        let set = |key| match env.get(key) {
            Some("A") => Some(BootSet::A),
            Some("B") => Some(BootSet::B),
            _ => None,
        };
        BootSelection {
            boot_set: set(BOOT_SET_KEY).unwrap_or(BootSet::A),
            try_set: set(TRY_SET_KEY),
        }
    }

    /// The environment holding this selection (`try_set` is present but empty when no try is
    /// pending, so GRUB's `save_env` always rewrites an existing variable).
    pub fn to_env(&self) -> GrubEnv {
        let mut env = GrubEnv::new();
        env.set(BOOT_SET_KEY, self.boot_set.letter())
            .expect("valid key");
        env.set(TRY_SET_KEY, self.try_set.map_or("", BootSet::letter))
            .expect("valid key");
        env
    }

    /// What the GRUB script does at boot: take the pending try (clearing it) or else the
    /// boot set. Returns the set booted.
    pub fn grub_boot(&mut self) -> BootSet {
        self.try_set.take().unwrap_or(self.boot_set)
    }
}

/// The set to boot when no set is bootable by the GPT rules (`gptprio.next` would stop with an
/// error): the one with the higher priority, A on a tie or when both are 0. Booting the last
/// image that was given priority beats booting nothing, e.g. when an image works but its
/// "mark successful" step is broken.
fn last_resort(flags: &BootFlags) -> BootSet {
    if flags.boot_b.priority > flags.boot_a.priority {
        BootSet::B
    } else {
        BootSet::A
    }
}

/// The 1024-byte block for `flags`.
pub fn render(flags: &BootFlags) -> [u8; ENV_SIZE] {
    BootSelection::from_flags(flags)
        .to_env()
        .render()
        .expect("two short variables always fit")
}

/// The selection held in a block.
pub fn parse(block: &[u8]) -> Result<BootSelection> {
    Ok(BootSelection::from_env(&GrubEnv::parse(block)?))
}

/// Writes GRUB's consumption of a try back into the GPT state: if `flags` promise a try that
/// the environment no longer holds, take one try off that set, as `gptprio.next` would have.
/// Returns the set whose try was recorded.
pub fn record_consumed_try(flags: &mut BootFlags, env: &BootSelection) -> Option<BootSet> {
    let promised = BootSelection::from_flags(flags).try_set?;
    if env.try_set == Some(promised) {
        return None;
    }
    let entry = flags.get_mut(promised);
    entry.tries_left = entry.tries_left.saturating_sub(1);
    Some(promised)
}

/// Byte offsets (within `esp`, the bytes of a FAT partition) of every well-formed GRUB
/// environment block that starts a cluster. A block that the image builder wrote has exactly
/// one.
pub fn locate_in_fat(esp: &[u8]) -> std::result::Result<Vec<u64>, String> {
    let geometry = FatGeometry::parse(esp)?;
    let mut found = Vec::new();
    let mut offset = geometry.data_start;
    while offset + ENV_SIZE as u64 <= esp.len() as u64 {
        let at = offset as usize;
        let block = &esp[at..at + ENV_SIZE];
        if block.starts_with(SIGNATURE.as_bytes()) && GrubEnv::parse(block).is_ok() {
            found.push(offset);
        }
        offset += geometry.cluster_size;
    }
    Ok(found)
}

/// Where the clusters of a FAT12/16/32 file system start.
struct FatGeometry {
    data_start: u64,
    cluster_size: u64,
}

impl FatGeometry {
    fn parse(boot: &[u8]) -> std::result::Result<Self, String> {
        if boot.len() < 512 || boot[510..512] != [0x55, 0xaa] {
            return Err("no boot sector signature".to_string());
        }
        let u16_at = |at: usize| u64::from(u16::from_le_bytes([boot[at], boot[at + 1]]));
        let bytes_per_sector = u16_at(11);
        let sectors_per_cluster = u64::from(boot[13]);
        let reserved = u16_at(14);
        let fats = u64::from(boot[16]);
        let root_entries = u16_at(17);
        let fat_size = match u16_at(22) {
            0 => u64::from(u32::from_le_bytes([boot[36], boot[37], boot[38], boot[39]])),
            n => n,
        };
        if ![512, 1024, 2048, 4096].contains(&bytes_per_sector)
            || !sectors_per_cluster.is_power_of_two()
            || fats == 0
            || fat_size == 0
        {
            return Err("implausible BIOS parameter block".to_string());
        }
        let root_dir_bytes = (root_entries * 32).div_ceil(bytes_per_sector) * bytes_per_sector;
        Ok(FatGeometry {
            data_start: (reserved + fats * fat_size) * bytes_per_sector + root_dir_bytes,
            cluster_size: bytes_per_sector * sectors_per_cluster,
        })
    }
}

/// The environment block of a Ballast disk (image file or block device) and its byte offset on
/// the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskEnv {
    /// Byte offset of the block from the start of the disk.
    pub offset: u64,
    /// Its variables.
    pub env: GrubEnv,
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| IoSnafu { action, path }.into_error(source)
}

/// Finds and reads the environment block on the EFI system partition of `disk`.
pub fn read_disk(disk: &Path) -> Result<DiskEnv> {
    let layout = read_layout(disk).context(error::DiskSnafu)?;
    let esp = layout
        .partition(PartitionRole::EfiSystem)
        .expect("read_layout returns every role");
    let file = File::open(disk).map_err(io_err("open", disk))?;
    let mut bytes = vec![0u8; esp.size as usize];
    file.read_exact_at(&mut bytes, esp.offset)
        .map_err(io_err("read the EFI system partition of", disk))?;
    let found = locate_in_fat(&bytes).map_err(|reason| error::Error::NotFat {
        path: disk.to_path_buf(),
        reason,
    })?;
    match found[..] {
        [] => error::EnvNotFoundSnafu { path: disk }.fail(),
        [at] => Ok(DiskEnv {
            offset: esp.offset + at,
            env: GrubEnv::parse(&bytes[at as usize..at as usize + ENV_SIZE])?,
        }),
        _ => error::EnvAmbiguousSnafu {
            path: disk,
            count: found.len(),
        }
        .fail(),
    }
}

/// Rewrites the environment block of `disk` in place so that it matches the disk's GPT boot
/// flags. Writes nothing when it already matches. Returns the selection now on disk.
pub fn sync_disk(disk: &Path) -> Result<BootSelection> {
    let flags = read_flags(disk).context(error::DiskSnafu)?;
    let current = read_disk(disk)?;
    write_selection(disk, &current, &flags)
}

fn write_selection(disk: &Path, current: &DiskEnv, flags: &BootFlags) -> Result<BootSelection> {
    let wanted = BootSelection::from_flags(flags);
    let mut env = current.env.clone();
    for (key, value) in wanted.to_env().vars() {
        env.set(key, value)?;
    }
    if env != current.env {
        let block = env.render()?;
        let file = OpenOptions::new()
            .write(true)
            .open(disk)
            .map_err(io_err("open for writing", disk))?;
        file.write_all_at(&block, current.offset)
            .map_err(io_err("write the GRUB environment to", disk))?;
        file.sync_all()
            .map_err(io_err("flush the GRUB environment to", disk))?;
    }
    Ok(wanted)
}

/// The boot-time step on a node: record a try GRUB consumed into the GPT
/// ([`record_consumed_try`]) and bring the environment block in line with the GPT. Returns the
/// GPT flags after the step.
pub fn reconcile_disk(disk: &Path) -> Result<BootFlags> {
    let mut flags = read_flags(disk).context(error::DiskSnafu)?;
    let current = read_disk(disk)?;
    let seen = BootSelection::from_env(&current.env);
    if let Some(set) = record_consumed_try(&mut flags, &seen) {
        tracing::info!(%set, "GRUB used the pending try of set {set}; recording it in the GPT");
        write_flags(disk, &flags).context(error::DiskSnafu)?;
    }
    write_selection(disk, &current, &flags)?;
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use disk_layout::PartitionFlags;
    use std::path::PathBuf;

    /// `program` on the PATH or in the usual system directories.
    fn find_program(program: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    }

    #[test]
    fn render_matches_grub_editenv_layout() {
        let mut env = GrubEnv::new();
        env.set("boot_set", "A").unwrap();
        env.set("try_set", "").unwrap();
        env.set("note", "a\\b\nc").unwrap();
        let block = env.render().unwrap();
        let text = std::str::from_utf8(&block).unwrap();
        assert!(
            text.starts_with("# GRUB Environment Block\nboot_set=A\ntry_set=\nnote=a\\\\b\\\nc\n#")
        );
        assert!(text.ends_with("####"));
        assert_eq!(GrubEnv::parse(&block).unwrap(), env);

        env.set("boot_set", "B").unwrap();
        assert_eq!(env.vars().next(), Some(("boot_set", "B")));
        assert!(env.set("bad key", "x").is_err());
        env.set("big", &"x".repeat(1000)).unwrap();
        assert!(env
            .render()
            .unwrap_err()
            .to_string()
            .contains("does not fit"));
    }

    #[test]
    fn parse_refuses_other_data() {
        let good = BootSelection {
            boot_set: BootSet::A,
            try_set: None,
        }
        .to_env()
        .render()
        .unwrap();
        assert!(GrubEnv::parse(&good[..1000]).is_err());
        let mut broken = good;
        broken[0] = b'X';
        assert!(GrubEnv::parse(&broken).is_err());
        let mut trailing = good;
        trailing[1000] = b'x';
        assert!(GrubEnv::parse(&trailing).is_err());
        let mut no_eq = [b'#'; ENV_SIZE];
        no_eq[..SIGNATURE.len()].copy_from_slice(SIGNATURE.as_bytes());
        no_eq[SIGNATURE.len()..SIGNATURE.len() + 4].copy_from_slice(b"abc\n");
        assert!(GrubEnv::parse(&no_eq).is_err());
    }

    /// `grub-editenv` (grub-common), the reference writer, reads our blocks and writes blocks
    /// we read.
    #[test]
    fn agrees_with_grub_editenv() {
        let Some(editenv) = find_program("grub-editenv") else {
            panic!(
                "grub-editenv is missing: apt-get install -y --no-install-recommends grub-common"
            );
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grubenv");
        let run = |args: &[&str]| {
            let out = std::process::Command::new(&editenv)
                .arg(&path)
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        run(&["create"]);
        run(&["set", "boot_set=B", "try_set=A"]);
        let sel = parse(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            sel,
            BootSelection {
                boot_set: BootSet::B,
                try_set: Some(BootSet::A)
            }
        );

        let mut flags = BootFlags::fresh_image();
        flags.mark_inactive_valid(BootSet::A);
        flags.upgrade_to_inactive(BootSet::A).unwrap();
        std::fs::write(&path, render(&flags)).unwrap();
        assert_eq!(run(&["list"]), "boot_set=A\ntry_set=B\n");
    }

    fn all_flags() -> impl Iterator<Item = PartitionFlags> + Clone {
        (0..=15u8).flat_map(|priority| {
            (0..=15u8).flat_map(move |tries_left| {
                [false, true]
                    .into_iter()
                    .map(move |successful| PartitionFlags {
                        priority,
                        tries_left,
                        successful,
                    })
            })
        })
    }

    /// For every GPT state: GRUB reading the derived block boots what `gptprio.next` would
    /// boot, and recording the consumed try afterwards gives the GPT state `gptprio.next`
    /// would have left.
    #[test]
    fn grub_plus_reconcile_equals_gptprio() {
        for boot_a in all_flags() {
            for boot_b in all_flags() {
                let flags = BootFlags {
                    boot_a,
                    boot_b,
                    ever_succeeded: false,
                };
                let mut gptprio = flags;
                let Some(expected) = gptprio.next_boot_set() else {
                    let fallback = if boot_b.priority > boot_a.priority {
                        BootSet::B
                    } else {
                        BootSet::A
                    };
                    assert_eq!(
                        BootSelection::from_flags(&flags),
                        BootSelection {
                            boot_set: fallback,
                            try_set: None
                        }
                    );
                    continue;
                };
                let mut env = parse(&render(&flags)).unwrap();
                assert_eq!(env.grub_boot(), expected, "{flags}");
                let mut ours = flags;
                record_consumed_try(&mut ours, &env);
                assert_eq!(ours, gptprio, "{flags}");
                // A second reconcile with the same block changes nothing more.
                let mut again = ours;
                let synced = parse(&render(&ours)).unwrap();
                assert_eq!(record_consumed_try(&mut again, &synced), None);
                assert_eq!(again, ours);
            }
        }
    }

    /// The update cycle of DESIGN.md, played through signpost's operations, GRUB's script and
    /// the boot-time reconcile.
    #[test]
    fn update_success_and_fallback() {
        // Fresh image: A, no try.
        let mut flags = BootFlags::fresh_image();
        let mut env = parse(&render(&flags)).unwrap();
        assert_eq!(
            env,
            BootSelection {
                boot_set: BootSet::A,
                try_set: None
            }
        );
        assert_eq!(env.grub_boot(), BootSet::A);

        // Running A, an update is written to B and B is given one try.
        flags.mark_successful_boot(BootSet::A);
        flags.clear_inactive(BootSet::A);
        flags.mark_inactive_valid(BootSet::A);
        flags.upgrade_to_inactive(BootSet::A).unwrap();
        let staged = flags;
        let mut env = parse(&render(&flags)).unwrap();
        assert_eq!(
            env,
            BootSelection {
                boot_set: BootSet::A,
                try_set: Some(BootSet::B)
            }
        );

        // Case 1: B never comes up far enough to reconcile. GRUB already cleared the try, so
        // the next reset boots A, and A's reconcile spends B's try in the GPT.
        assert_eq!(env.grub_boot(), BootSet::B);
        assert_eq!(env.grub_boot(), BootSet::A);
        assert_eq!(record_consumed_try(&mut flags, &env), Some(BootSet::B));
        assert_eq!(flags.boot_b.tries_left, 0);
        assert_eq!(
            parse(&render(&flags)).unwrap(),
            BootSelection {
                boot_set: BootSet::A,
                try_set: None
            }
        );

        // Case 2: B boots, reconciles and marks itself successful: B from now on.
        let mut flags = staged;
        let mut env = parse(&render(&flags)).unwrap();
        assert_eq!(env.grub_boot(), BootSet::B);
        assert_eq!(record_consumed_try(&mut flags, &env), Some(BootSet::B));
        flags.mark_successful_boot(BootSet::B);
        let mut env = parse(&render(&flags)).unwrap();
        assert_eq!(
            env,
            BootSelection {
                boot_set: BootSet::B,
                try_set: None
            }
        );
        assert_eq!(env.grub_boot(), BootSet::B);
    }

    #[test]
    fn garbage_in_the_block_means_set_a_without_try() {
        let mut env = GrubEnv::new();
        env.set(BOOT_SET_KEY, "C").unwrap();
        env.set(TRY_SET_KEY, "b").unwrap();
        assert_eq!(
            BootSelection::from_env(&env),
            BootSelection {
                boot_set: BootSet::A,
                try_set: None
            }
        );
    }

    #[test]
    fn fat_geometry_rejects_non_fat() {
        assert!(locate_in_fat(&[0u8; 4096]).is_err());
    }
}
