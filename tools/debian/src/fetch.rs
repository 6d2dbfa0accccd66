//! Downloading the `.deb` files a lock pins, into a cache, with size and sha256 checks.

use crate::error::{DebMismatchSnafu, Error, IoSnafu, PackageGoneSnafu, Result};
use crate::http::{sha256_file, Http};
use crate::lock::{check_lock, Lock, LockedPackage};
use snafu::ResultExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use tracing::{debug, info, warn};

/// How many downloads run at once.
const PARALLEL_DOWNLOADS: usize = 4;

/// The tracing target of [`fetch`]'s progress events: one per package ready (downloaded or
/// found in the cache), at debug level, with the fields `packages_done`, `packages_total`,
/// `bytes_done`, `bytes_total` and `downloaded` (false when it was cached). A front end (xtask)
/// turns them into a progress bar.
pub const PROGRESS_TARGET: &str = "debian::fetch::progress";

/// Where [`fetch`] keeps `.deb` files below its cache directory.
pub fn deb_cache_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("debs")
}

/// Makes sure every package of `lock` is in `cache_dir/debs/` with the size and sha256 the lock
/// names, downloading what is missing or damaged, and returns the paths in lock order.
///
/// A cached file with the wrong size or hash is deleted and downloaded again. A download that
/// does not match the lock stops everything with an error naming the package and both hashes;
/// the bad file is not kept. A 404 means the archive dropped the pinned version, and the error
/// says to refresh the lock with `cargo xtask lock`. When everything is cached, nothing touches
/// the network.
pub fn fetch(lock: &Lock, cache_dir: &Path) -> Result<Vec<PathBuf>> {
    check_lock(lock)?;
    let dir = deb_cache_dir(cache_dir);
    std::fs::create_dir_all(&dir).context(IoSnafu {
        action: "create directory",
        path: &dir,
    })?;

    // Building the client does not touch the network; requests are only made for missing files.
    let http = Http::new()?;
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<PathBuf>>>> =
        Mutex::new((0..lock.packages.len()).map(|_| None).collect());
    let failed = std::sync::atomic::AtomicBool::new(false);
    let workers = PARALLEL_DOWNLOADS.min(lock.packages.len()).max(1);
    let packages_total = lock.packages.len();
    let bytes_total = lock.total_size();
    let packages_done = AtomicUsize::new(0);
    let bytes_done = AtomicU64::new(0);

    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(package) = lock.packages.get(i) else {
                    break;
                };
                let result = fetch_one(package, &dir, &http);
                match &result {
                    Ok((_, downloaded)) => {
                        let packages_done = packages_done.fetch_add(1, Ordering::Relaxed) + 1;
                        let bytes_done =
                            bytes_done.fetch_add(package.size, Ordering::Relaxed) + package.size;
                        debug!(
                            target: PROGRESS_TARGET,
                            packages_done,
                            packages_total,
                            bytes_done,
                            bytes_total,
                            downloaded,
                            "{} ready",
                            package.name
                        );
                    }
                    Err(_) => failed.store(true, Ordering::Relaxed),
                }
                let result = result.map(|(path, _)| path);
                results.lock().expect("a download thread panicked")[i] = Some(result);
            });
        }
    });

    let results = results.into_inner().expect("a download thread panicked");
    let mut paths = Vec::with_capacity(results.len());
    // Report the first failure in lock order; packages skipped after it have no result.
    for result in results.into_iter().flatten() {
        paths.push(result?);
    }
    info!(
        "{} packages ready in {} ({} bytes)",
        paths.len(),
        dir.display(),
        lock.total_size()
    );
    Ok(paths)
}

/// The package's file, and whether it had to be downloaded (not cached).
fn fetch_one(package: &LockedPackage, dir: &Path, http: &Http) -> Result<(PathBuf, bool)> {
    let path = dir.join(package.file_name());
    if path.exists() {
        let (sha256, size) = sha256_file(&path)?;
        if sha256 == package.sha256 && size == package.size {
            debug!("{} {} is cached", package.name, package.version);
            return Ok((path, false));
        }
        warn!(
            "cached {} is damaged (sha256 {sha256}, {size} bytes; expected {} and {} bytes); downloading it again",
            path.display(),
            package.sha256,
            package.size
        );
        std::fs::remove_file(&path).context(IoSnafu {
            action: "remove the damaged file",
            path: &path,
        })?;
    }

    let url = package.url();
    // One line per package would drown the progress events (PROGRESS_TARGET) that count them.
    debug!(
        "downloading {} {} ({} bytes)",
        package.name, package.version, package.size
    );
    let mut temp = tempfile::NamedTempFile::new_in(dir).context(IoSnafu {
        action: "create a temporary file in",
        path: dir,
    })?;
    let temp_path = temp.path().to_path_buf();
    let downloaded = download_with_retry(http, &url, temp.as_file_mut(), &temp_path, package.size);
    let (sha256, size) = match downloaded {
        Ok(found) => found,
        Err(Error::NotFound { url }) => {
            return PackageGoneSnafu {
                package: package.name.as_str(),
                version: package.version.as_str(),
                url,
            }
            .fail()
        }
        Err(error) => return Err(error),
    };
    if sha256 != package.sha256 || size != package.size {
        return DebMismatchSnafu {
            package: format!("{} {}", package.name, package.version),
            url,
            expected: format!("sha256 {}, {} bytes", package.sha256, package.size),
            actual: format!("sha256 {sha256}, {size} bytes"),
        }
        .fail();
    }
    crate::index::make_readable(&temp_path)?;
    temp.persist(&path).map_err(|e| e.error).context(IoSnafu {
        action: "rename a temporary file to",
        path: &path,
    })?;
    Ok((path, true))
}

/// One retry for transport failures (a dropped connection); answers such as 404 are final.
fn download_with_retry(
    http: &Http,
    url: &str,
    file: &mut std::fs::File,
    path: &Path,
    size: u64,
) -> Result<(String, u64)> {
    use std::io::Seek;
    match http.download(url, file, path, size) {
        Err(error @ (Error::Http { .. } | Error::Io { .. })) => {
            warn!("download of {url} failed ({error}); trying once more");
            file.set_len(0).context(IoSnafu {
                action: "truncate",
                path,
            })?;
            file.rewind().context(IoSnafu {
                action: "rewind",
                path,
            })?;
            http.download(url, file, path, size)
        }
        other => other,
    }
}
