//! Writes a reproducible OCI image layout from a staged root tree.
//!
//! # Background
//!
//! Ballast's container images (admin, control, pause, test workloads) are made on the build
//! host from the same locked Debian packages as the OS, without Docker and without a base image
//! from a public registry. `buildsys` stages each image's root tree; this crate turns a tree
//! into an [OCI image layout](https://github.com/opencontainers/image-spec/blob/main/image-layout.md)
//! that `skopeo copy oci:DIR docker://...` pushes to a registry:
//!
//! ```text
//! DIR/oci-layout                       {"imageLayoutVersion":"1.0.0"}
//! DIR/index.json                       one manifest, annotated with its tag (ref.name)
//! DIR/blobs/sha256/<manifest digest>   schema 2 manifest: config + one layer
//! DIR/blobs/sha256/<config digest>     amd64/linux, Entrypoint, Cmd, Env, Labels, diff_id
//! DIR/blobs/sha256/<layer digest>      tar.gz of the tree
//! ```
//!
//! Two runs over the same tree with the same SOURCE_DATE_EPOCH give the same bytes and so the
//! same digests: the layer lists entries in byte order of their paths (directories before
//! their contents), every entry owned by 0:0 without user names and dated SOURCE_DATE_EPOCH,
//! the gzip header has no name and no time, the configuration's `created` is
//! SOURCE_DATE_EPOCH, and every JSON document is written with its keys sorted (the OCI types
//! keep labels in a `HashMap`, whose order changes from run to run).
//!
//! # Usage
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use std::path::Path;
//!
//! # fn main() -> ociimage::Result<()> {
//! let spec = ociimage::ImageSpec {
//!     entrypoint: vec!["/usr/bin/catatonit".into(), "-P".into()],
//!     cmd: vec![],
//!     env: vec!["PATH=/usr/bin".into()],
//!     working_dir: None,
//!     labels: BTreeMap::from([("org.opencontainers.image.title".into(), "pause".into())]),
//!     source_date_epoch: 1_700_000_000,
//!     tag: "0.1.0".into(),
//! };
//! let image = ociimage::write_layout(Path::new("build/pause/rootfs"), &spec, Path::new("build/images/oci/pause"))?;
//! println!("{}", image.manifest_digest); // sha256:...
//! # Ok(()) }
//! ```
//!
//! # Current limitations
//!
//! - One layer per image, gzip-compressed; no layer reuse between images.
//! - amd64/linux only.
//! - Files, directories and symbolic links only: hard links are stored as separate files, and
//!   device nodes, FIFOs and sockets are refused. No extended attributes (no file
//!   capabilities); owners are always root.
//! - The digests depend on flate2's compressor: a flate2 update may change the layer digest
//!   (never the `diff_id`), though each build of one commit is reproducible.
#![forbid(unsafe_code)]

pub mod error;
pub mod layer;

pub use error::{Error, Result};
pub use layer::{write_layer, LayerInfo};

use error::{BadEpochSnafu, BadLayoutSnafu, IoSnafu, JsonSnafu, SpecSnafu};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, Digest, HistoryBuilder, ImageConfiguration,
    ImageConfigurationBuilder, ImageIndex, ImageIndexBuilder, ImageManifest, ImageManifestBuilder,
    MediaType, Os, PlatformBuilder, RootFsBuilder,
};
use sha2::{Digest as _, Sha256};
use snafu::ResultExt;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The `imageLayoutVersion` this crate writes.
pub const LAYOUT_VERSION: &str = "1.0.0";
/// The annotation in index.json that names a manifest's tag (`oci:DIR:TAG` selects by it).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// What the configuration's history says made the layer.
pub const CREATED_BY: &str = "ballast ociimage: root tree from locked Debian packages";

/// What the image runs and how it is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// Program and first arguments.
    pub entrypoint: Vec<String>,
    /// Default arguments after the entrypoint.
    pub cmd: Vec<String>,
    /// `NAME=value` entries, in order.
    pub env: Vec<String>,
    /// Working directory of the entrypoint, if not `/`.
    pub working_dir: Option<String>,
    /// Configuration labels.
    pub labels: BTreeMap<String, String>,
    /// The layer's file times and the configuration's `created` (seconds since 1970).
    pub source_date_epoch: u64,
    /// The tag recorded in index.json.
    pub tag: String,
}

/// An image layout on disk and its digests (each `sha256:<hex>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenImage {
    /// The layout directory.
    pub dir: PathBuf,
    /// The tag recorded in index.json.
    pub tag: String,
    /// Digest of the manifest: what a registry reports for the image.
    pub manifest_digest: String,
    /// Size of the manifest in bytes.
    pub manifest_size: u64,
    /// Digest of the image configuration (the image id).
    pub config_digest: String,
    /// Digest of the compressed layer.
    pub layer_digest: String,
    /// Size of the compressed layer in bytes.
    pub layer_size: u64,
    /// Digest of the uncompressed layer (`rootfs.diff_ids[0]`).
    pub diff_id: String,
}

fn sha256_digest(hex: &str) -> String {
    format!("sha256:{hex}")
}

/// `value` with every object's keys in sorted order, at any depth.
fn canonical(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<String, serde_json::Value> =
                map.into_iter().map(|(k, v)| (k, canonical(v))).collect();
            serde_json::Value::Object(sorted.into_iter().collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(canonical).collect())
        }
        other => other,
    }
}

/// Compact JSON with sorted keys: the same document always gives the same bytes.
fn canonical_json(value: &impl serde::Serialize, what: &str) -> Result<Vec<u8>> {
    let value = serde_json::to_value(value).context(JsonSnafu { what })?;
    serde_json::to_vec(&canonical(value)).context(JsonSnafu { what })
}

/// Writes `bytes` as a blob of the layout; returns its hex sha256 and size.
fn write_blob(blobs: &Path, bytes: &[u8]) -> Result<(String, u64)> {
    let hex = hex::encode(Sha256::digest(bytes));
    let path = blobs.join(&hex);
    std::fs::write(&path, bytes).context(IoSnafu {
        action: "write",
        path: &path,
    })?;
    Ok((hex, bytes.len() as u64))
}

fn descriptor(media_type: MediaType, hex: &str, size: u64, what: &str) -> Result<Descriptor> {
    let digest = Digest::from_str(&sha256_digest(hex)).context(SpecSnafu { what })?;
    DescriptorBuilder::default()
        .media_type(media_type)
        .digest(digest)
        .size(size)
        .build()
        .context(SpecSnafu { what })
}

fn rfc3339(epoch: u64) -> Result<String> {
    let bad = |message: String| BadEpochSnafu { epoch, message }.build();
    let seconds = i64::try_from(epoch).map_err(|e| bad(e.to_string()))?;
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .map_err(|e| bad(e.to_string()))?
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| bad(e.to_string()))
}

/// The image configuration for a layer with `diff_id` (hex).
fn image_configuration(spec: &ImageSpec, diff_id: &str) -> Result<ImageConfiguration> {
    let what = "image configuration";
    let created = rfc3339(spec.source_date_epoch)?;
    let mut config = ConfigBuilder::default()
        .entrypoint(spec.entrypoint.clone())
        .env(spec.env.clone())
        .labels(
            spec.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        );
    if !spec.cmd.is_empty() {
        config = config.cmd(spec.cmd.clone());
    }
    if let Some(dir) = &spec.working_dir {
        config = config.working_dir(dir.clone());
    }
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(vec![sha256_digest(diff_id)])
        .build()
        .context(SpecSnafu { what })?;
    let history = HistoryBuilder::default()
        .created(created.clone())
        .created_by(CREATED_BY)
        .build()
        .context(SpecSnafu { what })?;
    ImageConfigurationBuilder::default()
        .created(created)
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(config.build().context(SpecSnafu { what })?)
        .rootfs(rootfs)
        .history(vec![history])
        .build()
        .context(SpecSnafu { what })
}

/// Writes the image layout of the tree `root` into `out` (whatever `out` held is removed
/// first) and returns its digests. See the crate documentation for what makes it
/// reproducible.
pub fn write_layout(root: &Path, spec: &ImageSpec, out: &Path) -> Result<WrittenImage> {
    match std::fs::remove_dir_all(out) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(source).context(IoSnafu {
                action: "remove",
                path: out,
            })
        }
    }
    let blobs = out.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).context(IoSnafu {
        action: "create directory",
        path: &blobs,
    })?;

    let partial = blobs.join("layer.partial");
    let layer = write_layer(root, spec.source_date_epoch, &partial)?;
    let layer_path = blobs.join(&layer.digest);
    std::fs::rename(&partial, &layer_path).context(IoSnafu {
        action: "rename the layer to",
        path: &layer_path,
    })?;

    let config = image_configuration(spec, &layer.diff_id)?;
    let (config_hex, config_size) =
        write_blob(&blobs, &canonical_json(&config, "image configuration")?)?;

    let what = "manifest";
    let mut annotations = HashMap::new();
    annotations.insert(REF_NAME_ANNOTATION.to_string(), spec.tag.clone());
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(
            MediaType::ImageConfig,
            &config_hex,
            config_size,
            what,
        )?)
        .layers(vec![descriptor(
            MediaType::ImageLayerGzip,
            &layer.digest,
            layer.size,
            what,
        )?])
        .build()
        .context(SpecSnafu { what })?;
    let (manifest_hex, manifest_size) = write_blob(&blobs, &canonical_json(&manifest, what)?)?;

    let what = "index";
    let mut entry = descriptor(MediaType::ImageManifest, &manifest_hex, manifest_size, what)?;
    entry.set_annotations(Some(annotations));
    entry.set_platform(Some(
        PlatformBuilder::default()
            .architecture(Arch::Amd64)
            .os(Os::Linux)
            .build()
            .context(SpecSnafu { what })?,
    ));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![entry])
        .build()
        .context(SpecSnafu { what })?;
    let index_path = out.join("index.json");
    std::fs::write(&index_path, canonical_json(&index, what)?).context(IoSnafu {
        action: "write",
        path: &index_path,
    })?;
    let layout_path = out.join("oci-layout");
    std::fs::write(
        &layout_path,
        canonical_json(
            &serde_json::json!({ "imageLayoutVersion": LAYOUT_VERSION }),
            "oci-layout",
        )?,
    )
    .context(IoSnafu {
        action: "write",
        path: &layout_path,
    })?;

    Ok(WrittenImage {
        dir: out.to_path_buf(),
        tag: spec.tag.clone(),
        manifest_digest: sha256_digest(&manifest_hex),
        manifest_size,
        config_digest: sha256_digest(&config_hex),
        layer_digest: sha256_digest(&layer.digest),
        layer_size: layer.size,
        diff_id: sha256_digest(&layer.diff_id),
    })
}

/// Reads back a layout that [`write_layout`] wrote: its one manifest and that manifest's
/// digests (for publishing a layout built earlier, and for tests).
pub fn read_layout(dir: &Path) -> Result<WrittenImage> {
    let bad = |message: String| {
        BadLayoutSnafu {
            dir: dir.to_path_buf(),
            message,
        }
        .build()
    };
    let index_path = dir.join("index.json");
    let index = ImageIndex::from_file(&index_path).map_err(|e| bad(format!("index.json: {e}")))?;
    let [entry] = index.manifests().as_slice() else {
        return Err(bad(format!(
            "index.json lists {} manifests, not one",
            index.manifests().len()
        )));
    };
    let tag = entry
        .annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME_ANNOTATION))
        .cloned()
        .ok_or_else(|| bad(format!("its manifest has no {REF_NAME_ANNOTATION}")))?;
    let blob = |digest: &Digest| dir.join("blobs/sha256").join(digest.digest());
    let manifest = ImageManifest::from_file(blob(entry.digest()))
        .map_err(|e| bad(format!("manifest {}: {e}", entry.digest())))?;
    let [layer] = manifest.layers().as_slice() else {
        return Err(bad(format!(
            "the manifest has {} layers, not one",
            manifest.layers().len()
        )));
    };
    let config = ImageConfiguration::from_file(blob(manifest.config().digest()))
        .map_err(|e| bad(format!("config {}: {e}", manifest.config().digest())))?;
    let diff_id = config
        .rootfs()
        .diff_ids()
        .first()
        .cloned()
        .ok_or_else(|| bad("the configuration has no diff_id".into()))?;
    Ok(WrittenImage {
        dir: dir.to_path_buf(),
        tag,
        manifest_digest: entry.digest().to_string(),
        manifest_size: entry.size(),
        config_digest: manifest.config().digest().to_string(),
        layer_digest: layer.digest().to_string(),
        layer_size: layer.size(),
        diff_id,
    })
}

#[cfg(test)]
mod tests;
