//! The repository: adding images, re-signing, and reading it back as a node would.

use crate::error::{self, IoSnafu, Result};
use crate::keys::KeyDir;
use crate::manifest::{Images, Manifest, Update, MANIFEST_TARGET};
use crate::time::add_span;
use crate::waves::WavePolicy;
use aws_lc_rs::rand::SystemRandom;
use futures::StreamExt;
use jiff::{Span, Timestamp};
use semver::Version;
use sha2::{Digest, Sha256};
use snafu::{ensure, OptionExt, ResultExt};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use tough::editor::signed::{PathExists, SignedRepository, SignedRole};
use tough::editor::RepositoryEditor;
use tough::key_source::KeySource;
use tough::schema::{KeyHolder, RoleType};
use tough::{ExpirationEnforcement, Repository, RepositoryLoader, TargetName};
use url::Url;

/// Signed metadata, inside a repository directory.
pub const METADATA_DIR: &str = constants::REPO_METADATA_DIR;
/// Target files, inside a repository directory.
pub const TARGETS_DIR: &str = constants::REPO_TARGETS_DIR;
/// First word of every image target name.
pub const TARGET_PREFIX: &str = "ballast";
/// Extension of the compressed image targets.
pub const COMPRESSED_EXTENSION: &str = "zst";
/// zstd level used unless told otherwise; see the crate documentation for the choice.
pub const DEFAULT_ZSTD_LEVEL: i32 = 9;

/// A repository on the local disk: `metadata/` and `targets/`, ready to be served as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoDir {
    dir: PathBuf,
}

impl RepoDir {
    /// The repository at `dir` (nothing is read yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RepoDir { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `metadata/`.
    pub fn metadata_dir(&self) -> PathBuf {
        self.dir.join(METADATA_DIR)
    }

    /// `targets/`.
    pub fn targets_dir(&self) -> PathBuf {
        self.dir.join(TARGETS_DIR)
    }

    /// Whether signed metadata is there.
    pub fn exists(&self) -> bool {
        self.metadata_dir().join("timestamp.json").is_file()
    }

    /// `file://` URL of `metadata/`, for tough's client.
    pub fn metadata_url(&self) -> Result<Url> {
        dir_url(&self.metadata_dir())
    }

    /// `file://` URL of `targets/`, for tough's client.
    pub fn targets_url(&self) -> Result<Url> {
        dir_url(&self.targets_dir())
    }
}

fn dir_url(dir: &Path) -> Result<Url> {
    let absolute = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .context(IoSnafu {
                action: "find the current directory for",
                path: dir,
            })?
            .join(dir)
    };
    Url::from_directory_path(&absolute)
        .ok()
        .context(error::FileUrlSnafu { path: absolute })
}

/// An uncompressed partition image, with the sha256 it must have if known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    pub path: PathBuf,
    /// Lowercase hex; checked while compressing.
    pub sha256: Option<String>,
}

impl ImageFile {
    /// `path`, not checked against a known hash.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ImageFile {
            path: path.into(),
            sha256: None,
        }
    }
}

/// The three images of one build, and what the build was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    pub variant: String,
    pub arch: String,
    pub version: Version,
    pub build_id: String,
    /// For BOOT-A/B (`boot.ext4` of a build).
    pub boot: ImageFile,
    /// For ROOT-A/B (`root.erofs`).
    pub root: ImageFile,
    /// For HASH-A/B (`root.verity`).
    pub hash: ImageFile,
}

impl ImageSet {
    /// The images of a build directory (`build/images/<variant>-<version>/`), from its
    /// `manifest.json`; each image is checked against the manifest's sha256 when compressed.
    pub fn from_build_dir(dir: &Path) -> Result<ImageSet> {
        let path = dir.join("manifest.json");
        let file = File::open(&path).context(IoSnafu {
            action: "open",
            path: &path,
        })?;
        let build: imagebuilder::BuildManifest = serde_json::from_reader(BufReader::new(file))
            .context(error::BuildManifestSnafu { path: &path })?;
        let version = Version::parse(&build.version).map_err(|_| {
            error::BadNameSnafu {
                what: "the build's version",
                value: build.version.clone(),
                reason: "it is not a semantic version (like 1.2.3)",
            }
            .build()
        })?;
        let image = |info: &imagebuilder::FileInfo| ImageFile {
            path: dir.join(&info.file),
            sha256: Some(info.sha256.clone()),
        };
        Ok(ImageSet {
            variant: build.variant.clone(),
            arch: build.arch.clone(),
            version,
            build_id: build.build_id.clone(),
            boot: image(&build.images.boot),
            root: image(&build.images.root),
            hash: image(&build.images.hash),
        })
    }

    /// The target names: `ballast-<variant>-<arch>-<version>-<build id>-boot.ext4.zst`,
    /// `...-root.erofs.zst` and `...-root.verity.zst`.
    pub fn target_names(&self) -> Result<Images> {
        for (what, value) in [
            ("the variant", &self.variant),
            ("the arch", &self.arch),
            ("the build id", &self.build_id),
        ] {
            ensure!(
                !value.is_empty()
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                error::BadNameSnafu {
                    what,
                    value: value.as_str(),
                    reason: "use ASCII letters, digits, '.', '_' and '-' only",
                }
            );
        }
        let stem = format!(
            "{TARGET_PREFIX}-{}-{}-{}-{}",
            self.variant, self.arch, self.version, self.build_id
        );
        Ok(Images {
            boot: format!("{stem}-boot.ext4.{COMPRESSED_EXTENSION}"),
            root: format!("{stem}-root.erofs.{COMPRESSED_EXTENSION}"),
            hash: format!("{stem}-root.verity.{COMPRESSED_EXTENSION}"),
        })
    }
}

/// How long each role's signature is valid.
#[derive(Debug, Clone, Copy)]
pub struct Expirations {
    pub targets: Span,
    pub snapshot: Span,
    pub timestamp: Span,
}

impl Default for Expirations {
    /// Two weeks for targets and snapshot, one week for timestamp (refresh it more often).
    fn default() -> Self {
        Expirations {
            targets: Span::new().weeks(2),
            snapshot: Span::new().weeks(2),
            timestamp: Span::new().weeks(1),
        }
    }
}

/// How to add images.
#[derive(Debug, Clone)]
pub struct AddOptions {
    /// `max_version` of the update; `None` keeps Bottlerocket's default (see
    /// [`Manifest::add_update`]).
    pub max_version: Option<Version>,
    /// Wave policy, scheduled from `wave_start`.
    pub waves: WavePolicy,
    /// When the waves count from; `None` is `now`.
    pub wave_start: Option<Timestamp>,
    pub expirations: Expirations,
    /// The current time (expirations and waves count from it); a parameter for tests.
    pub now: Timestamp,
    pub zstd_level: i32,
    /// Replace an update of the same variant, arch and version instead of refusing.
    pub replace: bool,
}

impl Default for AddOptions {
    fn default() -> Self {
        AddOptions {
            max_version: None,
            waves: WavePolicy::none(),
            wave_start: None,
            expirations: Expirations::default(),
            now: Timestamp::now(),
            zstd_level: DEFAULT_ZSTD_LEVEL,
            replace: false,
        }
    }
}

/// Versions of the signed metadata written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub targets: u64,
    pub snapshot: u64,
    pub timestamp: u64,
}

/// What [`add_images`] published.
#[derive(Debug, Clone)]
pub struct Published {
    /// The image target names.
    pub images: Images,
    /// The manifest now in the repository.
    pub manifest: Manifest,
    pub versions: Versions,
}

/// Loads a repository with tough's client: root of trust `root_json`, metadata and targets at
/// the URLs (`file://` here; tough's HTTP transport is not enabled in this crate).
pub async fn load(
    metadata_url: &Url,
    targets_url: &Url,
    root_json: &Path,
    expiration: ExpirationEnforcement,
) -> Result<Repository> {
    let root = tokio::fs::read(root_json).await.context(IoSnafu {
        action: "read the root of trust",
        path: root_json,
    })?;
    RepositoryLoader::new(&root, metadata_url.clone(), targets_url.clone())
        .expiration_enforcement(expiration)
        .load()
        .await
        .map_err(|source| match source {
            tough::error::Error::ExpiredMetadata { role, .. } => error::Error::Expired {
                url: metadata_url.to_string(),
                role,
            },
            source => error::Error::LoadRepo {
                url: metadata_url.to_string(),
                root: root_json.to_path_buf(),
                source: Box::new(source),
            },
        })
}

/// Loads the repository in `repo` for editing: expired metadata is accepted (it is about to be
/// signed again), the signatures are not.
async fn load_for_edit(repo: &RepoDir, keys: &KeyDir) -> Result<Option<Repository>> {
    if !repo.exists() {
        return Ok(None);
    }
    let loaded = load(
        &repo.metadata_url()?,
        &repo.targets_url()?,
        &keys.root_json(),
        ExpirationEnforcement::Unsafe,
    )
    .await?;
    Ok(Some(loaded))
}

/// Reads and verifies one target completely, into memory (for small targets like the manifest).
async fn read_small_target(repo: &Repository, name: &str) -> Result<Option<Vec<u8>>> {
    let target = TargetName::new(name).context(error::TargetNameSnafu { what: name })?;
    let Some(mut stream) = repo
        .read_target(&target)
        .await
        .context(error::TargetVerifySnafu { name })?
    else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.context(error::TargetVerifySnafu { name })?);
    }
    Ok(Some(bytes))
}

fn next_version(current: Option<NonZeroU64>) -> NonZeroU64 {
    current.map_or(NonZeroU64::MIN, |v| v.saturating_add(1))
}

/// Compresses `image` into `out` with zstd (with a content checksum), checking its sha256
/// against the expected one on the way.
fn compress(image: &ImageFile, out: &Path, level: i32) -> Result<()> {
    let path = &image.path;
    let mut input = File::open(path).context(IoSnafu {
        action: "open",
        path,
    })?;
    let output = File::create(out).context(IoSnafu {
        action: "create",
        path: out,
    })?;
    let mut encoder = zstd::stream::write::Encoder::new(BufWriter::new(output), level)
        .context(error::CompressSnafu { path })?;
    encoder
        .include_checksum(true)
        .context(error::CompressSnafu { path })?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buffer).context(IoSnafu {
            action: "read",
            path,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        encoder
            .write_all(&buffer[..n])
            .context(error::CompressSnafu { path })?;
    }
    let mut writer = encoder.finish().context(error::CompressSnafu { path })?;
    writer.flush().context(error::CompressSnafu { path })?;
    let actual = hex::encode(hasher.finalize());
    if let Some(expected) = &image.sha256 {
        ensure!(
            actual.eq_ignore_ascii_case(expected),
            error::ImageChangedSnafu {
                path,
                actual,
                expected: expected.as_str(),
            }
        );
    }
    Ok(())
}

/// Sets the versions and expirations of every role after `current`.
fn set_versions(
    editor: &mut RepositoryEditor,
    current: Option<&Repository>,
    expirations: &Expirations,
    now: Timestamp,
) -> Result<Versions> {
    let targets = next_version(current.map(|r| r.targets().signed.version));
    let snapshot = next_version(current.map(|r| r.snapshot().signed.version));
    let timestamp = next_version(current.map(|r| r.timestamp().signed.version));
    editor
        .targets_version(targets)
        .context(error::EditSnafu)?
        .targets_expires(add_span(now, expirations.targets)?)
        .context(error::EditSnafu)?
        .snapshot_version(snapshot)
        .snapshot_expires(add_span(now, expirations.snapshot)?)
        .timestamp_version(timestamp)
        .timestamp_expires(add_span(now, expirations.timestamp)?);
    Ok(Versions {
        targets: targets.get(),
        snapshot: snapshot.get(),
        timestamp: timestamp.get(),
    })
}

/// Moves freshly written metadata from `staged` into `metadata/`, one rename per file and
/// `timestamp.json` last: a client sees either the old timestamp or a new one whose snapshot
/// and targets files are already in place.
fn publish_metadata(staged: &Path, metadata: &Path) -> Result<()> {
    std::fs::create_dir_all(metadata).context(IoSnafu {
        action: "create",
        path: metadata,
    })?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(staged)
        .context(IoSnafu {
            action: "list",
            path: staged,
        })?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .context(IoSnafu {
            action: "list",
            path: staged,
        })?;
    files.sort_by_key(|p| p.file_name().is_some_and(|n| n == "timestamp.json"));
    for file in files {
        let to = metadata.join(file.file_name().expect("a listed file has a name"));
        std::fs::rename(&file, &to).context(IoSnafu {
            action: "move metadata into",
            path: &to,
        })?;
    }
    Ok(())
}

/// A temporary directory inside the repository directory, on the same file system.
/// Publishes a signed edit: copies the `targets` files staged for it into the repository's
/// `targets/` (under their consistent-snapshot names), then writes the signed metadata into
/// `staging` and moves it into place ([`publish_metadata`]: `timestamp.json` last).
async fn publish(
    signed: &SignedRepository,
    repo: &RepoDir,
    staging: &Path,
    targets: &[PathBuf],
) -> Result<()> {
    let targets_dir = repo.targets_dir();
    std::fs::create_dir_all(&targets_dir).context(IoSnafu {
        action: "create",
        path: &targets_dir,
    })?;
    for path in targets {
        signed
            .copy_target(path, &targets_dir, PathExists::Skip, None)
            .await
            .context(error::WriteRepoSnafu { path: &targets_dir })?;
    }
    let metadata_stage = staging.join("metadata");
    signed
        .write(&metadata_stage)
        .await
        .context(error::WriteRepoSnafu {
            path: &metadata_stage,
        })?;
    publish_metadata(&metadata_stage, &repo.metadata_dir())
}

fn staging_dir(repo: &RepoDir) -> Result<tempfile::TempDir> {
    std::fs::create_dir_all(repo.dir()).context(IoSnafu {
        action: "create",
        path: repo.dir(),
    })?;
    tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(repo.dir())
        .context(IoSnafu {
            action: "create a temporary directory in",
            path: repo.dir(),
        })
}

/// Adds one build's images to the repository in `repo` (creating it if needed): compresses them
/// with zstd, adds an update entry to `manifest.json`, signs targets, snapshot and timestamp
/// with the keys in `keys`, and writes the targets and then the metadata.
///
/// An existing repository is first loaded and verified against `keys`' root.json, and its
/// manifest is read from the signed repository, not from any local copy.
pub async fn add_images(
    repo: &RepoDir,
    keys: &KeyDir,
    images: &ImageSet,
    options: &AddOptions,
) -> Result<Published> {
    let signing = keys.signing_keys()?;
    let names = images.target_names()?;
    let existing = load_for_edit(repo, keys).await?;
    let mut manifest = match &existing {
        Some(current) => match read_small_target(current, MANIFEST_TARGET).await? {
            Some(bytes) => Manifest::parse(&bytes)?,
            None => Manifest::default(),
        },
        None => Manifest::default(),
    };
    let update = Update {
        variant: images.variant.clone(),
        arch: images.arch.clone(),
        version: images.version.clone(),
        max_version: images.version.clone(),
        waves: options
            .waves
            .schedule(options.wave_start.unwrap_or(options.now))?,
        images: names.clone(),
    };
    let replaced = manifest.add_update(update, options.max_version.clone(), options.replace)?;

    let staging = staging_dir(repo)?;
    let files = staging.path().join("targets");
    std::fs::create_dir(&files).context(IoSnafu {
        action: "create",
        path: &files,
    })?;
    let mut staged = Vec::new();
    for (image, name) in [
        (&images.boot, &names.boot),
        (&images.root, &names.root),
        (&images.hash, &names.hash),
    ] {
        let out = files.join(name);
        tracing::info!(image = %image.path.display(), target = %name, "compressing");
        let (image, level, to) = (image.clone(), options.zstd_level, out.clone());
        tokio::task::spawn_blocking(move || compress(&image, &to, level))
            .await
            .context(error::JoinSnafu)??;
        staged.push(out);
    }
    let manifest_file = files.join(MANIFEST_TARGET);
    let bytes = manifest.to_json()?;
    std::fs::write(&manifest_file, &bytes).context(IoSnafu {
        action: "write",
        path: &manifest_file,
    })?;
    staged.push(manifest_file);

    let mut editor = match existing.clone() {
        Some(current) => RepositoryEditor::from_repo(keys.root_json(), current).await,
        None => RepositoryEditor::new(keys.root_json()).await,
    }
    .context(error::EditSnafu)?;
    if let Some(old) = replaced {
        for name in old.images.names() {
            if !names.names().contains(&name) {
                let target =
                    TargetName::new(name).context(error::TargetNameSnafu { what: name })?;
                editor.remove_target(&target).context(error::EditSnafu)?;
            }
        }
    }
    for path in &staged {
        let (name, target) = RepositoryEditor::build_target(path)
            .await
            .context(error::EditSnafu)?;
        editor.add_target(name, target).context(error::EditSnafu)?;
    }
    let versions = set_versions(
        &mut editor,
        existing.as_ref(),
        &options.expirations,
        options.now,
    )?;
    let signed = editor
        .sign(&signing)
        .await
        .context(error::SignSnafu { keys: keys.dir() })?;

    publish(&signed, repo, staging.path(), &staged).await?;
    tracing::info!(
        repo = %repo.dir().display(),
        variant = %images.variant,
        version = %images.version,
        targets_version = versions.targets,
        "images added and repository signed"
    );
    Ok(Published {
        images: names,
        manifest,
        versions,
    })
}

/// First part of every migration name; the full name is `migrate_v<version>_<name>`, where
/// the version is the one the migration migrates to.
pub const MIGRATION_PREFIX: &str = constants::MIGRATION_PREFIX;

/// How to add migrations.
#[derive(Debug, Clone)]
pub struct MigrationOptions {
    pub expirations: Expirations,
    /// The current time (expirations count from it); a parameter for tests.
    pub now: Timestamp,
    /// Replace the migrations already listed for the same pair of versions instead of refusing.
    pub replace: bool,
}

impl Default for MigrationOptions {
    fn default() -> Self {
        MigrationOptions {
            expirations: Expirations::default(),
            now: Timestamp::now(),
            replace: false,
        }
    }
}

/// What [`add_migrations`] published.
#[derive(Debug, Clone)]
pub struct PublishedMigrations {
    /// The migration target names, in the order nodes run them going forward.
    pub names: Vec<String>,
    /// The manifest now in the repository.
    pub manifest: Manifest,
    pub versions: Versions,
}

/// The problems of the manifest's migrations beyond those [`Manifest::problems`] finds: every
/// name must be `migrate_v<to>_<name>` for the pair `(from, to)` it is listed under, a plain
/// file name, and listed once in the whole manifest (a node runs a migration by its name).
pub fn migration_problems(manifest: &Manifest) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen: std::collections::BTreeMap<&str, String> = std::collections::BTreeMap::new();
    for ((from, to), names) in &manifest.migrations {
        let pair = format!("({from}, {to})");
        for name in names {
            if let Err(reason) = check_migration_name(name, to) {
                problems.push(format!("migration {name} for {pair}: {reason}"));
            }
            if let Some(other) = seen.insert(name, pair.clone()) {
                problems.push(format!(
                    "migration {name} is listed for {pair} and for {other}"
                ));
            }
        }
    }
    problems
}

/// Whether `name` is a valid name for a migration to version `to`.
fn check_migration_name(name: &str, to: &Version) -> std::result::Result<(), &'static str> {
    let prefix = format!("{MIGRATION_PREFIX}{to}_");
    let Some(rest) = name.strip_prefix(&prefix) else {
        return Err(
            "migrations are named migrate_v<VERSION>_<name>, where VERSION is the \
                    version they migrate to (the second of the pair)",
        );
    };
    if rest.is_empty() {
        return Err("the part after the version is empty");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err("use ASCII letters, digits, '.', '_' and '-' only");
    }
    Ok(())
}

/// [`add_migrations_with`] with the default expirations, now, refusing to replace migrations
/// already listed for the pair.
pub async fn add_migrations(
    repo: &RepoDir,
    keys: &KeyDir,
    from: Version,
    to: Version,
    files: &[PathBuf],
) -> Result<PublishedMigrations> {
    add_migrations_with(repo, keys, from, to, files, &MigrationOptions::default()).await
}

/// Adds settings migrations between two versions to the repository in `repo`: each file
/// becomes a target named by its file name, which must be `migrate_v<to>_<name>`; the names,
/// in the order given, are recorded as `"(from, to)": [names]` in `manifest.json`; targets,
/// snapshot and timestamp are signed again with the keys in `keys`.
///
/// The repository must exist (add the images of a version first). Migrations already listed
/// for the same pair are refused unless `options.replace` is set; then the old ones that no
/// other pair lists leave the signed metadata. An empty `files` records the pair with no
/// migrations, which says so explicitly. The new manifest is checked as [`validate`] would
/// before anything is signed.
pub async fn add_migrations_with(
    repo: &RepoDir,
    keys: &KeyDir,
    from: Version,
    to: Version,
    files: &[PathBuf],
    options: &MigrationOptions,
) -> Result<PublishedMigrations> {
    let signing = keys.signing_keys()?;
    let current = load_for_edit(repo, keys)
        .await?
        .context(error::NoRepoSnafu { dir: repo.dir() })?;
    let mut manifest = match read_small_target(&current, MANIFEST_TARGET).await? {
        Some(bytes) => Manifest::parse(&bytes)?,
        None => {
            return error::ManifestMissingSnafu {
                url: repo.targets_url()?.to_string(),
            }
            .fail()
        }
    };

    let mut names = Vec::with_capacity(files.len());
    for file in files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if let Err(reason) = check_migration_name(&name, &to) {
            return error::BadNameSnafu {
                what: "the migration file name",
                value: name,
                reason,
            }
            .fail();
        }
        ensure!(
            !names.contains(&name),
            error::BadNameSnafu {
                what: "the migration file name",
                value: name,
                reason: "it is given twice",
            }
        );
        names.push(name);
    }

    let pair = (from.clone(), to.clone());
    if let Some(old) = manifest.migrations.get(&pair) {
        ensure!(
            options.replace,
            error::ManifestInvalidSnafu {
                problems: vec![format!(
                    "migrations ({from}, {to}) are already listed ({}); pass --replace to \
                     replace them (nodes that already ran them keep their result)",
                    old.join(", ")
                )],
            }
        );
    }
    let replaced = manifest
        .migrations
        .insert(pair, names.clone())
        .unwrap_or_default();
    let still_listed = manifest.referenced_targets();
    let dropped: Vec<String> = replaced
        .into_iter()
        .filter(|name| !still_listed.contains(name.as_str()))
        .collect();
    let mut present: BTreeSet<String> = current
        .targets()
        .signed
        .targets
        .keys()
        .map(|n| n.raw().to_string())
        .filter(|n| !dropped.contains(n))
        .collect();
    present.extend(names.iter().cloned());
    present.insert(MANIFEST_TARGET.to_string());
    let mut problems = manifest.problems(|name| present.contains(name));
    problems.extend(migration_problems(&manifest));
    ensure!(
        problems.is_empty(),
        error::ManifestInvalidSnafu { problems }
    );

    // Copies of the files as they are now: what is hashed is what is published.
    let staging = staging_dir(repo)?;
    let staged_dir = staging.path().join("targets");
    std::fs::create_dir(&staged_dir).context(IoSnafu {
        action: "create",
        path: &staged_dir,
    })?;
    let mut staged = Vec::with_capacity(files.len() + 1);
    for (file, name) in files.iter().zip(&names) {
        let copy = staged_dir.join(name);
        std::fs::copy(file, &copy).context(IoSnafu {
            action: "copy the migration",
            path: file,
        })?;
        staged.push(copy);
    }
    let manifest_file = staged_dir.join(MANIFEST_TARGET);
    std::fs::write(&manifest_file, manifest.to_json()?).context(IoSnafu {
        action: "write",
        path: &manifest_file,
    })?;
    staged.push(manifest_file);

    let mut editor = RepositoryEditor::from_repo(keys.root_json(), current.clone())
        .await
        .context(error::EditSnafu)?;
    for name in &dropped {
        let target =
            TargetName::new(name.as_str()).context(error::TargetNameSnafu { what: name })?;
        editor.remove_target(&target).context(error::EditSnafu)?;
    }
    for path in &staged {
        let (name, target) = RepositoryEditor::build_target(path)
            .await
            .context(error::EditSnafu)?;
        editor.add_target(name, target).context(error::EditSnafu)?;
    }
    let versions = set_versions(
        &mut editor,
        Some(&current),
        &options.expirations,
        options.now,
    )?;
    let signed = editor
        .sign(&signing)
        .await
        .context(error::SignSnafu { keys: keys.dir() })?;
    publish(&signed, repo, staging.path(), &staged).await?;
    tracing::info!(
        repo = %repo.dir().display(),
        %from,
        %to,
        migrations = ?names,
        targets_version = versions.targets,
        "migrations added and repository signed"
    );
    Ok(PublishedMigrations {
        names,
        manifest,
        versions,
    })
}

/// Signs targets, snapshot and timestamp again with new versions and expirations, changing no
/// target (pubsys's refresh-repo).
pub async fn refresh(
    repo: &RepoDir,
    keys: &KeyDir,
    expirations: &Expirations,
    now: Timestamp,
) -> Result<Versions> {
    let signing = keys.signing_keys()?;
    let current = load_for_edit(repo, keys)
        .await?
        .context(error::NoRepoSnafu { dir: repo.dir() })?;
    let mut editor = RepositoryEditor::from_repo(keys.root_json(), current.clone())
        .await
        .context(error::EditSnafu)?;
    let versions = set_versions(&mut editor, Some(&current), expirations, now)?;
    let signed = editor
        .sign(&signing)
        .await
        .context(error::SignSnafu { keys: keys.dir() })?;
    let staging = staging_dir(repo)?;
    publish(&signed, repo, staging.path(), &[]).await?;
    Ok(versions)
}

/// Signs a new `timestamp.json` (next version, valid for `valid_for` from `now`) pointing at
/// the current snapshot. Only the timestamp key is needed. Returns the new expiry.
pub async fn refresh_timestamp(
    repo: &RepoDir,
    keys: &KeyDir,
    valid_for: Span,
    now: Timestamp,
) -> Result<Timestamp> {
    let signing = keys.signing_keys()?;
    let current = load_for_edit(repo, keys)
        .await?
        .context(error::NoRepoSnafu { dir: repo.dir() })?;
    let mut timestamp = current.timestamp().signed.clone();
    timestamp.version = timestamp.version.saturating_add(1);
    timestamp.expires = add_span(now, valid_for)?;
    let expires = timestamp.expires;
    let root = KeyHolder::Root(current.root().signed.clone());
    let signed = sign_role(timestamp, &root, &signing)
        .await
        .context(error::SignSnafu { keys: keys.dir() })?;
    let staging = staging_dir(repo)?;
    signed
        .write(staging.path(), current.root().signed.consistent_snapshot)
        .await
        .context(error::WriteRepoSnafu {
            path: staging.path(),
        })?;
    publish_metadata(staging.path(), &repo.metadata_dir())?;
    tracing::info!(%expires, "timestamp refreshed");
    Ok(expires)
}

async fn sign_role<T>(
    role: T,
    root: &KeyHolder,
    keys: &[Box<dyn KeySource>],
) -> tough::error::Result<SignedRole<T>>
where
    T: tough::schema::Role + serde::Serialize,
{
    SignedRole::new(role, root, keys, &SystemRandom::new()).await
}

/// One verified target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedTarget {
    pub name: String,
    /// Size in the repository.
    pub length: u64,
    /// Size after zstd decompression, for compressed targets.
    pub decompressed: Option<u64>,
}

/// What [`validate`] found.
#[derive(Debug, Clone)]
pub struct Validation {
    /// Every target, verified against the signed metadata, sorted by name.
    pub targets: Vec<CheckedTarget>,
    pub manifest: Manifest,
    /// When each role's signature expires.
    pub expires: Vec<(RoleType, Timestamp)>,
}

/// Reads the repository as a node would (tough's client, expirations enforced, root of trust
/// `root_json`), downloads every target and verifies its length and hash, checks that every
/// compressed target decompresses, and checks `manifest.json` against the targets: every image
/// and migration it names is a target, and every migration is named `migrate_v<to>_<name>` for
/// the pair it is listed under ([`migration_problems`]).
pub async fn validate(
    metadata_url: &Url,
    targets_url: &Url,
    root_json: &Path,
) -> Result<Validation> {
    let repo = load(
        metadata_url,
        targets_url,
        root_json,
        ExpirationEnforcement::Safe,
    )
    .await?;
    let mut names: Vec<String> = repo
        .targets()
        .signed
        .targets
        .keys()
        .map(|n| n.raw().to_string())
        .collect();
    names.sort();
    let scratch = tempfile::tempdir().context(IoSnafu {
        action: "create a temporary directory in",
        path: std::env::temp_dir(),
    })?;
    let mut targets = Vec::new();
    let mut manifest_bytes = None;
    for name in &names {
        let target =
            TargetName::new(name.as_str()).context(error::TargetNameSnafu { what: name })?;
        let mut stream = repo
            .read_target(&target)
            .await
            .context(error::TargetVerifySnafu { name })?
            .context(error::TargetMissingSnafu { name })?;
        // The stream fails at the end if length or hash do not match; nothing is trusted before.
        let copy = scratch.path().join("target");
        let mut file = BufWriter::new(File::create(&copy).context(IoSnafu {
            action: "create",
            path: &copy,
        })?);
        let mut length = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.context(error::TargetVerifySnafu { name })?;
            length += chunk.len() as u64;
            file.write_all(&chunk).context(IoSnafu {
                action: "write",
                path: &copy,
            })?;
        }
        file.flush().context(IoSnafu {
            action: "write",
            path: &copy,
        })?;
        drop(file);
        let decompressed = if name.ends_with(&format!(".{COMPRESSED_EXTENSION}")) {
            let (copy, name) = (copy.clone(), name.clone());
            Some(
                tokio::task::spawn_blocking(move || -> Result<u64> {
                    let input = BufReader::new(File::open(&copy).context(IoSnafu {
                        action: "open",
                        path: &copy,
                    })?);
                    let mut decoder = zstd::stream::read::Decoder::new(input)
                        .context(error::DecompressSnafu { name: &name })?;
                    std::io::copy(&mut decoder, &mut std::io::sink())
                        .context(error::DecompressSnafu { name: &name })
                })
                .await
                .context(error::JoinSnafu)??,
            )
        } else {
            None
        };
        if name == MANIFEST_TARGET {
            manifest_bytes = Some(std::fs::read(&copy).context(IoSnafu {
                action: "read",
                path: &copy,
            })?);
        }
        targets.push(CheckedTarget {
            name: name.clone(),
            length,
            decompressed,
        });
    }

    let manifest_bytes = manifest_bytes.context(error::ManifestMissingSnafu {
        url: targets_url.to_string(),
    })?;
    let manifest = Manifest::parse(&manifest_bytes)?;
    let present: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    manifest.check(|name| present.contains(name))?;
    let problems = migration_problems(&manifest);
    ensure!(
        problems.is_empty(),
        error::ManifestInvalidSnafu { problems }
    );
    Ok(Validation {
        targets,
        manifest,
        expires: vec![
            (RoleType::Root, repo.root().signed.expires),
            (RoleType::Targets, repo.targets().signed.expires),
            (RoleType::Snapshot, repo.snapshot().signed.expires),
            (RoleType::Timestamp, repo.timestamp().signed.expires),
        ],
    })
}

impl RepoDir {
    /// [`validate`] on this directory's `file://` URLs.
    pub async fn validate(&self, root_json: &Path) -> Result<Validation> {
        validate(&self.metadata_url()?, &self.targets_url()?, root_json).await
    }

    /// Loads this repository with tough's client, enforcing expirations, as a node would.
    pub async fn load(&self, root_json: &Path) -> Result<Repository> {
        load(
            &self.metadata_url()?,
            &self.targets_url()?,
            root_json,
            ExpirationEnforcement::Safe,
        )
        .await
    }
}
