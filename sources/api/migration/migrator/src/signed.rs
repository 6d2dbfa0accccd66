//! Migrations from the signed mirror of the update repository.
//!
//! During an update the updater saves what the migrator needs into a directory (by default
//! `/var/lib/ballast/migrations`) laid out like the repository itself: `metadata/` (the root
//! chain, `timestamp.json`, `N.snapshot.json`, `N.targets.json`) and `targets/`
//! (`manifest.json` and the migrations, under their consistent-snapshot names
//! `<sha256>.<name>`). This module reads that mirror with tough's client against the root of
//! trust in the image, finds the migrations between two versions in the signed `manifest.json`
//! and loads each into a sealed memory file after checking it against the targets metadata.
//!
//! Expiration is deliberately not enforced: a node that was switched off for months must still
//! be able to migrate its datastore at boot with the metadata it saved, and the signatures are
//! what prove the migrations genuine. Everything else tough checks (signatures and thresholds
//! of every role, the root chain, versions, lengths and hashes) is enforced.

use crate::error::{
    self, BadListedNameSnafu, LoadMirrorSnafu, ManifestMissingSnafu, ManifestParseSnafu,
    ManifestPathSnafu, ManifestReadSnafu, MigrationMismatchSnafu, MigrationMissingSnafu,
    MigrationNotSignedSnafu, MigrationOutOfRangeSnafu, ReadRootSnafu, RuntimeSnafu,
    ScratchDirSnafu, UnsupportedVersionSnafu,
};
use crate::sealed::{MemoryFile, SealedProgram};
use crate::{parse_migration_name, Version};
use futures::StreamExt;
use snafu::{ensure, OptionExt, ResultExt};
use std::path::Path;
use tough::{
    ExpirationEnforcement, FilesystemTransport, Repository, RepositoryLoader, TargetName,
    TransportErrorKind,
};
use tracing::{debug, info};
use update_metadata::{Manifest, MANIFEST_TARGET};
use url::Url;

/// Signed metadata inside the mirror.
pub const METADATA_DIR: &str = constants::REPO_METADATA_DIR;
/// Targets inside the mirror.
pub const TARGETS_DIR: &str = constants::REPO_TARGETS_DIR;
/// Prefix of tough's scratch directory inside the datastore base (removed with the leftovers
/// of an interrupted run).
pub(crate) const TUF_SCRATCH_PREFIX: &str = ".tuf-";

/// A migration verified against the signed metadata, ready to run.
#[derive(Debug)]
pub struct VerifiedMigration {
    pub version: Version,
    pub program: SealedProgram,
}

/// The migrations between `from` and `to` listed in the signed manifest of the mirror in
/// `repo_dir`, in the order they run, each loaded and verified. `scratch` is a directory for
/// tough's own bookkeeping. Fails before anything is run if one of them is missing or differs
/// from what the targets metadata says.
pub fn load_migrations(
    repo_dir: &Path,
    root_json: &Path,
    scratch: &Path,
    from: &Version,
    to: &Version,
) -> error::Result<Vec<VerifiedMigration>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context(RuntimeSnafu)?;
    runtime.block_on(load_async(repo_dir, root_json, scratch, from, to))
}

async fn load_async(
    repo_dir: &Path,
    root_json: &Path,
    scratch: &Path,
    from: &Version,
    to: &Version,
) -> error::Result<Vec<VerifiedMigration>> {
    let root = tokio::fs::read(root_json)
        .await
        .context(ReadRootSnafu { path: root_json })?;
    let tuf_dir = tempfile::Builder::new()
        .prefix(TUF_SCRATCH_PREFIX)
        .tempdir_in(scratch)
        .context(ScratchDirSnafu { path: scratch })?;
    let repo = RepositoryLoader::new(
        &root,
        dir_url(&repo_dir.join(METADATA_DIR))?,
        dir_url(&repo_dir.join(TARGETS_DIR))?,
    )
    .transport(FilesystemTransport)
    .datastore(tuf_dir.path())
    .expiration_enforcement(ExpirationEnforcement::Unsafe)
    .load()
    .await
    .map_err(Box::new)
    .context(LoadMirrorSnafu {
        dir: repo_dir,
        root: root_json,
    })?;
    info!(
        dir = %repo_dir.display(),
        targets_version = repo.targets().signed.version,
        "loaded signed migration metadata (expiration not enforced)"
    );

    let manifest_bytes = read_verified(&repo, MANIFEST_TARGET, repo_dir)
        .await?
        .context(ManifestMissingSnafu { dir: repo_dir })?;
    let manifest =
        Manifest::parse(&manifest_bytes).context(ManifestParseSnafu { dir: repo_dir })?;
    let (from_semver, to_semver) = (semver(from)?, semver(to)?);
    let names = manifest
        .migrations_between(&from_semver, &to_semver)
        .context(ManifestPathSnafu {
            from: from.clone(),
            to: to.clone(),
        })?;
    info!(%from, %to, migrations = ?names, "migrations listed in the signed manifest");

    let (low, high) = if from <= to { (from, to) } else { (to, from) };
    let mut verified = Vec::with_capacity(names.len());
    for name in names {
        let version = listed_version(&name)?;
        ensure!(
            *low < version && version <= *high,
            MigrationOutOfRangeSnafu {
                name: &name,
                from: from.as_str(),
                to: to.as_str(),
            }
        );
        let program = load_program(&repo, &name, repo_dir).await?;
        verified.push(VerifiedMigration { version, program });
    }
    Ok(verified)
}

/// The version in a migration name from the manifest, which must be a plain file name.
fn listed_version(name: &str) -> error::Result<Version> {
    ensure!(
        !name.contains('/') && name != "." && name != "..",
        BadListedNameSnafu {
            name,
            reason: "it is not a plain file name",
        }
    );
    match parse_migration_name(Path::new(name)) {
        Ok(Some((version, _))) => Ok(version),
        Ok(None) => BadListedNameSnafu {
            name,
            reason: "it does not start with migrate_v",
        }
        .fail(),
        Err(e) => BadListedNameSnafu {
            name,
            reason: e.to_string(),
        }
        .fail(),
    }
}

/// Reads the migration `name` through tough into a sealed memory file: it must be a target of
/// the top-level targets metadata (signed by the targets key), and its bytes must match the
/// length and sha256 listed there, both while tough streams it and once sealed.
async fn load_program(
    repo: &Repository,
    name: &str,
    repo_dir: &Path,
) -> error::Result<SealedProgram> {
    let target_name = TargetName::new(name).map_err(|e| error::Error::BadListedName {
        name: name.to_string(),
        reason: e.to_string(),
    })?;
    let target = repo
        .targets()
        .signed
        .targets
        .get(&target_name)
        .context(MigrationNotSignedSnafu { name })?;
    let (length, sha256) = (target.length, target.hashes.sha256.to_vec());
    debug!(migration = name, length, sha256 = %hex::encode(&sha256), "reading migration");
    let mut stream = match repo.read_target(&target_name).await {
        Ok(Some(stream)) => stream,
        Ok(None) => return MigrationNotSignedSnafu { name }.fail(),
        Err(e) => return Err(fetch_error(name, repo_dir, &sha256, e)),
    };
    let mut file = MemoryFile::new(name)?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| fetch_error(name, repo_dir, &sha256, e))?;
        file.write(&chunk)?;
    }
    let program = file.seal(length, &sha256)?;
    info!(
        migration = name,
        length, "migration verified against signed metadata and sealed"
    );
    Ok(program)
}

/// Reads a small target completely (tough checks length and hash); `None` when it is not a
/// signed target.
async fn read_verified(
    repo: &Repository,
    name: &str,
    repo_dir: &Path,
) -> error::Result<Option<Vec<u8>>> {
    let target_name = TargetName::new(name).expect("constant target names are valid");
    let Some(mut stream) = repo
        .read_target(&target_name)
        .await
        .map_err(Box::new)
        .context(ManifestReadSnafu { dir: repo_dir })?
    else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(
            &chunk
                .map_err(Box::new)
                .context(ManifestReadSnafu { dir: repo_dir })?,
        );
    }
    Ok(Some(bytes))
}

/// Tells a target missing from the mirror from one whose bytes differ from its signature.
fn fetch_error(
    name: &str,
    repo_dir: &Path,
    sha256: &[u8],
    error: tough::error::Error,
) -> error::Error {
    let file = repo_dir
        .join(TARGETS_DIR)
        .join(format!("{}.{name}", hex::encode(sha256)));
    match &error {
        tough::error::Error::Transport { source, .. }
            if source.kind() == TransportErrorKind::FileNotFound =>
        {
            MigrationMissingSnafu { name, path: file }.build()
        }
        _ => MigrationMismatchSnafu {
            name,
            path: file,
            detail: mismatch_detail(&error),
        }
        .build(),
    }
}

/// What tough found wrong with a target, without the layers of transport errors around it.
fn mismatch_detail(error: &tough::error::Error) -> String {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        match e.downcast_ref::<tough::error::Error>() {
            Some(tough::error::Error::HashMismatch {
                calculated,
                expected,
                ..
            }) => return format!("its sha256 is {calculated}, the signed one {expected}"),
            Some(tough::error::Error::MaxSizeExceeded { max_size, .. }) => {
                return format!("it is longer than the signed length of {max_size} bytes")
            }
            _ => current = e.source(),
        }
    }
    error.to_string()
}

/// The semantic version of a datastore version (at most three numbers).
fn semver(version: &Version) -> error::Result<update_metadata::Version> {
    version.to_semver().context(UnsupportedVersionSnafu {
        version: version.clone(),
    })
}

fn dir_url(dir: &Path) -> error::Result<Url> {
    let absolute = std::path::absolute(dir).context(error::IoSnafu { path: dir })?;
    Url::from_directory_path(&absolute)
        .ok()
        .context(error::FileUrlSnafu { path: absolute })
}
