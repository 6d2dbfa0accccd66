//! The migrations mirror: what the migrator needs at the first boot of the new version, saved
//! during `update-image` while the repository is reachable, as a `file://` copy of the
//! repository that tough can load (see the crate documentation for the layout).

use crate::error::{self, Result};
use crate::tuf::Loaded;
use snafu::{ensure, ResultExt};
use std::fs::File;
use std::path::{Path, PathBuf};
use tough::{
    ExpirationEnforcement, FilesystemTransport, IntoVec, Prefix, RepositoryLoader, TargetName,
};
use update_metadata::MANIFEST_TARGET;
use url::Url;

/// Signed metadata inside the mirror.
pub const METADATA_DIR: &str = constants::REPO_METADATA_DIR;
/// Targets inside the mirror.
pub const TARGETS_DIR: &str = constants::REPO_TARGETS_DIR;

/// Replaces the mirror in `dir` with the metadata `loaded` fetched, `manifest.json` and the
/// migration targets `migrations`, each verified through tough as it is saved. The new mirror
/// is built beside `dir`, loaded back with tough, and swapped in with one rename, so a reader
/// sees the old mirror or the new one, never a mix.
pub async fn save(loaded: &Loaded, migrations: &[String], dir: &Path) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).context(error::IoSnafu {
        action: "create",
        path: parent,
    })?;
    let leaf = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "migrations".to_string());
    // Removed when dropped: the new mirror on failure, the old one after the swap.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{leaf}.new-"))
        .tempdir_in(parent)
        .context(error::IoSnafu {
            action: "create a directory in",
            path: parent,
        })?;
    let metadata = staging.path().join(METADATA_DIR);
    let targets = staging.path().join(TARGETS_DIR);
    for d in [&metadata, &targets] {
        std::fs::create_dir(d).context(error::IoSnafu {
            action: "create",
            path: d,
        })?;
    }

    // Metadata exactly as fetched, plus the trusted root the chain starts from.
    let mut files = vec![(root_file_name(&loaded.root), loaded.root.clone())];
    if let Ok(recorded) = loaded.recorded.lock() {
        files.extend(recorded.iter().map(|(n, b)| (n.clone(), b.clone())));
    }
    for (name, bytes) in &files {
        let path = metadata.join(name);
        std::fs::write(&path, bytes).context(error::IoSnafu {
            action: "write",
            path: &path,
        })?;
    }

    // Targets through tough, which checks each against the signed metadata while saving.
    let names: Vec<&str> = std::iter::once(MANIFEST_TARGET)
        .chain(migrations.iter().map(String::as_str))
        .collect();
    for name in &names {
        let target = target_name(name)?;
        loaded
            .repo
            .save_target(&target, &targets, Prefix::Digest)
            .await
            .map_err(|source| error::Error::SaveMigration {
                name: name.to_string(),
                dir: dir.to_path_buf(),
                source: Box::new(source),
            })?;
    }
    sync_tree(staging.path())?;

    verify(loaded, staging.path(), &names).await?;
    swap_in(staging.path(), dir)?;
    File::open(parent)
        .and_then(|d| d.sync_all())
        .context(error::IoSnafu {
            action: "flush",
            path: parent,
        })?;
    tracing::info!(
        dir = %dir.display(),
        migrations = ?migrations,
        "saved the signed metadata, manifest and {} migration(s) for the migrator",
        migrations.len()
    );
    Ok(())
}

/// `<version>.root.json` for a root metadata file, as the root chain names them.
fn root_file_name(root: &[u8]) -> String {
    let version = serde_json::from_slice::<serde_json::Value>(root)
        .ok()
        .and_then(|v| v["signed"]["version"].as_u64())
        .unwrap_or(1);
    format!("{version}.root.json")
}

fn target_name(name: &str) -> Result<TargetName> {
    TargetName::new(name).map_err(|source| error::Error::FetchTarget {
        name: name.to_string(),
        source: Box::new(source),
    })
}

/// Loads the mirror in `dir` as the migrator will (the same root of trust, files only,
/// expiration not enforced) and reads every saved target through tough again.
async fn verify(loaded: &Loaded, dir: &Path, names: &[&str]) -> Result<()> {
    let verify_error = |source: tough::error::Error| error::Error::VerifyMirror {
        dir: dir.to_path_buf(),
        source: Box::new(source),
    };
    let scratch = tempfile::tempdir().context(error::IoSnafu {
        action: "create a temporary directory for",
        path: dir,
    })?;
    let repo = RepositoryLoader::new(
        &loaded.root,
        dir_url(&dir.join(METADATA_DIR))?,
        dir_url(&dir.join(TARGETS_DIR))?,
    )
    .transport(FilesystemTransport)
    .datastore(scratch.path())
    .expiration_enforcement(ExpirationEnforcement::Unsafe)
    .load()
    .await
    .map_err(verify_error)?;
    let (mirror, fetched) = (
        repo.targets().signed.version,
        loaded.repo.targets().signed.version,
    );
    ensure!(
        mirror == fetched,
        error::MirrorVersionSnafu {
            dir,
            mirror: mirror.get(),
            fetched: fetched.get(),
        }
    );
    for name in names {
        let stream = repo
            .read_target(&target_name(name)?)
            .await
            .map_err(verify_error)?
            .ok_or_else(|| error::Error::TargetNotSigned {
                name: name.to_string(),
            })?;
        stream.into_vec().await.map_err(verify_error)?;
    }
    Ok(())
}

fn dir_url(path: &Path) -> Result<Url> {
    Url::from_directory_path(path).map_err(|()| error::Error::BadUrl {
        url: path.display().to_string(),
        reason: "not an absolute path".to_string(),
    })
}

/// Flushes every file and directory below `dir` (and `dir`) to disk.
fn sync_tree(dir: &Path) -> Result<()> {
    let io = |path: &Path| error::IoSnafu {
        action: "flush",
        path: path.to_path_buf(),
    };
    for entry in std::fs::read_dir(dir).context(io(dir))? {
        let path: PathBuf = entry.context(io(dir))?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .context(io(&path))?;
        }
    }
    File::open(dir).and_then(|d| d.sync_all()).context(io(dir))
}

/// Puts `new` in place of `dir` with one rename: an exchange when `dir` exists (its old contents
/// end up at `new`), a plain rename otherwise.
fn swap_in(new: &Path, dir: &Path) -> Result<()> {
    let io = |source: std::io::Error| error::Error::Io {
        action: "replace",
        path: dir.to_path_buf(),
        source,
    };
    if dir.exists() {
        nix::fcntl::renameat2(
            None,
            new,
            None,
            dir,
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        )
        .map_err(|errno| io(errno.into()))
    } else {
        std::fs::rename(new, dir).map_err(io)
    }
}
