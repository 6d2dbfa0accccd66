//! Ballast's image builder: from a staged root tree to a bootable A/B disk image, the three
//! update images and a manifest.
//!
//! # Background
//!
//! The build orchestrator (`buildsys`) stages the root file system of a variant (Debian
//! packages, systemd, Ballast's binaries) and hands this crate the tree, the kernel, the
//! modules the early init needs and the variant's kernel parameters. [`build_image`] then:
//!
//! 1. **ROOT**: makes a compressed erofs image of the tree (`mkfs.erofs`, lz4hc level 12 in
//!    256 KiB clusters, all files owned by root, every timestamp `source_date_epoch`, a UUID
//!    derived from the build), and refuses it if it is larger than a ROOT partition.
//! 2. **HASH**: computes its dm-verity tree with the `verity` crate (sha256, 4096-byte blocks,
//!    no superblock, byte-identical to `veritysetup format --no-superblock`).
//! 3. **initramfs**: a gzip-compressed newc archive with the static early init as `/init`,
//!    `/dev/console`, the listed modules from `usr/lib/modules/<kernel version>` of the tree and
//!    `/etc/modules.order` listing them in load order.
//! 4. **BOOT**: an ext4 image without journal holding `vmlinuz`, `initrd` and `grub/grub.cfg`,
//!    which boots the kernel with the variant's parameters followed by the early init's:
//!    `ballast.root=PARTLABEL=ROOT-${ballast_set} ballast.hash=PARTLABEL=HASH-${ballast_set}
//!    ballast.roothash=… ballast.salt=… ballast.datablocks=… ballast.data=PARTLABEL=DATA`.
//!    The set letter comes from the loader at boot, so one BOOT image serves either set and an
//!    update can write it to whichever set is inactive.
//! 5. **EFI-SYSTEM**: a FAT file system with `/EFI/BOOT/BOOTX64.EFI`, a GRUB image made by
//!    `grub-mkimage` from Debian's x86_64-efi modules with an embedded early configuration and
//!    a memdisk holding the A/B script, and the GRUB environment block `/EFI/BOOT/grubenv`.
//! 6. **Disk**: the GPT from `disk_layout::create_disk` (BOOT-A priority 1 and successful),
//!    with EFI-SYSTEM, BOOT-A, ROOT-A, HASH-A, PRIVATE (empty ext4) and DATA (empty ext4
//!    labelled `DATA`, which the early init mounts at `/local`) written in; the B set stays
//!    zeroed until the first update.
//! 7. **Outputs** in `out_dir`: `<variant>-<version>.img` (raw, sparse), optionally `.qcow2`
//!    and `.vmdk`, the update images `boot.ext4`, `root.erofs`, `root.verity`, and
//!    `manifest.json` ([`BuildManifest`]).
//!
//! ## Choosing the partition set: GPT bits, a derived GRUB environment, stock GRUB
//!
//! The A/B state lives only in the GPT attribute bits of BOOT-A and BOOT-B (priority, tries
//! left, successful; see `disk_layout::flags`). Stock GRUB cannot read those bits, so the OS
//! derives a small GRUB environment block from them ([`grubenv`]): `boot_set` (the set to boot)
//! and `try_set` (a set to boot once, after an update). The loader's script
//! ([`grub::loader_script`], on a memdisk inside `BOOTX64.EFI`, started by the embedded early
//! configuration [`grub::early_config`]) reads the two variables, and if `try_set` is set it
//! clears it in the block with `save_env` *before* booting that set. A new image that never marks its boot
//! successful is therefore not booted again: the next reset boots `boot_set`. On the node,
//! signpost calls [`grubenv::reconcile_disk`] early in every boot (it records a try GRUB used
//! into the GPT, as Bottlerocket's `gptprio.next` does at boot) and [`grubenv::sync_disk`] after
//! every change of the GPT bits. The BOOT partition is found by its partition number on the
//! loader's own disk (2 for BOOT-A, 6 for BOOT-B, fixed by `disk_layout`), because stock GRUB
//! cannot search by GPT partition name either.
//!
//! ## Reproducibility
//!
//! The same inputs give byte-identical outputs. Everything that is usually random is derived
//! from the build's identity, `variant`, `version` and `build_id` ([`seed::BuildSeed`]): the
//! file system UUIDs, the ext4 directory hash seeds, the FAT volume ID, the partition GUIDs, the
//! VMDK content ID and the dm-verity salt. Timestamps are `source_date_epoch` (passed to the
//! tools as `SOURCE_DATE_EPOCH`, `E2FSPROGS_FAKE_TIME`, `mkfs.erofs -T`, and set on staged
//! files); ext4 inodes get their owner and times fixed with `debugfs` after `mke2fs -d`, which
//! otherwise copies the host's change times; mke2fs reads a configuration written by the
//! builder (fixed features) instead of the host's `/etc/mke2fs.conf`.
//!
//! The salt is a hash of variant, version and build ID instead of random bytes. dm-verity's
//! salt exists so that hashes computed for one image are useless for another; that only needs
//! the salt to differ between images, not to be secret (it is on the kernel command line). Two
//! different releases differ in version, and two builds of one version in build ID, so each
//! build still has its own salt, while rebuilding the same inputs gives the same root hash.
//!
//! # Usage
//!
//! ```no_run
//! use imagebuilder::{build_image, Format, ImageInput};
//!
//! let input = ImageInput {
//!     root_dir: "build/dev/root".into(),
//!     kernel: "build/dev/root/usr/lib/modules/6.1.0-28-cloud-amd64/vmlinuz".into(),
//!     kernel_version: "6.1.0-28-cloud-amd64".into(),
//!     initramfs_modules: vec!["kernel/fs/erofs/erofs.ko".into()],
//!     init_binary: "target/x86_64-unknown-linux-gnu/release/init".into(),
//!     cmdline: vec!["console=ttyS0,115200n8".into(), "net.ifnames=0".into()],
//!     layout: disk_layout::Layout::default(),
//!     disk_size_mib: None,
//!     formats: vec![Format::Raw, Format::Qcow2],
//!     variant: "dev".into(),
//!     version: "0.1.0".into(),
//!     build_id: "4f2a9c1".into(),
//!     out_dir: "build/images/dev".into(),
//!     source_date_epoch: 1_700_000_000,
//! };
//! let manifest = build_image(&input)?;
//! println!("root hash {}", manifest.root_hash);
//! # Ok::<(), imagebuilder::Error>(())
//! ```
//!
//! Host tools (Debian 12): `apt-get install -y --no-install-recommends erofs-utils e2fsprogs
//! dosfstools mtools grub-efi-amd64-bin qemu-utils` (`qemu-utils` only for qcow2 and vmdk).
//! A missing tool is reported with this line before anything is built. No root privileges,
//! loop devices or mounts are needed.
//!
//! # Current limitations
//!
//! * x86_64 UEFI only: no BIOS boot, no Secure Boot (no shim, unsigned GRUB and kernel).
//! * Kernel parameters must be printable ASCII without quotes, `$`, `;` and other characters
//!   GRUB's script parser would interpret ([`grub::check_kernel_param`]).
//! * The loader finds BOOT-A and BOOT-B by partition number on its own disk, not by name.
//! * No boot menu: the set cannot be picked by hand at the console (`timeout=0`). GRUB writes
//!   to the serial port and the firmware console, so on firmware that mirrors its console to
//!   the serial port (OVMF does) GRUB's few lines appear twice there.
//! * More than one try of a new set is handed out one try per boot of the fallback set (see
//!   [`grubenv`]); signpost only ever gives one.
//! * The EFI system partition is FAT12/16/32 as `mkfs.fat` picks for its size; the GRUB
//!   environment must stay the one block `mcopy` wrote (GRUB and [`grubenv`] rewrite it in
//!   place, never move it).
//! * DATA is formatted at the size the layout gives it; growing it to the disk is the node's job.
//! * Byte-identical output is guaranteed for the same host tool versions; other versions of
//!   erofs-utils, e2fsprogs, dosfstools, mtools, GRUB or QEMU may lay out bytes differently.
//! * The raw image is always written (the other formats are converted from it), and the whole
//!   build is staged in a temporary directory inside `out_dir` before the outputs are moved in.
#![forbid(unsafe_code)]

pub mod disk;
pub mod error;
pub mod fs;
pub mod grub;
pub mod initramfs;
pub mod manifest;
pub mod seed;
pub mod tools;

pub use error::{Error, Result};
/// The GRUB environment block, kept in its own crate so that signpost can use it without this
/// one; re-exported for the image tests and existing callers.
pub use grubenv;
pub use manifest::{BuildManifest, DiskImage, FileInfo, Format, PartitionEntry, UpdateImages};

use disk_layout::{create_disk, BootFlags, BootSet, Layout, PartitionRole, MIB};
use manifest::GrubEnvLocation;
use seed::BuildSeed;
use snafu::{ensure, ResultExt};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The only architecture built so far.
pub const ARCH: &str = "x86_64";

/// Names of the update images in the output directory.
pub const BOOT_IMAGE: &str = "boot.ext4";
pub const ROOT_IMAGE: &str = "root.erofs";
pub const HASH_IMAGE: &str = "root.verity";
/// Name of the manifest in the output directory.
pub const MANIFEST: &str = "manifest.json";

/// Everything a build needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInput {
    /// The staged root tree; becomes the erofs root image as it is (modes included; owners
    /// are all set to root).
    pub root_dir: PathBuf,
    /// The kernel image (bzImage with EFI stub), installed on BOOT as `vmlinuz`.
    pub kernel: PathBuf,
    /// Kernel release (`uname -r`); modules are read from
    /// `<root_dir>/usr/lib/modules/<kernel_version>/`.
    pub kernel_version: String,
    /// Modules for the initramfs, relative to that directory, dependencies first.
    pub initramfs_modules: Vec<String>,
    /// The static early-init binary (`/init` of the initramfs).
    pub init_binary: PathBuf,
    /// The variant's kernel parameters, placed before the early init's. The `ballast.*`
    /// parameters of [`grub::BUILDER_PARAMETERS`] are the builder's and refused here.
    pub cmdline: Vec<String>,
    /// Partition sizes.
    pub layout: Layout,
    /// Disk size in MiB; `None` is the smallest disk for `layout` (`Layout::min_disk_size`,
    /// which gives DATA 1 MiB when `layout.data_mib` is `None`).
    pub disk_size_mib: Option<u64>,
    /// Disk formats besides raw (raw is always written; listing it is allowed).
    pub formats: Vec<Format>,
    /// Variant name, e.g. `dev`.
    pub variant: String,
    /// OS version, e.g. `1.2.0`.
    pub version: String,
    /// Build identifier, e.g. a commit hash.
    pub build_id: String,
    /// Where the outputs go (created if needed).
    pub out_dir: PathBuf,
    /// Timestamp for every file and file system (seconds since 1970).
    pub source_date_epoch: u64,
}

impl ImageInput {
    /// The output file name of the disk image in `format`.
    pub fn disk_file_name(&self, format: Format) -> String {
        format!("{}-{}.{}", self.variant, self.version, format.extension())
    }

    fn modules_dir(&self) -> PathBuf {
        self.root_dir
            .join("usr/lib/modules")
            .join(&self.kernel_version)
    }

    /// Checks the input before anything is written.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| error::InvalidInputSnafu { reason }.fail();
        for (what, value) in [
            ("variant", &self.variant),
            ("version", &self.version),
            ("build_id", &self.build_id),
            ("kernel_version", &self.kernel_version),
        ] {
            if value.is_empty()
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
            {
                return invalid(format!(
                    "{what} {value:?} must be non-empty and use only ASCII letters, digits, \
                     '.', '_', '+' and '-'"
                ));
            }
        }
        if !self.root_dir.is_dir() {
            return invalid(format!(
                "the root tree '{}' is not a directory",
                self.root_dir.display()
            ));
        }
        for (what, path) in [
            ("kernel", &self.kernel),
            ("early init binary", &self.init_binary),
        ] {
            if !path.is_file() {
                return invalid(format!("the {what} '{}' is not a file", path.display()));
            }
        }
        for module in &self.initramfs_modules {
            initramfs::check_module_path(module)?;
        }
        for param in &self.cmdline {
            grub::check_kernel_param(param)?;
            let key = param.split('=').next().unwrap_or_default();
            if grub::BUILDER_PARAMETERS.contains(&key) {
                return invalid(format!(
                    "the kernel parameter {param:?} is set by the image builder itself"
                ));
            }
        }
        self.layout.validate().context(error::DiskSnafu)?;
        Ok(())
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> error::Error {
    let path = path.to_path_buf();
    move |source| error::Error::Io {
        action,
        path,
        source,
    }
}

fn check_fits(what: &'static str, size: u64, limit: u64, hint: &'static str) -> Result<()> {
    ensure!(
        size <= limit,
        error::TooLargeSnafu {
            what,
            size,
            size_mib: size.div_ceil(MIB),
            limit,
            limit_mib: limit / MIB,
            hint,
        }
    );
    Ok(())
}

fn file_info(path: &Path, name: &str) -> Result<FileInfo> {
    Ok(FileInfo {
        file: name.to_string(),
        size: std::fs::metadata(path)
            .map_err(io("read the size of", path))?
            .len(),
        sha256: disk::sha256_file(path)?,
    })
}

/// Builds the disk image, update images and manifest described by `input` into
/// `input.out_dir`, and returns the manifest (also written as `manifest.json`).
pub fn build_image(input: &ImageInput) -> Result<BuildManifest> {
    let started = Instant::now();
    input.validate()?;
    let mut needed = tools::BASE_TOOLS.to_vec();
    if input.formats.iter().any(|f| *f != Format::Raw) {
        needed.push(tools::QEMU_IMG);
    }
    tools::check(&needed)?;

    let out_dir = &input.out_dir;
    std::fs::create_dir_all(out_dir).map_err(io("create the output directory", out_dir))?;
    let scratch = tempfile::Builder::new()
        .prefix(".imagebuilder-")
        .tempdir_in(out_dir)
        .map_err(io("create a work directory in", out_dir))?;
    let work = scratch.path();
    let epoch = input.source_date_epoch;
    let seed = BuildSeed::new(&input.variant, &input.version, &input.build_id);
    let layout = &input.layout;

    // The disk first: it fixes the size of DATA.
    let disk_size = match input.disk_size_mib {
        Some(mib) => mib * MIB,
        None => layout.min_disk_size(),
    };
    let raw_name = input.disk_file_name(Format::Raw);
    let raw = work.join(&raw_name);
    let disk = create_disk(&raw, disk_size, layout, seed.as_bytes()).context(error::DiskSnafu)?;
    let part = |role: PartitionRole| {
        disk.partition(role)
            .expect("create_disk plans every partition")
            .clone()
    };

    // 1. ROOT.
    let root_img = work.join(ROOT_IMAGE);
    let root_size = fs::make_erofs(&input.root_dir, &root_img, seed.uuid("erofs root"), epoch)?;
    check_fits(
        "the root image (erofs)",
        root_size,
        part(PartitionRole::Root(BootSet::A)).size,
        "make the root tree smaller or raise root_mib in the variant's image layout",
    )?;
    tracing::info!(bytes = root_size, ms = ms(started), "root image built");

    // 2. HASH.
    let hash_img = work.join(HASH_IMAGE);
    let params = verity::VerityParams::new(seed.verity_salt());
    let tree = verity::format_file(&root_img, &hash_img, &params).context(error::VeritySnafu)?;
    check_fits(
        "the dm-verity hash tree",
        tree.hash_size,
        part(PartitionRole::Hash(BootSet::A)).size,
        "raise hash_mib in the variant's image layout",
    )?;
    // The BOOT image serves either set: GRUB fills in the set letter.
    let verity_root = grub::verity_root(
        &grub::set_reference(),
        tree.root_hash_hex(),
        params.salt_hex(),
        tree.data_blocks,
    );
    tracing::info!(root_hash = %verity_root.root_hash, ms = ms(started), "hash tree built");

    // 3. initramfs, 4. BOOT.
    let initrd = initramfs::build(
        &input.init_binary,
        &input.kernel_version,
        &input.modules_dir(),
        &input.initramfs_modules,
    )?;
    let boot_stage = work.join("boot");
    let grub_dir = boot_stage.join("grub");
    std::fs::create_dir_all(&grub_dir).map_err(io("create", &grub_dir))?;
    let staged = [
        (boot_stage.join("vmlinuz"), None),
        (boot_stage.join("initrd"), Some(initrd)),
        (
            boot_stage.join("grub/grub.cfg"),
            Some(grub::boot_config(&input.cmdline, &verity_root, &input.version).into_bytes()),
        ),
    ];
    let mut staged_bytes = 0;
    for (path, content) in &staged {
        match content {
            Some(bytes) => std::fs::write(path, bytes).map_err(io("write", path))?,
            None => {
                std::fs::copy(&input.kernel, path).map_err(io("copy the kernel to", path))?;
            }
        }
        set_mode(path, 0o644)?;
        staged_bytes += std::fs::metadata(path).map_err(io("read", path))?.len();
    }
    for path in [&grub_dir, &boot_stage] {
        set_mode(path, 0o755)?;
    }
    for (path, _) in &staged {
        fs::set_times(path, epoch)?;
    }
    fs::set_times(&grub_dir, epoch)?;
    fs::set_times(&boot_stage, epoch)?;
    let boot_part = part(PartitionRole::Boot(BootSet::A));
    // Leave room for the file system's own metadata (inode tables, bitmaps, directories).
    check_fits(
        "the kernel, initramfs and grub.cfg plus 4 MiB for ext4 metadata",
        staged_bytes + 4 * MIB,
        boot_part.size,
        "raise boot_mib in the variant's image layout or include fewer initramfs modules",
    )?;
    let boot_img = work.join(BOOT_IMAGE);
    fs::make_ext4(
        &boot_img,
        &fs::Ext4Spec {
            label: "BOOT",
            size: boot_part.size,
            uuid: seed.uuid("boot fs"),
            hash_seed: seed.uuid("boot fs hash seed"),
            journal: false,
            content: Some(&boot_stage),
            epoch,
        },
        work,
    )?;
    tracing::info!(ms = ms(started), "BOOT image built");

    // 5. EFI system partition.
    let esp_stage = work.join("esp");
    std::fs::create_dir_all(&esp_stage).map_err(io("create", &esp_stage))?;
    let early_cfg = esp_stage.join("early.cfg");
    std::fs::write(&early_cfg, grub::early_config()).map_err(io("write", &early_cfg))?;
    let memdisk = esp_stage.join("memdisk.tar");
    std::fs::write(&memdisk, grub::memdisk_tar(epoch)).map_err(io("write", &memdisk))?;
    let loader = esp_stage.join("BOOTX64.EFI");
    grub::mkimage(
        &loader,
        &early_cfg,
        &memdisk,
        Path::new(grub::GRUB_EFI_MODULES_DIR),
        epoch,
    )?;
    let env_file = esp_stage.join("grubenv");
    let env_block = grubenv::render(&BootFlags::fresh_image());
    std::fs::write(&env_file, env_block).map_err(io("write", &env_file))?;
    for path in [&loader, &env_file] {
        set_mode(path, 0o644)?;
        fs::set_times(path, epoch)?;
    }
    let esp_part = part(PartitionRole::EfiSystem);
    let esp_img = work.join("efi.vfat");
    fs::make_fat(
        &esp_img,
        esp_part.size,
        &seed.fat_volume_id("esp volume id"),
        &[
            (grub::LOADER_ESP_PATH, &loader),
            (grubenv::ESP_PATH, &env_file),
        ],
        epoch,
    )?;
    tracing::info!(ms = ms(started), "EFI system partition built");

    // 6. PRIVATE and DATA.
    let private_part = part(PartitionRole::Private);
    let data_part = part(PartitionRole::Data);
    let private_img = work.join("private.ext4");
    let data_img = work.join("data.ext4");
    for (img, label, partition) in [
        (&private_img, "PRIVATE", &private_part),
        (&data_img, "DATA", &data_part),
    ] {
        fs::make_ext4(
            img,
            &fs::Ext4Spec {
                label,
                size: partition.size,
                uuid: seed.uuid(&format!("{label} fs")),
                hash_seed: seed.uuid(&format!("{label} fs hash seed")),
                journal: true,
                content: None,
                epoch,
            },
            work,
        )?;
    }

    // 7. Write the partitions.
    let written: Vec<(PartitionRole, &Path)> = vec![
        (PartitionRole::EfiSystem, &esp_img),
        (PartitionRole::Boot(BootSet::A), &boot_img),
        (PartitionRole::Root(BootSet::A), &root_img),
        (PartitionRole::Hash(BootSet::A), &hash_img),
        (PartitionRole::Private, &private_img),
        (PartitionRole::Data, &data_img),
    ];
    let mut image_infos: BTreeMap<u32, FileInfo> = BTreeMap::new();
    for (role, img) in &written {
        let p = part(*role);
        let info = file_info(img, p.name)?;
        check_fits(
            "a partition image",
            info.size,
            p.size,
            "this is a bug in imagebuilder's size checks",
        )?;
        disk::write_sparse(&raw, p.offset, img)?;
        image_infos.insert(p.number, info);
    }
    let env_on_disk = grubenv::read_disk(&raw).context(error::GrubEnvSnafu)?;
    ensure!(
        env_on_disk.env.render().context(error::GrubEnvSnafu)? == env_block,
        error::InvalidInputSnafu {
            reason: "the GRUB environment block on the EFI system partition is not contiguous; \
                     make efi_mib larger"
                .to_string()
        }
    );
    tracing::info!(ms = ms(started), "raw disk image written");

    // 8. Other formats.
    let mut formats = vec![DiskImage {
        format: Format::Raw,
        file: file_info(&raw, &raw_name)?,
    }];
    let mut outputs: Vec<String> = vec![raw_name.clone()];
    let mut wanted: Vec<Format> = input.formats.clone();
    wanted.sort();
    wanted.dedup();
    for format in wanted.into_iter().filter(|f| *f != Format::Raw) {
        let name = input.disk_file_name(format);
        let path = work.join(&name);
        match format {
            Format::Qcow2 => disk::to_qcow2(&raw, &path, epoch)?,
            Format::Vmdk => {
                disk::to_vmdk(&raw, &path, &seed.fat_volume_id("vmdk content id"), epoch)?
            }
            Format::Raw => unreachable!("filtered out"),
        }
        formats.push(DiskImage {
            format,
            file: file_info(&path, &name)?,
        });
        outputs.push(name);
        tracing::info!(%format, ms = ms(started), "disk image converted");
    }

    // 9. Manifest, then move everything into place.
    let update_image = |role: PartitionRole, name: &str| FileInfo {
        file: name.to_string(),
        ..image_infos[&part(role).number].clone()
    };
    let manifest = BuildManifest {
        variant: input.variant.clone(),
        version: input.version.clone(),
        build_id: input.build_id.clone(),
        arch: ARCH.to_string(),
        kernel_version: input.kernel_version.clone(),
        source_date_epoch: epoch,
        root_hash: verity_root.root_hash.clone(),
        salt: verity_root.salt.clone(),
        data_blocks: tree.data_blocks,
        hash_size: tree.hash_size,
        root_compression: fs::EROFS_COMPRESSION.to_string(),
        kernel_cmdline: grub::kernel_cmdline(&input.cmdline, &verity_root),
        formats,
        images: UpdateImages {
            boot: update_image(PartitionRole::Boot(BootSet::A), BOOT_IMAGE),
            root: update_image(PartitionRole::Root(BootSet::A), ROOT_IMAGE),
            hash: update_image(PartitionRole::Hash(BootSet::A), HASH_IMAGE),
        },
        partitions: disk
            .partitions
            .iter()
            .map(|p| {
                let image = image_infos.get(&p.number);
                PartitionEntry {
                    number: p.number,
                    name: p.name.to_string(),
                    partuuid: p.partuuid.to_string(),
                    offset: p.offset,
                    size: p.size,
                    image_size: image.map(|i| i.size),
                    image_sha256: image.map(|i| i.sha256.clone()),
                }
            })
            .collect(),
        grubenv: GrubEnvLocation {
            esp_path: grubenv::ESP_PATH.to_string(),
            disk_offset: env_on_disk.offset,
        },
    };
    let manifest_tmp = work.join(MANIFEST);
    let json = serde_json::to_string_pretty(&manifest).context(error::ManifestSnafu {
        path: &manifest_tmp,
    })?;
    std::fs::write(&manifest_tmp, json + "\n").map_err(io("write", &manifest_tmp))?;
    outputs.extend(
        [BOOT_IMAGE, ROOT_IMAGE, HASH_IMAGE, MANIFEST]
            .iter()
            .map(|s| s.to_string()),
    );
    for format in Format::ALL {
        // A format built last time but not now would otherwise look current.
        let stale = out_dir.join(input.disk_file_name(format));
        if !outputs.contains(&input.disk_file_name(format)) && stale.exists() {
            std::fs::remove_file(&stale).map_err(io("remove the stale image", &stale))?;
        }
    }
    for name in &outputs {
        let to = out_dir.join(name);
        std::fs::rename(work.join(name), &to).map_err(io("move the output into place", &to))?;
    }
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        out_dir = %out_dir.display(),
        "image build finished"
    );
    Ok(manifest)
}

/// Milliseconds since `since`, for the progress log.
fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io("set the permissions of", path))
}
