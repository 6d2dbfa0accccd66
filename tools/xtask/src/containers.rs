//! Container images: staged from their definitions under `packages/container-images/` (buildsys),
//! written as OCI image layouts in `build/images/oci/<name>/` (ociimage), and published to a
//! registry on loopback (registry). `cargo xtask images ...` and `cargo xtask registry ...`
//! call these, and so do the tests.

use crate::{host, image, progress};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where image layouts go, one directory per image, relative to the repository root.
pub const OCI_DIR: &str = "build/images/oci";
/// Where image roots are staged before they become layers (removed after each image).
pub const STAGE_DIR: &str = "build/images/oci-stage";
/// The state directory of the registry `cargo xtask registry start` leaves running.
pub const REGISTRY_DIR: &str = "build/registry";
/// The repository prefix images are published under (`ballast/pause:0.1.0`).
pub const REPOSITORY_PREFIX: &str = "ballast";

/// The layout directory of image `name`.
pub fn layout_dir(name: &str) -> PathBuf {
    host::root().join(OCI_DIR).join(name)
}

/// The repository an image is published as.
pub fn repository(name: &str) -> String {
    format!("{REPOSITORY_PREFIX}/{name}")
}

/// The image names to work on: `names`, or every defined image when empty.
pub fn select(names: &[String]) -> Result<Vec<buildsys::ContainerImage>> {
    let root = host::root();
    let names = if names.is_empty() {
        buildsys::list_container_images(&root)?
    } else {
        names.to_vec()
    };
    names
        .iter()
        .map(|name| Ok(buildsys::load_container_image(&root, name)?))
        .collect()
}

/// The image configuration of `image` tagged `tag`: its entrypoint and arguments, `PATH` and
/// its own environment, and the standard title, description and version labels beside its
/// own.
pub fn image_spec(image: &buildsys::ContainerImage, tag: &str, epoch: u64) -> ociimage::ImageSpec {
    let mut env = vec![format!("PATH={}", buildsys::IMAGE_PATH_ENV)];
    env.extend(image.info.env.iter().map(|(k, v)| format!("{k}={v}")));
    let mut labels = BTreeMap::from([
        (
            "org.opencontainers.image.title".to_string(),
            image.name.clone(),
        ),
        (
            "org.opencontainers.image.description".to_string(),
            image.info.description.clone(),
        ),
        (
            "org.opencontainers.image.version".to_string(),
            tag.to_string(),
        ),
    ]);
    labels.extend(image.info.labels.clone());
    ociimage::ImageSpec {
        entrypoint: image.info.entrypoint.clone(),
        cmd: image.info.cmd.clone(),
        env,
        working_dir: image.info.working_dir.clone(),
        labels,
        source_date_epoch: epoch,
        tag: tag.to_string(),
    }
}

/// Builds the workspace binaries `images` install (release, as for the OS); returns the
/// directory holding them.
pub fn build_binaries(images: &[buildsys::ContainerImage]) -> Result<PathBuf> {
    let mut args = vec!["build".to_string(), "--release".to_string()];
    for image in images {
        for bin in &image.cargo.binaries {
            args.push("--bin".into());
            args.push(bin.clone());
        }
    }
    if args.len() > 2 {
        let status = Command::new(env!("CARGO"))
            .args(&args)
            .current_dir(host::root())
            .status()
            .context("cannot run cargo to build the container images' binaries")?;
        anyhow::ensure!(
            status.success(),
            "building the container images' binaries failed (cargo {})",
            args.join(" ")
        );
    }
    Ok(host::target_dir().join("release"))
}

/// Stages `image` in `stage_dir` and writes its layout to `out`, from binaries already in
/// `bin_dir`. The staged tree is removed afterwards.
pub fn build_one(
    image: &buildsys::ContainerImage,
    bin_dir: &Path,
    tag: &str,
    epoch: u64,
    stage_dir: &Path,
    out: &Path,
) -> Result<ociimage::WrittenImage> {
    let root = host::root();
    let staged = buildsys::stage_container_root(
        &root,
        image,
        &root.join(buildsys::CACHE_DIR),
        bin_dir,
        stage_dir,
    )?;
    let written = ociimage::write_layout(&staged.root_dir, &image_spec(image, tag, epoch), out)
        .with_context(|| format!("cannot write the {} image layout", image.name))?;
    std::fs::remove_dir_all(stage_dir)
        .with_context(|| format!("cannot remove {}", stage_dir.display()))?;
    Ok(written)
}

/// `cargo xtask images build`: the binaries, then each image into [`OCI_DIR`], tagged with
/// the workspace version and dated from SOURCE_DATE_EPOCH (or the last commit).
pub fn build(names: &[String]) -> Result<Vec<ociimage::WrittenImage>> {
    host::ensure_for("images")?;
    let images = select(names)?;
    let step = progress::step("building the container images' binaries (release)", false);
    let bin_dir = build_binaries(&images)?;
    step.done();
    let tag = image::default_version();
    let epoch = image::source_date_epoch();
    let mut written = Vec::new();
    for container in &images {
        let step = progress::step(
            &format!(
                "container image {} (Debian packages are fetched and verified)",
                container.name
            ),
            true,
        );
        written.push(build_one(
            container,
            &bin_dir,
            &tag,
            epoch,
            &host::root().join(STAGE_DIR).join(&container.name),
            &layout_dir(&container.name),
        )?);
        step.done();
    }
    Ok(written)
}

/// The registry `cargo xtask registry start` left running: its address.
pub fn running_registry() -> Result<SocketAddr> {
    Ok(registry::running(&host::root().join(REGISTRY_DIR))?.1)
}

/// `cargo xtask images publish`: pushes the layouts of `names` (all when empty; built first
/// when missing) to the registry at `addr` as `ballast/<name>:<tag>`; returns each image with
/// the digest the registry serves for it, which must be the one built.
pub fn publish(names: &[String], addr: SocketAddr) -> Result<Vec<(String, String)>> {
    host::ensure_for("images")?;
    let images = select(names)?;
    let missing: Vec<String> = images
        .iter()
        .filter(|i| ociimage::read_layout(&layout_dir(&i.name)).is_err())
        .map(|i| i.name.clone())
        .collect();
    if !missing.is_empty() {
        build(&missing)?;
    }
    let mut published = Vec::new();
    for container in &images {
        let layout = ociimage::read_layout(&layout_dir(&container.name))?;
        let name = repository(&container.name);
        registry::push(
            addr,
            &host::root().join(REGISTRY_DIR),
            &layout.dir,
            &name,
            &layout.tag,
        )?;
        let served = registry::manifest(addr, &name, &layout.tag)?;
        anyhow::ensure!(
            served.digest == layout.manifest_digest,
            "the registry serves {name}:{} as {}, but the layout's manifest is {}",
            layout.tag,
            served.digest,
            layout.manifest_digest
        );
        published.push((format!("{addr}/{name}:{}", layout.tag), served.digest));
    }
    Ok(published)
}
