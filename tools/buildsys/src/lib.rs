//! Ballast's package and variant definitions, and the staging of a variant's root tree.
//!
//! # Background
//!
//! A Ballast image is Debian 12 binary packages plus this workspace's own binaries, cut down to
//! what a container host needs. The repository describes it as data:
//!
//! - `packages/<name>/package.toml` (+ an optional `files/` tree copied into the root as-is)
//!   says which Debian packages a part of the OS needs, which of their files to keep, which
//!   workspace binaries to install and which systemd units to enable:
//!
//!   ```toml
//!   [package]
//!   description = "API server, datastore seeding and the boot targets around them"
//!   requires = ["systemd"]             # other Ballast packages the variant must include
//!
//!   [debian]
//!   packages = ["systemd"]             # resolved with their Depends into packages/debian.lock
//!   keep = ["usr/lib/systemd/systemd", "usr/lib/systemd/system/*.target"]
//!
//!   [cargo]
//!   binaries = ["apiserver", "storewolf", "apiclient"]   # from target/release to /usr/bin
//!
//!   [systemd]
//!   enable = ["apiserver.service"]     # links from the unit's own [Install] section
//!   wants = { "sysinit.target" = ["systemd-journald.service"] }  # for units without one
//!   mask = ["systemd-journal-flush.service"]
//!   default-target = "multi-user.target"
//!
//!   [kernel]                           # exactly one package of a variant has this table
//!   modules = ["virtio_net", "overlay"]
//!   initramfs-modules = ["virtio_pci", "virtio_blk", "dm_verity", "erofs"]
//!   ```
//!
//!   Keep patterns are globs relative to `/` in merged-/usr spelling (`usr/bin/bash`, never
//!   `bin/bash`): `*` stays inside one path component, `**` crosses them, and a pattern that
//!   matches nothing is an error. Everything not kept is dropped, so documentation,
//!   translations and dpkg state never reach the image (a final check refuses them anyway).
//!   Shared libraries are not listed: the ELF `DT_NEEDED` closure of the kept files (with the
//!   dynamic loader and every symlink on the way) is added automatically. Files under `etc/`
//!   (kept from Debian or in `files/`) go to `/usr/share/factory/etc/`, which early-init copies
//!   into the tmpfs `/etc` at every boot.
//!
//! - `variants/<name>/variant.toml` lists the packages of an image, its kernel parameters,
//!   extra kernel modules, output formats, settings defaults files and partition sizes (MiB):
//!
//!   ```toml
//!   [variant]
//!   description = "Development image"
//!   packages = ["release", "glibc", "kernel", "systemd", "api", "apibridge", "shell"]
//!   kernel-parameters = ["console=ttyS0,115200n8"]
//!   kernel-modules = []                # optional, beyond the kernel package's list
//!   image-formats = ["raw", "qcow2"]
//!   defaults = ["defaults.toml"]       # merged after sources/models/defaults.d/*.toml
//!
//!   [layout]
//!   efi = 16
//!   boot = 40
//!   root = 512
//!   hash = 8
//!   reserved = 8
//!   private = 16
//!   data = 128
//!   ```
//!
//! - `packages/debian.lock` pins every Debian package that any package definition asks for
//!   (one lock for all variants), minus `packages/debian-excludes.toml` (package -> reason).
//!   [`update_lock`] refreshes it; every build checks that it still matches the definitions
//!   ([`load_lock`]) and stops with "run `cargo xtask lock`" when it does not.
//!
//! [`stage_root`] turns a variant into a root tree:
//!
//! 1. takes the part of the lock the variant needs, fetches those `.deb` files into the cache
//!    (size and sha256 checked against the lock; a mismatch stops the build) and unpacks them
//!    into a scratch tree with merged-/usr links;
//! 2. finds the kernel, runs `depmod` on the scratch tree, and computes the module closure of
//!    the kernel package's `modules` + `initramfs-modules` + the variant's `kernel-modules`;
//! 3. selects the kept files, lays our binaries and `files/` trees over them, adds the ELF
//!    closure;
//! 4. writes the root tree: merged-/usr links, empty mount points (`/etc`, `/local`, `/var`,
//!    `/opt`, `/run`, `/proc`, `/sys`, `/dev`, `/tmp`), the kept files, the modules (then
//!    `depmod -b ROOT KVER` regenerates `modules.dep` and friends for that subset),
//!    `/usr/lib/os-release` (+ the factory `/etc/os-release` link), the merged settings
//!    defaults for storewolf at `/usr/share/ballast/defaults.toml`, and systemd unit links
//!    under `/usr/lib/systemd/system/*.wants` (links to units the image lacks are pruned);
//! 5. puts the kernel image beside the tree (`out/vmlinuz`) and reports the initramfs modules
//!    in load order.
//!
//! Operations are sorted and modes fixed (directories 0755, our files 0755 or 0644, Debian files
//! as packaged), and no build time or build path is written into any file; the disk builder
//! normalizes timestamps and owners when it makes the erofs image.
//!
//! # Usage
//!
//! What `cargo xtask` does, in order:
//!
//! ```no_run
//! use std::path::Path;
//! # fn main() -> buildsys::Result<()> {
//! let root = Path::new(".");
//! // `cargo xtask lock`: refresh packages/debian.lock from the archive (network).
//! println!("{}", buildsys::update_lock(root)?);
//!
//! // `cargo xtask build --variant dev`:
//! let variant = buildsys::load_variant(root, "dev")?; // unknown name: error listing variants
//! // cargo build --release -p <crates of variant.cargo_binaries()> first, then:
//! let staged = buildsys::stage_root(
//!     root,
//!     &variant,
//!     &root.join(buildsys::CACHE_DIR),
//!     &root.join("target/release"),
//!     "0.1.0",
//!     "abcdef12",
//!     &root.join("build/dev"),
//! )?;
//! // staged.root_dir -> erofs + verity; staged.kernel -> BOOT; staged.initramfs_modules and
//! // staged.kernel_version -> initramfs; staged.cmdline + ballast.* -> kernel command line;
//! // variant.layout and variant.image_formats -> disk.
//! # let _ = staged; Ok(()) }
//! ```
//!
//! Logging goes through `tracing` (`RUST_LOG=buildsys=debug` shows every kept library and
//! unit link). Host tools: `depmod` (package `kmod`) for staging; `gpgv` for the lock refresh.
//!
//! # Current limitations
//!
//! - Files keep no owners: everything is root-owned in the image (the Debian files we keep are
//!   all root-owned today). Setuid bits are kept as packaged.
//! - Libraries loaded with `dlopen()` (NSS modules other than glibc's built-in `files`/`dns`,
//!   PAM modules, systemd's optional libraries) are not found by the ELF closure; keep them
//!   explicitly.
//! - The whole variant is unpacked and selected on every build (about 10-20 s); nothing is
//!   cached between builds except the `.deb` files.
//! - Module soft dependencies are followed only when they name a module directly (not an
//!   alias); Debian's cloud kernel needs none for the modules we use.
//! - Unit enablement understands `WantedBy=`, `RequiredBy=`, `Also=` and `DefaultInstance=`;
//!   no `Alias=`, no specifiers in `[Install]`.
//! - x86_64 only.
#![forbid(unsafe_code)]

pub mod container;
pub mod defaults;
pub mod elf;
pub mod error;
pub mod kmod;
pub mod lock;
pub mod package;
pub mod stage;
pub mod systemd;
pub mod tree;
pub mod variant;

pub use container::{
    list_container_images, load_container_image, stage_container_root, ContainerImage,
    StagedContainer, CONTAINER_IMAGES_DIR, IMAGE_PATH_ENV,
};
pub use error::{Error, Result};
pub use lock::{
    load_excludes, load_lock, lock_requests, lock_subset, update_lock, update_lock_from, LockDiff,
    CACHE_DIR, EXCLUDES_PATH,
};
pub use package::{list_packages, load_package, Package, PACKAGES_DIR};
pub use stage::{os_release, stage_root, StagedRoot};
pub use variant::{list_variants, load_variant, ImageFormat, Layout, Variant, VARIANTS_DIR};
