//! Staging the repository's real variants (with stand-in binaries, so no cargo build is
//! needed): what each variant contains and leaves out, reproducibility, and that the build
//! stops on a tampered lock.
//!
//! Ignored by default: the first run downloads the locked Debian packages (about 80 MiB) into
//! `build/cache/debian`, and each staging takes 15-30 s. Run with
//!
//! ```text
//! cargo test -p buildsys --test stage_variants -- --ignored
//! ```

use buildsys::tree::{self, Kind};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// A directory with every binary the variants install, each a copy of the host's /bin/true
/// (dynamically linked against glibc, like the real ones).
fn fake_binaries(dir: &Path, names: &[String]) {
    fs::create_dir_all(dir).unwrap();
    for name in names {
        fs::copy("/bin/true", dir.join(name)).unwrap();
    }
}

fn stage(variant: &str, out: &Path, bin: &Path) -> buildsys::StagedRoot {
    let root = workspace();
    let variant = buildsys::load_variant(&root, variant).unwrap();
    fake_binaries(bin, &variant.cargo_binaries());
    buildsys::stage_root(
        &root,
        &variant,
        &root.join(buildsys::CACHE_DIR),
        bin,
        "1.2.3",
        "cafe42",
        out,
    )
    .unwrap()
}

/// Everything about a tree that the image depends on: kind, mode, link target, contents.
fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    tree::walk(dir)
        .unwrap()
        .into_iter()
        .map(|(rel, kind)| {
            let path = dir.join(&rel);
            let mode = fs::symlink_metadata(&path).unwrap().permissions().mode() & 0o7777;
            let what = match kind {
                Kind::File => {
                    let bytes = fs::read(&path).unwrap();
                    format!("file {mode:o} {} {:x}", bytes.len(), simple_hash(&bytes))
                }
                Kind::Symlink => format!("link {}", fs::read_link(&path).unwrap().display()),
                Kind::Dir => format!("dir {mode:o}"),
                Kind::Other => "other".to_string(),
            };
            (rel, what)
        })
        .collect()
}

fn simple_hash(bytes: &[u8]) -> u64 {
    // FNV-1a: enough to tell trees apart in a test.
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

#[test]
#[ignore = "downloads the locked Debian packages on first use; stages three trees"]
fn variants_contain_what_they_should_and_are_reproducible() {
    let temp = tempfile::tempdir_in(workspace().join("build")).unwrap();
    let bin = temp.path().join("bin");

    let node = stage("node", &temp.path().join("node"), &bin);
    let r = &node.root_dir;
    for present in [
        "usr/lib/systemd/systemd",
        "usr/bin/systemctl",
        "usr/bin/mount",
        "usr/bin/apiserver",
        "usr/bin/storewolf",
        "usr/bin/apiclient",
        "usr/bin/containerd",
        "usr/sbin/runc",
        "usr/lib/x86_64-linux-gnu/libc.so.6",
        "usr/lib/systemd/system/apiserver.service",
        "usr/lib/systemd/system/multi-user.target.wants/configured.target",
        "usr/lib/systemd/system/configured.target.wants/apiserver.service",
        constants::DEFAULTS_IN_IMAGE,
        "usr/share/factory/etc/passwd",
        "usr/share/factory/etc/machine-id",
        constants::OS_RELEASE_IN_IMAGE,
    ] {
        assert!(
            tree::kind(r, Path::new(present)).unwrap().is_some(),
            "node lacks /{present}"
        );
    }
    for absent in [
        "usr/bin/bash",
        "usr/bin/sh",
        "usr/bin/ls",
        "usr/bin/apibridge",
        "usr/bin/ctr",
        "usr/sbin/agetty",
        "usr/bin/login",
        "usr/lib/systemd/system/console-shell.service",
        "usr/lib/systemd/system/apibridge.service",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/locale",
        "var/lib/dpkg",
        "boot",
    ] {
        assert!(
            tree::kind(r, Path::new(absent)).unwrap().is_none(),
            "node has /{absent}"
        );
    }
    // Mount points, with /etc empty.
    for dir in [
        "etc", "local", "var", "opt", "run", "proc", "sys", "dev", "tmp",
    ] {
        assert_eq!(
            tree::kind(r, Path::new(dir)).unwrap(),
            Some(Kind::Dir),
            "/{dir}"
        );
    }
    assert_eq!(fs::read_dir(r.join("etc")).unwrap().count(), 0);
    // The loader resolves inside the tree through the merged-/usr links.
    assert!(
        tree::resolve(r, Path::new("/lib64/ld-linux-x86-64.so.2"), true)
            .unwrap()
            .is_some()
    );
    // Identity, defaults, groups.
    let os_release = fs::read_to_string(r.join(constants::OS_RELEASE_IN_IMAGE)).unwrap();
    let info = models::OsInfo::from_os_release(&os_release).unwrap();
    assert_eq!(
        (
            info.variant_id.as_str(),
            info.version_id.as_str(),
            info.build_id.as_str()
        ),
        ("node", "1.2.3", "cafe42")
    );
    assert_eq!(
        fs::read_link(r.join("usr/share/factory/etc/os-release")).unwrap(),
        Path::new("..").join(constants::OS_RELEASE_IN_IMAGE)
    );
    let defaults = fs::read_to_string(r.join(constants::DEFAULTS_IN_IMAGE)).unwrap();
    let defaults = models::Defaults::from_toml_str(&defaults).unwrap();
    assert_eq!(defaults.settings["kernel"]["lockdown"], "integrity");
    assert_eq!(defaults.settings["motd"], "Welcome to Ballast!");
    let group = fs::read_to_string(r.join("usr/share/factory/etc/group")).unwrap();
    let api_group = format!("{}:x:{}:", constants::API_GROUP, constants::API_GID);
    assert!(group.lines().any(|l| l == api_group), "{group}");
    // Modules: regenerated index for the subset.
    let modules = r.join("usr/lib/modules").join(&node.kernel_version);
    let dep = fs::read_to_string(modules.join("modules.dep")).unwrap();
    assert!(dep.contains("virtio_net.ko:"), "{dep}");
    assert!(dep.contains("overlay.ko:"));
    assert!(!dep.contains("nouveau"));
    assert!(modules.join("modules.dep.bin").is_file());
    assert!(node
        .initramfs_modules
        .iter()
        .any(|m| m.ends_with("dm-verity.ko")));
    assert!(node.initramfs_modules.last().unwrap().ends_with("erofs.ko"));
    assert!(node.kernel.is_file());
    assert!(node.cmdline.iter().any(|p| p == "quiet"));
    // Every unit link points at a unit of the image.
    for (rel, kind) in tree::walk(&r.join("usr/lib/systemd/system")).unwrap() {
        if kind == Kind::Symlink && rel.parent().is_some_and(|p| !p.as_os_str().is_empty()) {
            let full = Path::new("usr/lib/systemd/system").join(&rel);
            assert!(
                tree::resolve(r, &full, true).unwrap().is_some(),
                "dangling unit link /{}",
                full.display()
            );
        }
    }

    let dev = stage("dev", &temp.path().join("dev"), &bin);
    for present in [
        "usr/bin/bash",
        "usr/bin/ls",
        "usr/bin/apibridge",
        "usr/bin/ctr",
        "usr/lib/terminfo/v/vt220",
        "usr/lib/systemd/system/multi-user.target.wants/console-shell.service",
        "usr/lib/systemd/system/multi-user.target.wants/ballast-ready.service",
        "usr/lib/udev/rules.d/90-ballast-apibridge.rules",
    ] {
        assert!(
            tree::kind(&dev.root_dir, Path::new(present))
                .unwrap()
                .is_some(),
            "dev lacks /{present}"
        );
    }

    // The same inputs give the same tree.
    let again = stage("node", &temp.path().join("node-again"), &bin);
    let first = fingerprint(&node.root_dir);
    let second = fingerprint(&again.root_dir);
    assert_eq!(first.len(), second.len());
    for (path, what) in &first {
        assert_eq!(Some(what), second.get(path), "/{} differs", path.display());
    }
    println!(
        "node: {} files, {:.1} MiB; dev: {} files, {:.1} MiB",
        node.files,
        node.bytes as f64 / 1048576.0,
        dev.files,
        dev.bytes as f64 / 1048576.0
    );
}

/// A copy of the repository's definitions (packages, variants, shared defaults) to tamper with.
fn definitions_copy(dest: &Path) {
    let root = workspace();
    for dir in ["packages", "variants", "sources/models/defaults.d"] {
        copy_dir(&root.join(dir), &dest.join(dir));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for (rel, kind) in tree::walk(from).unwrap() {
        match kind {
            Kind::Dir => fs::create_dir_all(to.join(&rel)).unwrap(),
            _ => tree::copy_entry(&from.join(&rel), &to.join(&rel), None).unwrap(),
        }
    }
}

#[test]
#[ignore = "downloads one small Debian package"]
fn a_tampered_lock_stops_the_build() {
    let temp = tempfile::tempdir_in(workspace().join("build")).unwrap();
    let repo = temp.path().join("repo");
    definitions_copy(&repo);
    // The cache holds hard links to the real cache's files, so nothing is downloaded twice and
    // the real cache is never touched.
    let cache = temp.path().join("cache");
    fs::create_dir_all(cache.join("debs")).unwrap();
    let real = workspace().join(buildsys::CACHE_DIR).join("debs");
    if let Ok(entries) = fs::read_dir(&real) {
        for entry in entries.flatten() {
            let _ = fs::hard_link(entry.path(), cache.join("debs").join(entry.file_name()));
        }
    }
    let lock_path = repo.join(debian::LOCK_PATH);
    let mut lock = debian::Lock::load(&lock_path).unwrap();
    let victim = lock
        .packages
        .iter_mut()
        .find(|p| p.name == "libcap2")
        .expect("libcap2 is locked");
    victim.sha256 = "0".repeat(64);
    lock.save(&lock_path).unwrap();

    let variant = buildsys::load_variant(&repo, "node").unwrap();
    let bin = temp.path().join("bin");
    fake_binaries(&bin, &variant.cargo_binaries());
    let error = buildsys::stage_root(
        &repo,
        &variant,
        &cache,
        &bin,
        "1.0.0",
        "x",
        &temp.path().join("out"),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("libcap2"), "{error}");
    assert!(error.contains("the lock expects sha256 0000"), "{error}");
    assert!(!temp.path().join("out/rootfs").exists());

    // A package asking for something the lock does not cover stops the build too.
    let path = repo.join("packages/containerd/package.toml");
    let text = fs::read_to_string(&path).unwrap().replace(
        "packages = [\"containerd\", \"runc\"]",
        "packages = [\"containerd\", \"runc\", \"hello\"]",
    );
    fs::write(&path, text).unwrap();
    let variant = buildsys::load_variant(&repo, "node").unwrap();
    let error = buildsys::stage_root(
        &repo,
        &variant,
        &cache,
        &bin,
        "1.0.0",
        "x",
        &temp.path().join("out"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("hello that the lock does not cover"),
        "{error}"
    );
    assert!(error.contains("cargo xtask lock"), "{error}");
}
