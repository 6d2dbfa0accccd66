//! Loading the signed package indexes of several suites and looking packages up across them.

use crate::error::{
    DecompressSnafu, Error, HashMismatchSnafu, IoSnafu, NoSourcesSnafu, NotUtf8Snafu, Result,
    SizeMismatchSnafu,
};
use crate::http::{sha256_bytes, Http};
use crate::packages::{parse_packages, BinaryPackage};
use crate::release::{verify_clearsigned, FileEntry, Release};
use crate::sources::ArchiveSource;
use crate::version::Version;
use snafu::{ensure, OptionExt, ResultExt};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use tracing::{debug, info, warn};

/// Where a package sits: (index number, position in that index).
type At = (usize, usize);

/// Providers of one virtual package: where each sits and the version it provides, if any.
type ProviderList = Vec<(At, Option<Version>)>;

/// The packages of one suite of one archive.
#[derive(Debug, Clone)]
pub struct PackageIndex {
    /// Where the index came from.
    pub source: ArchiveSource,
    /// Its packages, in index order.
    pub packages: Vec<BinaryPackage>,
}

/// Several suites' indexes merged: for every package name the highest version across suites, and
/// for every virtual package the packages that provide it.
#[derive(Debug, Clone, Default)]
pub struct Indexes {
    indexes: Vec<PackageIndex>,
    /// name -> (index, position) of its highest version
    best: HashMap<String, At>,
    /// virtual name -> providers among the best versions, with the provided version if any
    providers: HashMap<String, ProviderList>,
}

impl Indexes {
    /// Fetches and verifies the indexes of `sources` (see [`load_index`]) and merges them.
    pub fn load(sources: &[ArchiveSource], cache_dir: &Path) -> Result<Indexes> {
        ensure!(!sources.is_empty(), NoSourcesSnafu);
        let http = Http::new()?;
        let mut indexes = Vec::new();
        for source in sources {
            indexes.push(load_index_with(&http, source, cache_dir)?);
        }
        Ok(Indexes::new(indexes))
    }

    /// Merges already loaded indexes. Packages for architectures other than the index's own and
    /// `all` are ignored. When a name appears in several indexes, the highest version wins; on a
    /// tie, the earlier index wins.
    pub fn new(indexes: Vec<PackageIndex>) -> Indexes {
        let mut best: HashMap<String, At> = HashMap::new();
        for (i, index) in indexes.iter().enumerate() {
            for (j, package) in index.packages.iter().enumerate() {
                if package.architecture != index.source.architecture
                    && package.architecture != "all"
                {
                    continue;
                }
                match best.get(&package.name) {
                    Some(&(bi, bj)) if indexes[bi].packages[bj].version >= package.version => {}
                    _ => {
                        best.insert(package.name.clone(), (i, j));
                    }
                }
            }
        }
        let mut providers: HashMap<String, ProviderList> = HashMap::new();
        let mut positions: Vec<At> = best.values().copied().collect();
        positions.sort_unstable();
        for (i, j) in positions {
            for provided in &indexes[i].packages[j].provides {
                let version = provided
                    .constraint
                    .as_ref()
                    .and_then(|(op, v)| (*op == crate::packages::Op::Equal).then(|| v.clone()));
                providers
                    .entry(provided.name.clone())
                    .or_default()
                    .push(((i, j), version));
            }
        }
        for list in providers.values_mut() {
            list.sort_by(|a, b| {
                indexes[a.0 .0].packages[a.0 .1]
                    .name
                    .cmp(&indexes[b.0 .0].packages[b.0 .1].name)
            });
        }
        Indexes {
            indexes,
            best,
            providers,
        }
    }

    /// The highest version of the real package `name`.
    pub fn package(&self, name: &str) -> Option<&BinaryPackage> {
        self.best
            .get(name)
            .map(|&(i, j)| &self.indexes[i].packages[j])
    }

    /// Packages (highest versions only) that provide `name`, sorted by name, each with the
    /// version it provides (`Provides: name (= version)`), if it says.
    pub fn providers(&self, name: &str) -> Vec<(&BinaryPackage, Option<&Version>)> {
        self.providers
            .get(name)
            .map(|list| {
                list.iter()
                    .map(|(at, version)| (&self.indexes[at.0].packages[at.1], version.as_ref()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The merged indexes.
    pub fn indexes(&self) -> &[PackageIndex] {
        &self.indexes
    }

    /// Number of distinct real package names.
    pub fn len(&self) -> usize {
        self.best.len()
    }

    /// Whether no package is known.
    pub fn is_empty(&self) -> bool {
        self.best.is_empty()
    }

    /// The loaded suites, for messages (`uri suite, ...`).
    pub fn describe(&self) -> String {
        self.indexes
            .iter()
            .map(|i| format!("{} {}", i.source.uri, i.source.suite))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Fetches `InRelease` of `source`, verifies its signature with `gpgv` and the source's keyrings,
/// then fetches the `Packages` index it lists (preferring `.xz`, then `.gz`), checks size and
/// sha256 against `InRelease`, and parses it.
///
/// Compressed indexes are kept under `cache_dir/indexes/<sha256>.<ext>`; a cached file is used
/// only after its hash is checked again, so re-runs download just the small `InRelease` files.
pub fn load_index(source: &ArchiveSource, cache_dir: &Path) -> Result<PackageIndex> {
    load_index_with(&Http::new()?, source, cache_dir)
}

fn load_index_with(http: &Http, source: &ArchiveSource, cache_dir: &Path) -> Result<PackageIndex> {
    let url = source.inrelease_url();
    info!("reading {url}");
    let signed = http.get_bytes(&url)?;
    let text = verify_clearsigned(&signed, &source.signed_by, &url)?;
    let release = Release::parse(&text, &url)?;
    release.check_suite(&source.suite, &url)?;
    release.check_valid_until(OffsetDateTime::now_utc(), &url)?;

    let base = source.packages_path();
    let (ext, entry) = ["xz", "gz", ""]
        .iter()
        .find_map(|ext| {
            let path = with_ext(&base, ext);
            release.file(&path).map(|e| (*ext, e.clone()))
        })
        .ok_or_else(|| Error::IndexNotListed {
            url: url.clone(),
            path: base.clone(),
        })?;
    let (compressed, fresh) =
        fetch_cached_index(http, source, &release, &base, ext, &entry, cache_dir)?;

    let what = source.dists_url(&base);
    debug!("decompressing {what}");
    let data = decompress(&compressed, ext, &what)?;
    // The compressed file's hash already vouches for the content; the uncompressed hash is
    // checked once more on download only, to catch a decompressor problem early.
    if fresh && !ext.is_empty() {
        if let Some(plain) = release.file(&base) {
            check_entry(&data, plain, &what)?;
        }
    }
    debug!("parsing {what}");
    let text = std::str::from_utf8(&data).ok().context(NotUtf8Snafu {
        what: what.as_str(),
    })?;
    let mut packages = parse_packages(text, &what)?;
    for package in &mut packages {
        package.source_uri.clone_from(&source.uri);
        package.suite.clone_from(&source.suite);
    }
    info!(
        "{} {}: {} packages",
        source.uri,
        source.suite,
        packages.len()
    );
    Ok(PackageIndex {
        source: source.clone(),
        packages,
    })
}

fn with_ext(base: &str, ext: &str) -> String {
    if ext.is_empty() {
        base.to_string()
    } else {
        format!("{base}.{ext}")
    }
}

/// The compressed index bytes, from the cache when a verified copy is there, else downloaded,
/// verified and cached; and whether they were downloaded just now.
fn fetch_cached_index(
    http: &Http,
    source: &ArchiveSource,
    release: &Release,
    base: &str,
    ext: &str,
    entry: &FileEntry,
    cache_dir: &Path,
) -> Result<(Vec<u8>, bool)> {
    let dir = cache_dir.join("indexes");
    let cached: PathBuf = dir.join(with_ext(&entry.sha256, ext));
    let path = with_ext(base, ext);
    let what = source.dists_url(&path);
    if cached.exists() {
        debug!("checking cached {}", cached.display());
        let data = std::fs::read(&cached).context(IoSnafu {
            action: "read",
            path: &cached,
        })?;
        match check_entry(&data, entry, &what) {
            Ok(()) => {
                debug!("using cached {}", cached.display());
                return Ok((data, false));
            }
            Err(error) => warn!(
                "cached index {} is damaged ({error}); downloading it again",
                cached.display()
            ),
        }
    }

    let by_hash = release.acquire_by_hash.then(|| {
        let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
        source.dists_url(&format!("{dir}/by-hash/SHA256/{}", entry.sha256))
    });
    let data = match by_hash {
        Some(url) => match http.get_bytes(&url) {
            Err(Error::NotFound { .. }) => {
                debug!("{url} not found, trying {what}");
                http.get_bytes(&what)?
            }
            other => other?,
        },
        None => http.get_bytes(&what)?,
    };
    check_entry(&data, entry, &what)?;

    std::fs::create_dir_all(&dir).context(IoSnafu {
        action: "create directory",
        path: &dir,
    })?;
    write_atomically(&cached, &data)?;
    Ok((data, true))
}

fn check_entry(data: &[u8], entry: &FileEntry, what: &str) -> Result<()> {
    ensure!(
        data.len() as u64 == entry.size,
        SizeMismatchSnafu {
            what,
            expected: entry.size,
            actual: data.len() as u64,
        }
    );
    let actual = sha256_bytes(data);
    ensure!(
        actual == entry.sha256,
        HashMismatchSnafu {
            what,
            expected: entry.sha256.as_str(),
            actual,
        }
    );
    Ok(())
}

fn decompress(data: &[u8], ext: &str, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() * 6);
    let result = match ext {
        "xz" => xz2::read::XzDecoder::new_multi_decoder(data).read_to_end(&mut out),
        "gz" => flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out),
        _ => return Ok(data.to_vec()),
    };
    result.context(DecompressSnafu { what })?;
    Ok(out)
}

/// Writes `data` to a temporary file beside `path` and renames it into place.
pub(crate) fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).context(IoSnafu {
        action: "create a temporary file in",
        path: dir,
    })?;
    file.write_all(data).context(IoSnafu {
        action: "write",
        path: file.path().to_path_buf(),
    })?;
    make_readable(file.path())?;
    file.persist(path).map_err(|e| e.error).context(IoSnafu {
        action: "rename a temporary file to",
        path,
    })?;
    Ok(())
}

/// Gives a temporary file (created 0600) the usual 0644, so the cache can be shared.
pub(crate) fn make_readable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).context(IoSnafu {
        action: "set the mode of",
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packages::parse_packages;

    pub(crate) fn index(uri: &str, suite: &str, text: &str) -> PackageIndex {
        let source = ArchiveSource::new(uri, suite);
        let mut packages = parse_packages(text, suite).unwrap();
        for p in &mut packages {
            p.source_uri = source.uri.clone();
            p.suite = suite.to_string();
        }
        PackageIndex { source, packages }
    }

    fn stanza(name: &str, version: &str, arch: &str, extra: &str) -> String {
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: {arch}\nFilename: pool/{name}_{version}.deb\nSize: 1\nSHA256: {}\n{extra}\n",
            "0".repeat(64)
        )
    }

    #[test]
    fn highest_version_across_suites_wins() {
        let main = index(
            "http://deb.debian.org/debian",
            "bookworm",
            &[
                stanza("a", "1.0-1", "amd64", ""),
                stanza("b", "2.0", "all", "Provides: v (= 2)"),
                stanza("c", "1.0", "arm64", ""),
            ]
            .join("\n"),
        );
        let security = index(
            "http://deb.debian.org/debian-security",
            "bookworm-security",
            &[
                stanza("a", "1.0-1+deb12u1", "amd64", ""),
                stanza("b", "1.9", "all", ""),
            ]
            .join("\n"),
        );
        let indexes = Indexes::new(vec![main, security]);
        let a = indexes.package("a").unwrap();
        assert_eq!(a.version.as_str(), "1.0-1+deb12u1");
        assert_eq!(a.source_uri, "http://deb.debian.org/debian-security");
        assert_eq!(indexes.package("b").unwrap().version.as_str(), "2.0");
        assert!(indexes.package("c").is_none(), "wrong architecture");
        let providers = indexes.providers("v");
        assert_eq!(providers.len(), 1);
        assert_eq!(providers[0].1.unwrap().as_str(), "2");
        assert_eq!(indexes.len(), 2);
    }

    #[test]
    fn decompression_and_checks() {
        use std::io::Write;
        let text = b"Package: a\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decompress(&gz, "gz", "t").unwrap(), text);
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(text).unwrap();
        let xz = xz.finish().unwrap();
        assert_eq!(decompress(&xz, "xz", "t").unwrap(), text);
        assert!(decompress(b"not xz", "xz", "t").is_err());

        let entry = FileEntry {
            sha256: sha256_bytes(text),
            size: text.len() as u64,
        };
        check_entry(text, &entry, "t").unwrap();
        let err = check_entry(b"Package: b\n", &entry, "t").unwrap_err();
        assert!(err.to_string().contains("sha256"), "{err}");
        let err = check_entry(b"x", &entry, "t").unwrap_err();
        assert!(err.to_string().contains("size"), "{err}");
    }
}
