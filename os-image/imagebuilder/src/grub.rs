//! GRUB: the EFI loader image with its embedded configuration (which picks the partition set),
//! and the per-image `grub.cfg` on the BOOT partition (which boots the kernel).

use crate::error::{self, Result};
use crate::tools::{self, GRUB_MKIMAGE};
use boot_params::{DeviceSpec, VerityRoot};
use disk_layout::{BootSet, PartitionRole};
use grubenv::{BOOT_SET_KEY, ESP_PATH, TRY_SET_KEY};
use snafu::ensure;
use std::path::{Path, PathBuf};

/// Where Debian's grub-efi-amd64-bin installs the x86_64-efi modules.
pub const GRUB_EFI_MODULES_DIR: &str = "/usr/lib/grub/x86_64-efi";

/// Where the loader lives on the EFI system partition (the removable-media path, so firmware
/// finds it without a boot entry).
pub const LOADER_ESP_PATH: &str = "/EFI/BOOT/BOOTX64.EFI";

/// Where the per-image configuration lives on each BOOT partition.
pub const BOOT_CFG_PATH: &str = "/grub/grub.cfg";

/// Kernel parameters this builder writes into each BOOT partition's `grub.cfg` (which
/// partitions, the root hash: a [`VerityRoot`]); the image's own command line must not set
/// them. Other `ballast.*` parameters (`ballast.boot-deadline`, `ballast.debug`, ...) pass
/// through.
pub const BUILDER_PARAMETERS: &[&str] = VerityRoot::PARAMS;

/// GRUB variable that holds the chosen set (`A` or `B`) when the BOOT partition's `grub.cfg`
/// runs; the kernel command line names ROOT and HASH through it.
pub const SET_VAR: &str = "ballast_set";

/// GRUB variable that holds the chosen BOOT partition, e.g. `(hd0,gpt2)`.
pub const BOOT_VAR: &str = "ballast_boot";

/// Modules built into the loader image. `normal` brings the script language, `memdisk` and
/// `tar` hold the A/B script inside the image, `regexp` finds the disk the loader came from,
/// `loadenv` reads and writes the environment block.
pub const GRUB_MODULES: &[&str] = &[
    "normal",
    "memdisk",
    "tar",
    "part_gpt",
    "fat",
    "ext2",
    "linux",
    "gzio",
    "configfile",
    "loadenv",
    "echo",
    "test",
    "regexp",
    "serial",
    "terminal",
    "efi_gop",
    "sleep",
    "reboot",
    "halt",
];

/// The configuration embedded in the loader with `grub-mkimage --config`. GRUB runs it with its
/// minimal rescue parser (no `if`, no comments), so it only sets up the serial console and
/// points `prefix` at the memdisk, whose `grub.cfg` ([`loader_script`]) normal mode then runs.
pub fn early_config() -> String {
    "serial --unit=0 --speed=115200\n\
     terminal_input serial console\n\
     terminal_output serial console\n\
     set timeout=0\n\
     set prefix=(memdisk)\n"
        .to_string()
}

/// The A/B script, `grub.cfg` on the loader's memdisk. It runs on every boot:
///
/// 1. read `boot_set` and `try_set` from the environment block on the EFI system partition
///    (only those two variables, so the block cannot set anything else);
/// 2. a pending try is cleared in the block (`save_env`) *before* its set is booted; if that
///    write fails the try is skipped, so a broken block cannot cause a boot loop;
/// 3. the BOOT partition of the set is found by its number on the loader's own disk (stock
///    GRUB cannot search by GPT partition name), and its `grub/grub.cfg` is sourced with
///    `ballast_set` and `ballast_boot` set;
/// 4. if that returns, the boot failed: wait 30 s and reset.
///
/// Comparisons prefix both sides with `x`, so that an unset or empty variable still makes a
/// well-formed `test`.
pub fn loader_script() -> String {
    let boot_a = PartitionRole::Boot(BootSet::A).number();
    let boot_b = PartitionRole::Boot(BootSet::B).number();
    format!(
        r#"# Ballast A/B boot script, on the memdisk of {LOADER_ESP_PATH} (imagebuilder).
# The A/B state lives in the GPT attribute bits of BOOT-A and BOOT-B; the OS copies the
# decision into {ESP_PATH} (boot_set, try_set). A try is cleared here before it is
# booted, so a boot that never marks success falls back at the next reset.
set timeout=0
# $cmdpath is where the firmware loaded this image from, e.g. (hd0,gpt1)/EFI/BOOT ($root
# is the memdisk).
set ballast_esp=
set ballast_disk=
regexp --set=1:ballast_esp '^\(([^)]*)\)' "$cmdpath"
regexp --set=1:ballast_disk '^\(([^)]*),[^,)]*\)' "$cmdpath"
if [ "x$ballast_disk" = "x" ]; then
  echo "ballast: cannot tell the boot disk from '$cmdpath'; resetting in 30 s"
  sleep 30
  reboot
fi
set ballast_env="($ballast_esp){ESP_PATH}"

set {BOOT_SET_KEY}=A
set {TRY_SET_KEY}=
load_env --file "$ballast_env" {BOOT_SET_KEY} {TRY_SET_KEY}

set {SET_VAR}="${{{BOOT_SET_KEY}}}"
set ballast_try=
if [ "x${{{TRY_SET_KEY}}}" = "xA" ]; then
  set ballast_try=A
fi
if [ "x${{{TRY_SET_KEY}}}" = "xB" ]; then
  set ballast_try=B
fi
if [ "x$ballast_try" != "x" ]; then
  set {TRY_SET_KEY}=
  if save_env --file "$ballast_env" {TRY_SET_KEY}; then
    echo "ballast: trying set $ballast_try once"
    set {SET_VAR}="$ballast_try"
  else
    echo "ballast: cannot clear the try in $ballast_env; not trying set $ballast_try"
  fi
fi
if [ "x${{{SET_VAR}}}" = "xB" ]; then
  set {BOOT_VAR}="($ballast_disk,gpt{boot_b})"
else
  set {SET_VAR}=A
  set {BOOT_VAR}="($ballast_disk,gpt{boot_a})"
fi

echo "ballast: booting set ${{{SET_VAR}}} from ${{{BOOT_VAR}}}"
source "${{{BOOT_VAR}}}{BOOT_CFG_PATH}"
echo "ballast: booting set ${{{SET_VAR}}} failed; resetting in 30 s"
sleep 30
reboot
"#
    )
}

/// A tar archive holding `loader_script()` as `grub.cfg`, for `grub-mkimage --memdisk`: owned
/// by root, mode 0644, mtime `epoch`, so the loader image is reproducible.
pub fn memdisk_tar(epoch: u64) -> Vec<u8> {
    let script = loader_script();
    let mut header = tar::Header::new_ustar();
    header.set_path("grub.cfg").expect("short path");
    header.set_size(script.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(epoch);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append(&header, script.as_bytes())
        .expect("writing to memory");
    builder.into_inner().expect("writing to memory")
}

/// Characters that GRUB's script parser would interpret inside a `linux` command line.
const GRUB_SPECIAL: &[char] = &[
    '$', '"', '\'', '\\', ';', '{', '}', '|', '&', '<', '>', '#', '`', '\n', '\r', '\t', ' ',
];

/// Checks that a kernel parameter passes through GRUB's script parser unchanged.
pub fn check_kernel_param(param: &str) -> Result<()> {
    ensure!(
        !param.is_empty(),
        error::BadKernelParamSnafu {
            param,
            reason: "it is empty"
        }
    );
    if let Some(c) = param
        .chars()
        .find(|c| GRUB_SPECIAL.contains(c) || !c.is_ascii() || c.is_ascii_control())
    {
        return error::BadKernelParamSnafu {
            param,
            reason: format!(
                "{c:?} would be interpreted by GRUB's script parser; use printable ASCII without \
                 spaces, quotes, '$', '\\', ';', '{{', '}}', '|', '&', '<', '>', '#' or '`'"
            ),
        }
        .fail();
    }
    Ok(())
}

/// The GRUB variable reference that names the partition set in a BOOT partition's `grub.cfg`.
pub fn set_reference() -> String {
    format!("${{{SET_VAR}}}")
}

/// The verity root of partition set `set` (a letter, or [`set_reference`] for a `grub.cfg`
/// that serves either set) for a hash tree with `root_hash`, `salt` (hex) and `data_blocks`:
/// ROOT-`set` and HASH-`set` by partition name, no verity superblock, and DATA.
pub fn verity_root(set: &str, root_hash: String, salt: String, data_blocks: u64) -> VerityRoot {
    VerityRoot {
        root: DeviceSpec::PartLabel(format!("ROOT-{set}")),
        hash: DeviceSpec::PartLabel(format!("HASH-{set}")),
        root_hash,
        salt,
        data_blocks,
        hash_start_block: 0,
        data: Some(DeviceSpec::PartLabel("DATA".to_string())),
    }
}

/// The kernel command line: the variant's parameters, then the early init's.
pub fn kernel_cmdline(variant_params: &[String], root: &VerityRoot) -> String {
    let mut params: Vec<String> = variant_params.to_vec();
    params.push(root.to_cmdline_args());
    params.join(" ")
}

/// The `grub.cfg` of a BOOT partition. It names no partition set itself: `root` names the
/// partitions through [`set_reference`], and the loader sets `ballast_set` and
/// `ballast_boot`, so the same BOOT image works in either set (an update writes it to whichever
/// set is inactive).
pub fn boot_config(variant_params: &[String], root: &VerityRoot, version: &str) -> String {
    let cmdline = kernel_cmdline(variant_params, root);
    format!(
        "# Ballast {version} boot configuration, written by imagebuilder.\n\
         # {SET_VAR} (A or B) and {BOOT_VAR} (this partition) are set by the loader.\n\
         echo \"ballast: loading Ballast {version} from ${{{BOOT_VAR}}}\"\n\
         linux \"${{{BOOT_VAR}}}/vmlinuz\" {cmdline}\n\
         initrd \"${{{BOOT_VAR}}}/initrd\"\n\
         boot\n"
    )
}

/// Builds the loader image with `grub-mkimage`, embedding `config` and the `memdisk` tar.
pub fn mkimage(
    out: &Path,
    config: &Path,
    memdisk: &Path,
    modules_dir: &Path,
    epoch: u64,
) -> Result<()> {
    let missing: Vec<&str> = GRUB_MODULES
        .iter()
        .copied()
        .filter(|m| !modules_dir.join(format!("{m}.mod")).is_file())
        .collect();
    ensure!(
        missing.is_empty(),
        error::MissingGrubModulesSnafu {
            dir: PathBuf::from(modules_dir),
            missing: missing.join(", ")
        }
    );
    let mut cmd = tools::command(GRUB_MKIMAGE, epoch)?;
    cmd.args(["--format", "x86_64-efi", "--prefix", "/EFI/BOOT"])
        .arg("--directory")
        .arg(modules_dir)
        .arg("--config")
        .arg(config)
        .arg("--memdisk")
        .arg(memdisk)
        .arg("--output")
        .arg(out)
        .args(GRUB_MODULES);
    tools::run(&mut cmd)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_params_are_checked() {
        for good in [
            "console=ttyS0,115200n8",
            "net.ifnames=0",
            "quiet",
            "systemd.unit=multi-user.target",
        ] {
            check_kernel_param(good).unwrap();
        }
        for bad in ["", "a b", "x=$y", "dm-mod.create=\"a\"", "a;b", "é"] {
            assert!(check_kernel_param(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn boot_config_names_the_set_through_the_loader() {
        let root = verity_root(&set_reference(), "ab".repeat(32), "cd".repeat(32), 42);
        let cfg = boot_config(&["console=ttyS0".to_string()], &root, "1.2.3");
        assert!(cfg.contains(
            "linux \"${ballast_boot}/vmlinuz\" console=ttyS0 \
             ballast.root=PARTLABEL=ROOT-${ballast_set} ballast.hash=PARTLABEL=HASH-${ballast_set} "
        ));
        assert!(cfg.contains("ballast.datablocks=42 ballast.data=PARTLABEL=DATA\n"));
        assert!(cfg.contains("initrd \"${ballast_boot}/initrd\"\nboot\n"));
        assert_eq!(
            kernel_cmdline(&[], &verity_root("B", "ab".repeat(32), "cd".repeat(32), 42)),
            format!(
                "ballast.root=PARTLABEL=ROOT-B ballast.hash=PARTLABEL=HASH-B \
                 ballast.roothash={} ballast.salt={} ballast.datablocks=42 \
                 ballast.data=PARTLABEL=DATA",
                root.root_hash, root.salt
            )
        );
    }

    /// The whole `grub.cfg`, byte for byte: a change here changes every BOOT image.
    #[test]
    fn boot_config_bytes() {
        let root = verity_root(&set_reference(), "ab".repeat(32), "cd".repeat(32), 42);
        let params = ["console=ttyS0".to_string(), "quiet".to_string()];
        let expected = format!(
            "# Ballast 1.2.3 boot configuration, written by imagebuilder.\n\
             # ballast_set (A or B) and ballast_boot (this partition) are set by the loader.\n\
             echo \"ballast: loading Ballast 1.2.3 from ${{ballast_boot}}\"\n\
             linux \"${{ballast_boot}}/vmlinuz\" console=ttyS0 quiet \
             ballast.root=PARTLABEL=ROOT-${{ballast_set}} \
             ballast.hash=PARTLABEL=HASH-${{ballast_set}} ballast.roothash={} ballast.salt={} \
             ballast.datablocks=42 ballast.data=PARTLABEL=DATA\n\
             initrd \"${{ballast_boot}}/initrd\"\n\
             boot\n",
            "ab".repeat(32),
            "cd".repeat(32)
        );
        assert_eq!(boot_config(&params, &root, "1.2.3"), expected);
    }

    /// What GRUB passes to the kernel, once it has filled in the set, is what the early init
    /// and signpost parse.
    #[test]
    fn the_node_reads_what_grub_passes() {
        let root = verity_root(&set_reference(), "ab".repeat(32), "cd".repeat(32), 42);
        let passed =
            kernel_cmdline(&["console=ttyS0".to_string()], &root).replace(&set_reference(), "B");
        assert_eq!(
            VerityRoot::parse(&passed),
            Ok(verity_root("B", "ab".repeat(32), "cd".repeat(32), 42))
        );
    }

    /// GRUB runs the embedded configuration with its rescue parser, which knows only plain
    /// commands.
    #[test]
    fn early_config_is_plain_commands() {
        for line in early_config().lines() {
            let command = line.split_whitespace().next().unwrap();
            assert!(
                ["serial", "terminal_input", "terminal_output", "set"].contains(&command),
                "{line}"
            );
        }
    }

    #[test]
    fn memdisk_holds_the_script_reproducibly() {
        let tar = memdisk_tar(1_700_000_000);
        assert_eq!(tar, memdisk_tar(1_700_000_000));
        let mut archive = tar::Archive::new(&tar[..]);
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("grub.cfg"));
        assert_eq!(entry.header().mtime().unwrap(), 1_700_000_000);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
        assert_eq!(text, loader_script());
        assert!(entries.next().is_none());
    }

    #[test]
    fn loader_uses_the_disk_layout_numbers() {
        let cfg = loader_script();
        assert!(cfg.contains("set ballast_boot=\"($ballast_disk,gpt2)\""));
        assert!(cfg.contains("set ballast_boot=\"($ballast_disk,gpt6)\""));
        assert!(cfg.contains("load_env --file \"$ballast_env\" boot_set try_set"));
        assert!(cfg.contains("save_env --file \"$ballast_env\" try_set"));
        assert!(cfg.contains("set ballast_env=\"($ballast_esp)/EFI/BOOT/grubenv\""));
        assert!(cfg.contains(r#"regexp --set=1:ballast_disk '^\(([^)]*),[^,)]*\)' "$cmdpath""#));
        assert!(cfg.contains("source \"${ballast_boot}/grub/grub.cfg\""));
    }
}
