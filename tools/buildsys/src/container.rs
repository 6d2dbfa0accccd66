//! Container image definitions (`packages/container-images/<name>/image.toml` + an optional `files/`
//! tree) and the staging of an image's root tree from the locked Debian packages.
//!
//! A container image is made of the same locked Debian packages as the OS (one lock,
//! `packages/debian.lock`, covers both), this workspace's binaries and its own files, but it
//! has its own package list: nothing an image asks for reaches an OS variant, which only takes
//! the part of the lock its packages need.
//!
//! ```toml
//! [image]
//! description = "The CRI sandbox (pause) image"
//! entrypoint = ["/usr/bin/catatonit", "-P"]
//! cmd = []                                  # optional
//! working-dir = "/"                         # optional
//! env = { TERM = "xterm" }                  # optional; PATH is always set
//! labels = { "org.example.x" = "y" }        # optional
//!
//! [debian]
//! packages = ["catatonit"]
//! keep = ["usr/bin/catatonit"]              # empty or absent: every file, less documentation
//!
//! [cargo]
//! binaries = ["apiclient"]                  # from target/release to /usr/bin
//! ```
//!
//! With `keep` patterns only the matching files (and the shared libraries they need) go into
//! the image, like an OS package; without them every file of the packages and their
//! dependencies does, except documentation, manual pages and translations, which suits a shell
//! image whose users expect whole packages. Unlike the OS, files under `etc/` stay there: a
//! container's `/etc` is its own.

use crate::error::{
    InvalidDefinitionSnafu, ParseDefinitionSnafu, ReadDefinitionSnafu, Result,
    UnknownContainerImageSnafu,
};
use crate::package::{list_definition_dirs, CargoSection, DebianSection, FILES_DIR};
use crate::stage::{
    copy_ours, keep_matching, make_skeleton, tree_size, unpack_locked, FORBIDDEN_PREFIXES,
};
use crate::tree::{self, Kind};
use serde::Deserialize;
use snafu::{ensure, ResultExt};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tracing::info;

/// Directory of container image definitions, relative to the repository root.
pub const CONTAINER_IMAGES_DIR: &str = "packages/container-images";
/// Name of a container image's definition file.
pub const IMAGE_FILE: &str = "image.toml";

/// The `PATH` every image's configuration sets.
pub const IMAGE_PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Empty directories of every image's root: what a runtime mounts over, `/root` and `/tmp`.
pub const IMAGE_DIRS: &[&str] = &["dev", "etc", "proc", "root", "run", "sys", "tmp", "var"];

/// One container image definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerImage {
    /// Directory name under `packages/container-images/`; the image's repository name.
    pub name: String,
    /// The definition directory.
    pub dir: PathBuf,
    /// `[image]`: what the image runs.
    pub info: ImageInfo,
    /// `[debian]`: packages and the files kept from them.
    pub debian: DebianSection,
    /// `[cargo]`: workspace binaries installed into `/usr/bin`.
    pub cargo: CargoSection,
    /// `files/`, when the image has one.
    pub files_dir: Option<PathBuf>,
}

/// `[image]`: description and the runtime configuration of the image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageInfo {
    /// One line saying what the image is for (also its description label).
    pub description: String,
    /// The program a container of this image runs, with its first arguments.
    pub entrypoint: Vec<String>,
    /// Default arguments after the entrypoint.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// The working directory of the entrypoint.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Environment besides `PATH` ([`IMAGE_PATH_ENV`]).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Labels of the image configuration.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ImageFile {
    image: ImageInfo,
    #[serde(default)]
    debian: DebianSection,
    #[serde(default)]
    cargo: CargoSection,
}

/// Names of all container images (directories under `packages/container-images/` with an
/// `image.toml`), sorted.
pub fn list_container_images(root: &Path) -> Result<Vec<String>> {
    list_definition_dirs(&root.join(CONTAINER_IMAGES_DIR), IMAGE_FILE)
}

/// Reads and checks `packages/container-images/<name>/image.toml` below the repository `root`.
pub fn load_container_image(root: &Path, name: &str) -> Result<ContainerImage> {
    let dir = root.join(CONTAINER_IMAGES_DIR).join(name);
    let path = dir.join(IMAGE_FILE);
    if !path.is_file() {
        return UnknownContainerImageSnafu {
            name,
            dir: root.join(CONTAINER_IMAGES_DIR),
            found: list_container_images(root)?.join(", "),
        }
        .fail();
    }
    let text = std::fs::read_to_string(&path).context(ReadDefinitionSnafu { path: &path })?;
    let file: ImageFile = toml::from_str(&text).context(ParseDefinitionSnafu { path: &path })?;
    let invalid = |message: String| InvalidDefinitionSnafu {
        path: path.clone(),
        message,
    };
    ensure!(
        !file.image.description.trim().is_empty(),
        invalid("[image].description must say what the image is for".into())
    );
    ensure!(
        file.image
            .entrypoint
            .first()
            .is_some_and(|p| p.starts_with('/')),
        invalid("[image].entrypoint must start with an absolute program path".into())
    );
    ensure!(
        !file.image.env.contains_key("PATH"),
        invalid(format!(
            "[image].env must not set PATH; every image has PATH={IMAGE_PATH_ENV}"
        ))
    );
    for pattern in &file.debian.keep {
        ensure!(
            !pattern.starts_with('/') && !pattern.split('/').any(|p| p == ".."),
            invalid(format!(
                "keep pattern '{pattern}' must be relative to / (no leading '/', no '..')"
            ))
        );
    }
    let files_dir = dir.join(FILES_DIR);
    let files_dir = files_dir.is_dir().then_some(files_dir);
    Ok(ContainerImage {
        name: name.to_string(),
        dir,
        info: file.image,
        debian: file.debian,
        cargo: file.cargo,
        files_dir,
    })
}

/// What [`stage_container_root`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedContainer {
    /// The image's root tree (`out/rootfs`).
    pub root_dir: PathBuf,
    /// Number of regular files in it.
    pub files: usize,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// Stages the root tree of `image` into `out/rootfs` (`out` is emptied of what an earlier run
/// left): its part of the lock is fetched (checked against the lock) and unpacked with
/// merged-/usr links, the kept files selected, our binaries and `files/` laid over them, the
/// shared libraries they need added, and the result copied into a fresh tree with the
/// [`IMAGE_DIRS`]. `cargo_bin_dir` holds the image's release binaries (`target/release`).
pub fn stage_container_root(
    root: &Path,
    image: &ContainerImage,
    cache_dir: &Path,
    cargo_bin_dir: &Path,
    out: &Path,
) -> Result<StagedContainer> {
    let started = Instant::now();
    let rootfs = out.join("rootfs");
    tree::remove(&rootfs)?;
    let scratch = unpack_locked(
        root,
        &image.debian.packages,
        cache_dir,
        out,
        &format!("container image {}", image.name),
    )?;

    let mut kept = select_debian_files(image, &scratch)?;
    // The files whose shared libraries must be there: with keep patterns, everything kept;
    // with whole packages only ours, since Debian's Depends already bring what the packages
    // need, and optional plugins (tc's q_atm.so wants libatm, a Recommends) would otherwise
    // fail the closure.
    let mut linked = if image.debian.keep.is_empty() {
        BTreeSet::new()
    } else {
        kept.clone()
    };
    copy_ours(
        &format!("container image {}", image.name),
        &image.cargo.binaries,
        image.files_dir.as_deref(),
        cargo_bin_dir,
        &scratch,
        |rel| {
            linked.insert(rel);
            Ok(())
        },
    )?;
    crate::elf::add_closure(&scratch, &mut linked)?;
    kept.extend(linked);

    make_skeleton(&rootfs)?;
    for dir in IMAGE_DIRS {
        tree::mkdir_p(&rootfs.join(dir))?;
    }
    tree::set_mode(&rootfs.join("tmp"), 0o1777)?;
    tree::set_mode(&rootfs.join("root"), 0o700)?;
    for rel in &kept {
        tree::copy_entry(&scratch.join(rel), &rootfs.join(rel), None)?;
    }
    tree::remove(&scratch)?;
    let (files, bytes) = tree_size(&rootfs)?;
    info!(
        "staged container image {}: {files} files, {:.1} MiB, in {:.1?}",
        image.name,
        bytes as f64 / 1048576.0,
        started.elapsed()
    );
    Ok(StagedContainer {
        root_dir: rootfs,
        files,
        bytes,
    })
}

/// Whether `rel` is documentation or package manager state, which no image carries.
fn forbidden(rel: &Path) -> bool {
    let rel = rel.to_string_lossy();
    FORBIDDEN_PREFIXES
        .iter()
        .any(|p| rel.starts_with(p) || rel == p.trim_end_matches('/'))
}

/// The files of the unpacked tree `scratch` the image keeps: those matching its keep patterns
/// (each must match something), or, without patterns, every file that is not forbidden.
fn select_debian_files(image: &ContainerImage, scratch: &Path) -> Result<BTreeSet<PathBuf>> {
    let candidates: Vec<PathBuf> = tree::walk(scratch)?
        .into_iter()
        .filter(|(path, kind)| {
            *kind != Kind::Dir
                && !crate::stage::MERGED_USR_LINKS
                    .iter()
                    .any(|(link, _)| path == Path::new(link))
                && !forbidden(path)
        })
        .map(|(path, _)| path)
        .collect();
    if image.debian.keep.is_empty() {
        return Ok(candidates.into_iter().collect());
    }
    let mut kept = BTreeSet::new();
    let owner = format!("container image {}", image.name);
    for pattern in &image.debian.keep {
        keep_matching(scratch, &candidates, &owner, pattern, |entry| {
            kept.insert(entry);
        })?;
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, name: &str, text: &str) {
        let dir = root.join(CONTAINER_IMAGES_DIR).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(IMAGE_FILE), text).unwrap();
    }

    #[test]
    fn loads_and_refuses_definitions() {
        let temp = tempfile::tempdir().unwrap();
        write(
            temp.path(),
            "pause",
            r#"
            [image]
            description = "sandbox"
            entrypoint = ["/usr/bin/catatonit", "-P"]
            labels = { "a" = "b" }
            [debian]
            packages = ["catatonit"]
            keep = ["usr/bin/catatonit"]
            "#,
        );
        let image = load_container_image(temp.path(), "pause").unwrap();
        assert_eq!(image.info.entrypoint, ["/usr/bin/catatonit", "-P"]);
        assert_eq!(image.info.labels["a"], "b");
        assert_eq!(image.debian.packages, ["catatonit"]);
        assert_eq!(list_container_images(temp.path()).unwrap(), ["pause"]);

        let error = load_container_image(temp.path(), "nope")
            .unwrap_err()
            .to_string();
        assert!(error.contains("pause"), "{error}");
        for (text, expected) in [
            (
                "[image]\ndescription = \"x\"\nentrypoint = [\"sh\"]\n",
                "absolute",
            ),
            (
                "[image]\ndescription = \"x\"\nentrypoint = []\n",
                "absolute",
            ),
            (
                "[image]\ndescription = \"x\"\nentrypoint = [\"/a\"]\nenv = { PATH = \"/\" }\n",
                "PATH",
            ),
            (
                "[image]\ndescription = \" \"\nentrypoint = [\"/a\"]\n",
                "description",
            ),
            (
                "[image]\ndescription = \"x\"\nentrypoint = [\"/a\"]\nx = 1\n",
                "unknown field",
            ),
        ] {
            write(temp.path(), "bad", text);
            let error = load_container_image(temp.path(), "bad")
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn documentation_never_goes_in() {
        assert!(forbidden(Path::new("usr/share/doc/bash/copyright")));
        assert!(forbidden(Path::new("usr/share/man/man1/ls.1.gz")));
        assert!(!forbidden(Path::new("usr/bin/bash")));
    }
}
