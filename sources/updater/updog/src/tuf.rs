//! The update repository as the node sees it: tough's client against the root of trust shipped
//! in the image, over HTTP(S) (or `file://`), keeping a copy of every metadata file exactly as
//! it was fetched so that the migrations mirror can be written from the same bytes.

use crate::error::{self, Result};
use futures::Stream;
use snafu::{OptionExt, ResultExt};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tough::{
    async_trait, Bytes, FilesystemTransport, HttpTransport, HttpTransportBuilder, IntoVec,
    Repository, RepositoryLoader, TargetName, Transport, TransportError, TransportStream,
};
use update_metadata::{Manifest, MANIFEST_TARGET};
use url::Url;

/// Whole-request timeout of one HTTP fetch. tough resumes an interrupted or timed-out download
/// with a range request, up to [`HTTP_TRIES`] times, so this bounds one attempt, not a target.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Attempts per file.
pub const HTTP_TRIES: u32 = 5;
/// tough's HTTP transport waits this long before every request, the first included, and
/// multiplies the wait by [`HTTP_BACKOFF_FACTOR`] after each failed try from the second on
/// (so 20 ms, 20 ms, 100 ms, 500 ms, 2.5 s). Its default of 100 ms cost a tenth of a second
/// per metadata file and target even when nothing failed.
pub const HTTP_INITIAL_BACKOFF: Duration = Duration::from_millis(20);
/// See [`HTTP_INITIAL_BACKOFF`].
pub const HTTP_BACKOFF_FACTOR: f32 = 5.0;

/// Metadata files as fetched, by file name (`timestamp.json`, `3.snapshot.json`).
pub type Recorded = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// A transport for `file://` and `http(s)://` URLs that keeps a copy of every file it fully
/// delivers from below the metadata URL.
#[derive(Debug, Clone)]
pub struct RecordingTransport {
    metadata_base: Url,
    http: HttpTransport,
    recorded: Recorded,
}

impl RecordingTransport {
    pub fn new(metadata_base: Url) -> Self {
        RecordingTransport {
            metadata_base,
            http: HttpTransportBuilder::new()
                .timeout(HTTP_TIMEOUT)
                .connect_timeout(Duration::from_secs(10))
                .tries(HTTP_TRIES)
                .initial_backoff(HTTP_INITIAL_BACKOFF)
                .backoff_factor(HTTP_BACKOFF_FACTOR)
                .max_backoff(Duration::from_secs(5))
                .build(),
            recorded: Recorded::default(),
        }
    }

    /// The files recorded so far.
    pub fn recorded(&self) -> Recorded {
        Arc::clone(&self.recorded)
    }
}

#[async_trait]
impl Transport for RecordingTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let stream = match url.scheme() {
            "file" => FilesystemTransport.fetch(url.clone()).await?,
            _ => self.http.fetch(url.clone()).await?,
        };
        let name = url
            .as_str()
            .strip_prefix(self.metadata_base.as_str())
            .filter(|n| !n.is_empty() && !n.contains('/'));
        Ok(match name {
            Some(name) => Box::pin(Recording {
                inner: stream,
                name: name.to_string(),
                buf: Vec::new(),
                failed: false,
                store: Arc::clone(&self.recorded),
            }),
            None => stream,
        })
    }
}

/// Passes a stream through and stores its bytes once it ends without error.
struct Recording {
    inner: TransportStream,
    name: String,
    buf: Vec<u8>,
    failed: bool,
    store: Recorded,
}

impl Stream for Recording {
    type Item = Result<Bytes, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let poll = self.inner.as_mut().poll_next(cx);
        match &poll {
            Poll::Ready(Some(Ok(bytes))) => {
                let bytes = bytes.clone();
                self.buf.extend_from_slice(&bytes);
            }
            Poll::Ready(Some(Err(_))) => self.failed = true,
            Poll::Ready(None) if !self.failed => {
                let bytes = std::mem::take(&mut self.buf);
                let name = self.name.clone();
                if let Ok(mut store) = self.store.lock() {
                    store.insert(name, bytes);
                }
            }
            Poll::Ready(None) | Poll::Pending => {}
        }
        poll
    }
}

/// A loaded repository and what it took to load it.
#[derive(Debug)]
pub struct Loaded {
    pub repo: Repository,
    /// The trusted root.json the load started from.
    pub root: Vec<u8>,
    pub root_path: PathBuf,
    /// Metadata files as fetched.
    pub recorded: Recorded,
    pub metadata_url: Url,
}

/// Loads the repository at `metadata_url`/`targets_url` trusting `root_path`, keeping tough's
/// record of the newest metadata (for rollback protection) in `datastore`, which is created.
pub async fn load(
    metadata_url: &Url,
    targets_url: &Url,
    root_path: &Path,
    datastore: &Path,
) -> Result<Loaded> {
    let root = tokio::fs::read(root_path)
        .await
        .context(error::ReadRootSnafu { path: root_path })?;
    tokio::fs::create_dir_all(datastore)
        .await
        .context(error::IoSnafu {
            action: "create the metadata cache",
            path: datastore,
        })?;
    let transport = RecordingTransport::new(metadata_url.clone());
    let recorded = transport.recorded();
    let repo = RepositoryLoader::new(&root, metadata_url.clone(), targets_url.clone())
        .transport(transport)
        .datastore(datastore)
        .load()
        .await
        .map_err(|source| match source {
            tough::error::Error::ExpiredMetadata { role, .. } => error::Error::Expired {
                url: metadata_url.to_string(),
                role,
            },
            source @ tough::error::Error::VerifyMetadata { role, .. } => error::Error::Untrusted {
                url: metadata_url.to_string(),
                role,
                root: root_path.to_path_buf(),
                source: Box::new(source),
            },
            source => error::Error::LoadRepo {
                url: metadata_url.to_string(),
                root: root_path.to_path_buf(),
                source: Box::new(source),
            },
        })?;
    tracing::info!(
        url = %metadata_url,
        targets_version = repo.targets().signed.version.get(),
        "loaded the update repository"
    );
    Ok(Loaded {
        repo,
        root,
        root_path: root_path.to_path_buf(),
        recorded,
        metadata_url: metadata_url.clone(),
    })
}

impl Loaded {
    /// Reads and parses the signed `manifest.json`.
    pub async fn manifest(&self) -> Result<Manifest> {
        let url = self.metadata_url.to_string();
        let name =
            TargetName::new(MANIFEST_TARGET).map_err(|source| error::Error::FetchTarget {
                name: MANIFEST_TARGET.to_string(),
                source: Box::new(source),
            })?;
        let stream = self
            .repo
            .read_target(&name)
            .await
            .map_err(|source| self.fetch_error(MANIFEST_TARGET, source))?
            .context(error::ManifestMissingSnafu { url })?;
        let bytes = stream
            .into_vec()
            .await
            .map_err(|source| verify_error(MANIFEST_TARGET, source))?;
        Manifest::parse(&bytes).context(error::ManifestSnafu)
    }

    /// Whether `name` is a target of the signed targets metadata.
    pub fn has_target(&self, name: &str) -> bool {
        TargetName::new(name)
            .map(|n| self.repo.targets().signed.targets.contains_key(&n))
            .unwrap_or(false)
    }

    /// The error for a target that could not be fetched at all.
    pub fn fetch_error(&self, name: &str, source: tough::error::Error) -> error::Error {
        match source {
            tough::error::Error::ExpiredMetadata { role, .. } => error::Error::Expired {
                url: self.metadata_url.to_string(),
                role,
            },
            source => error::Error::FetchTarget {
                name: name.to_string(),
                source: Box::new(source),
            },
        }
    }
}

/// The error for a target whose download failed or did not match the signed metadata, saying
/// which of the two it was.
pub fn verify_error(name: &str, source: tough::error::Error) -> error::Error {
    error::Error::TargetVerify {
        name: name.to_string(),
        problem: classify(&source),
        source: Box::new(source),
    }
}

/// What went wrong in a target stream, from tough's error chain.
fn classify(error: &tough::error::Error) -> &'static str {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(tough_error) = e.downcast_ref::<tough::error::Error>() {
            match tough_error {
                tough::error::Error::HashMismatch { .. } => {
                    return "does not match the sha256 in the signed metadata (it was changed or \
                            damaged after signing)"
                }
                tough::error::Error::MaxSizeExceeded { .. } => {
                    return "is larger than the length in the signed metadata (it was changed \
                            after signing)"
                }
                _ => {}
            }
        }
        current = e.source();
    }
    "could not be downloaded"
}
