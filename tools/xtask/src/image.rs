//! The image build pipeline: node binaries (cargo, release), the static early init, the
//! variant's root tree (buildsys), and the disk (imagebuilder).

use crate::{host, progress};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The variant `cargo xtask run` and `build` use when none is given.
pub const DEFAULT_VARIANT: &str = "dev";

/// What to build.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildOptions {
    /// Variant to build (a folder under variants/).
    #[arg(long, default_value = DEFAULT_VARIANT)]
    pub variant: String,
    /// OS version written to os-release and the image names (default: the workspace version).
    #[arg(long)]
    pub version: Option<String>,
    /// Build id (default: the git commit, or "dev" outside git).
    #[arg(long)]
    pub build_id: Option<String>,
    /// A package added to the variant's list for this build only (test images, e.g. one that
    /// never passes its health checks). May be given more than once.
    #[arg(long = "extra-package", value_name = "PACKAGE")]
    pub extra_packages: Vec<String>,
    /// A cargo feature for the node binaries of this build only, as package/feature (test
    /// images, e.g. models/next-dns-names for the next version's model). May be given more
    /// than once. cargo keeps such builds beside the default ones in target/release (features
    /// are part of each artifact's hash), so switching back and forth rebuilds nothing; the
    /// default binaries are linked back into target/release when the build ends.
    #[arg(long = "cargo-feature", value_name = "FEATURE")]
    pub cargo_features: Vec<String>,
}

impl BuildOptions {
    pub fn variant(name: &str) -> Self {
        BuildOptions {
            variant: name.to_string(),
            version: None,
            build_id: None,
            extra_packages: Vec::new(),
            cargo_features: Vec::new(),
        }
    }
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct Built {
    pub manifest: imagebuilder::BuildManifest,
    /// Where the disk images, update images and manifest.json are.
    pub out_dir: PathBuf,
    /// The raw disk image.
    pub raw_image: PathBuf,
    /// The staged root tree.
    pub root_dir: PathBuf,
}

/// The workspace version, the default OS version.
pub fn default_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// The default version with its patch number raised by `n`: the versions of the images the
/// update tests install on a node running [`default_version`].
pub fn later_version(n: u64) -> String {
    let version = default_version();
    let mut parts: Vec<u64> = version
        .split('.')
        .map(|p| p.parse().expect("the workspace version is numeric"))
        .collect();
    *parts.last_mut().expect("a version has parts") += n;
    parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The test-only package that breaks the host containerd, so that an image whose health checks
/// list it never marks its boot successful (see packages/).
pub const BROKEN_BOOT_PACKAGE: &str = "test-broken-boot";

/// The test-only package with the resolv.conf template of the "next" model (see packages/).
pub const NEXT_DNS_NAMES_PACKAGE: &str = "test-next-dns-names";

/// The cargo feature that builds the "next" model, in which `settings.dns.search-list` is
/// called `settings.dns.search-domains` (see the models crate).
pub const NEXT_DNS_NAMES_FEATURE: &str = "models/next-dns-names";

/// The migration that carries `settings.dns.search-list` to the next model's name and back
/// (crate `rename-dns-search-list`).
pub const RENAME_DNS_MIGRATION: &str = "rename-dns-search-list";

/// The images the VM update tests need besides the default `dev` build: the next version of
/// `dev`, the one after it built with [`BROKEN_BOOT_PACKAGE`], and the one after that with the
/// next model ([`NEXT_DNS_NAMES_FEATURE`] and [`NEXT_DNS_NAMES_PACKAGE`]).
pub fn update_test_builds() -> Vec<BuildOptions> {
    let mut next = BuildOptions::variant(DEFAULT_VARIANT);
    next.version = Some(later_version(1));
    let mut broken = BuildOptions::variant(DEFAULT_VARIANT);
    broken.version = Some(later_version(2));
    broken.extra_packages = vec![BROKEN_BOOT_PACKAGE.to_string()];
    let mut renamed = BuildOptions::variant(DEFAULT_VARIANT);
    renamed.version = Some(later_version(3));
    renamed.extra_packages = vec![NEXT_DNS_NAMES_PACKAGE.to_string()];
    renamed.cargo_features = vec![NEXT_DNS_NAMES_FEATURE.to_string()];
    vec![next, broken, renamed]
}

/// The package that bridges the API to the host over virtio-serial (dev only).
pub const API_BRIDGE_PACKAGE: &str = "apibridge";

/// A test-only build of `node` with [`API_BRIDGE_PACKAGE`], so that a VM test can drive a node
/// that has no shell from the host (`apiclient exec` into its admin container). It is built at
/// the next version, so it never replaces the real `node` build, which has no bridge.
pub fn node_bridged_build() -> BuildOptions {
    let mut opts = BuildOptions::variant("node");
    opts.version = Some(later_version(1));
    opts.extra_packages = vec![API_BRIDGE_PACKAGE.to_string()];
    opts
}

/// Builds the `rename-dns-search-list` migration (release, default features: a migration does
/// not use the model) and returns the program; the VM update test publishes it under its
/// `migrate_v<version>_` name.
pub fn build_rename_dns_migration() -> Result<PathBuf> {
    let root = host::root();
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", RENAME_DNS_MIGRATION])
        .current_dir(&root)
        .status()
        .context("cannot run cargo to build the rename-dns-search-list migration")?;
    anyhow::ensure!(
        status.success(),
        "building the {RENAME_DNS_MIGRATION} migration failed"
    );
    Ok(host::target_dir()
        .join("release")
        .join(RENAME_DNS_MIGRATION))
}

fn default_build_id() -> String {
    Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(host::root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "dev".to_string())
}

/// Fixed timestamp for every file in the image, so that builds are reproducible: the time of
/// the commit when there is one.
pub fn source_date_epoch() -> u64 {
    if let Some(v) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return v;
    }
    Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(host::root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(1_700_000_000)
}

/// The package that brings the updater; an image with it trusts the repository's root.json.
pub const UPDATER_PACKAGE: &str = "updater";

/// Where the image keeps the TUF root.json its updater trusts.
pub const TRUSTED_ROOT_IMAGE_PATH: &str = constants::TRUSTED_ROOT_JSON_IN_IMAGE;

/// Where the development repository keys and root.json live (under build/, out of git).
pub const REPO_KEYS_DIR: &str = "build/repo-keys";

/// Where `cargo xtask repo add` builds the development update repository, which `cargo xtask
/// run --repo` serves to the VM.
pub const REPO_DIR: &str = "build/repo";

/// The address at which a booted VM reaches a repository served from the host (QEMU user
/// networking forwards its port 80 to the server on host loopback).
pub const GUEST_REPO_ADDR: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 0, 2, 100);

/// The development root.json, after making keys if there are none yet (their path is
/// printed, so a developer knows what signs the updates their images trust).
pub fn ensure_repo_keys() -> Result<PathBuf> {
    let dir = host::root().join(REPO_KEYS_DIR);
    let keys = repo::KeyDir::new(&dir);
    if !keys.root_json().exists() {
        progress::line(&format!(
            "making development update-signing keys in {} (kept out of git; images built from \
             now on trust its root.json)",
            dir.display()
        ));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start an async runtime")?
            .block_on(repo::KeyDir::generate(&dir, &repo::KeyOptions::default()))
            .with_context(|| format!("cannot make repository keys in {}", dir.display()))?;
    }
    Ok(keys.root_json())
}

/// The directory a variant's build goes to.
pub fn variant_dir(variant: &str, version: &str) -> PathBuf {
    host::root()
        .join("build/images")
        .join(format!("{variant}-{version}"))
}

/// Builds the static early init (PID 1 of the initramfs); returns the binary.
pub fn build_init() -> Result<PathBuf> {
    let root = host::root();
    let target_dir = host::target_dir().join("static");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-p",
            "early-init",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--target-dir",
        ])
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .current_dir(&root)
        .status()
        .context("cannot run cargo to build the early init")?;
    anyhow::ensure!(status.success(), "building the static early init failed");
    Ok(target_dir.join("x86_64-unknown-linux-gnu/release/init"))
}

/// `features` sorted, without duplicates or empty entries.
fn normalized_features(features: &[String]) -> Vec<String> {
    let mut list: Vec<String> = features
        .iter()
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .collect();
    list.sort();
    list.dedup();
    list
}

/// Builds the node binaries in release mode, with the cargo `features` (`package/feature`)
/// when there are any; returns the directory holding them.
pub fn build_node_binaries(variant: &buildsys::Variant, features: &[String]) -> Result<PathBuf> {
    let features = normalized_features(features);
    let target_dir = host::target_dir();
    let mut args = vec!["build".to_string(), "--release".into()];
    let mut bins = Vec::new();
    for package in &variant.packages {
        for bin in &package.cargo.binaries {
            bins.push("--bin".to_string());
            bins.push(bin.clone());
        }
    }
    if !bins.is_empty() {
        if !features.is_empty() {
            args.push("--features".into());
            args.push(features.join(","));
            eprintln!("xtask: node binaries with features {}", features.join(", "));
        }
        args.extend(bins);
        let status = Command::new(env!("CARGO"))
            .args(&args)
            .current_dir(host::root())
            .status()
            .context("cannot run cargo to build the node binaries")?;
        anyhow::ensure!(
            status.success(),
            "building the node binaries failed (cargo {})",
            args.join(" ")
        );
    }
    Ok(target_dir.join("release"))
}

/// Runs the whole pipeline for one variant.
pub fn build(opts: &BuildOptions) -> Result<Built> {
    host::ensure(&[host::Step::Build])?;
    let root = host::root();
    let started = Instant::now();
    let mut variant = buildsys::load_variant(&root, &opts.variant)?;
    for name in &opts.extra_packages {
        if variant.packages.iter().all(|p| &p.name != name) {
            variant.packages.push(buildsys::load_package(&root, name)?);
        }
    }
    let version = opts.version.clone().unwrap_or_else(default_version);
    let build_id = opts.build_id.clone().unwrap_or_else(default_build_id);

    let step = progress::step("[1/4] building the node binaries (release)", false);
    let bin_dir = build_node_binaries(&variant, &opts.cargo_features)?;
    step.done();
    let step = progress::step("[2/4] building the static early init", false);
    let init = build_init()?;
    step.done();
    let built = assemble(&Assembly {
        variant: &variant,
        version: &version,
        build_id: &build_id,
        epoch: source_date_epoch(),
        bin_dir: &bin_dir,
        init: &init,
        out_dir: &variant_dir(&variant.name, &version),
    })?;
    if !opts.cargo_features.is_empty() {
        // target/release now holds this build's binaries; put the default ones back (cargo
        // only links them again), so that every other user of target/release (host tools,
        // rebuild_into) keeps getting what a plain build makes.
        build_node_binaries(&variant, &[])?;
    }
    eprintln!(
        "xtask: built {} {} (build {}) in {:.0} s: {}",
        variant.name,
        version,
        build_id,
        started.elapsed().as_secs_f64(),
        built.raw_image.display()
    );
    Ok(built)
}

/// Everything [`assemble`] needs once the binaries exist.
pub struct Assembly<'a> {
    pub variant: &'a buildsys::Variant,
    pub version: &'a str,
    pub build_id: &'a str,
    pub epoch: u64,
    pub bin_dir: &'a Path,
    pub init: &'a Path,
    pub out_dir: &'a Path,
}

/// Stages the root tree and makes the disk from already-built binaries.
pub fn assemble(a: &Assembly) -> Result<Built> {
    let root = host::root();
    let step = progress::step(
        &format!(
            "[3/4] staging the {} root tree (Debian packages are fetched and verified)",
            a.variant.name
        ),
        true,
    );
    let staged = buildsys::stage_root(
        &root,
        a.variant,
        &root.join(buildsys::CACHE_DIR),
        a.bin_dir,
        a.version,
        a.build_id,
        &a.out_dir.join("stage"),
    )?;
    if a.variant.packages.iter().any(|p| p.name == UPDATER_PACKAGE) {
        let root_json = ensure_repo_keys()?;
        let dest = staged.root_dir.join(TRUSTED_ROOT_IMAGE_PATH);
        std::fs::create_dir_all(dest.parent().expect("a path with directories"))
            .with_context(|| format!("cannot create the directory of {}", dest.display()))?;
        std::fs::copy(&root_json, &dest).with_context(|| {
            format!(
                "cannot copy {} into the image at {}",
                root_json.display(),
                dest.display()
            )
        })?;
    }
    step.done();
    let step = progress::step("[4/4] making the disk image", true);
    let input = imagebuilder::ImageInput {
        root_dir: staged.root_dir.clone(),
        kernel: staged.kernel.clone(),
        kernel_version: staged.kernel_version.clone(),
        initramfs_modules: staged.initramfs_modules.clone(),
        init_binary: a.init.to_path_buf(),
        cmdline: staged.cmdline.clone(),
        layout: a.variant.layout.to_disk_layout(),
        disk_size_mib: None,
        formats: a.variant.image_formats.clone(),
        variant: a.variant.name.clone(),
        version: a.version.to_string(),
        build_id: a.build_id.to_string(),
        out_dir: a.out_dir.to_path_buf(),
        source_date_epoch: a.epoch,
    };
    let manifest = imagebuilder::build_image(&input)?;
    step.done();
    let raw_image = a
        .out_dir
        .join(input.disk_file_name(imagebuilder::Format::Raw));
    Ok(Built {
        manifest,
        out_dir: a.out_dir.to_path_buf(),
        raw_image,
        root_dir: staged.root_dir,
    })
}

/// Builds `built` again into `out_dir` from the same inputs (same binaries, version, build id
/// and timestamp): the reproducibility check. Only for builds without `--cargo-feature`. cargo
/// is asked for the default binaries first; it compiles nothing when they are up to date, but
/// it links them into target/release again if a feature build left its own there.
pub fn rebuild_into(built: &Built, out_dir: &Path) -> Result<Built> {
    let root = host::root();
    let variant = buildsys::load_variant(&root, &built.manifest.variant)?;
    build_node_binaries(&variant, &[])?;
    assemble(&Assembly {
        variant: &variant,
        version: &built.manifest.version,
        build_id: &built.manifest.build_id,
        epoch: built.manifest.source_date_epoch,
        bin_dir: &host::target_dir().join("release"),
        init: &host::target_dir().join("static/x86_64-unknown-linux-gnu/release/init"),
        out_dir,
    })
}

/// Reads a finished build's manifest, if there is one.
pub fn existing(variant: &str, version: &str) -> Option<Built> {
    let out_dir = variant_dir(variant, version);
    let text = std::fs::read_to_string(out_dir.join("manifest.json")).ok()?;
    let manifest: imagebuilder::BuildManifest = serde_json::from_str(&text).ok()?;
    let raw_image = out_dir.join(format!("{variant}-{version}.img"));
    raw_image.exists().then(|| Built {
        manifest,
        root_dir: out_dir.join("stage/rootfs"),
        out_dir,
        raw_image,
    })
}

/// Copies a file (sparse-aware via `cp --sparse=always`), for tests that modify an image.
pub fn copy_image(from: &Path, to: &Path) -> Result<()> {
    let status = Command::new("cp")
        .arg("--sparse=always")
        .arg(from)
        .arg(to)
        .status()
        .context("cannot run cp")?;
    anyhow::ensure!(status.success(), "copying {} failed", from.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn features_are_sorted_and_deduplicated() {
        assert!(normalized_features(&strings(&[" ", ""])).is_empty());
        assert_eq!(
            normalized_features(&strings(&["models/next-dns-names", " a/x", "a/x"])),
            strings(&["a/x", "models/next-dns-names"])
        );
    }
}
