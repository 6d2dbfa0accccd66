//! A small static HTTP file server, so that tests and benchmarks can hand a repository to a real
//! HTTP client (tough's, curl) on 127.0.0.1 instead of a `file://` URL.
//!
//! [`ServedDir::start`] serves one directory on an unused port of 127.0.0.1 from a thread of its
//! own, so it works the same from synchronous code and from any tokio runtime; dropping the
//! [`ServedDir`] stops it. Files are streamed from disk in chunks, never read whole, with a
//! `Content-Length`; single byte ranges (`Range: bytes=N-` or `bytes=N-M`) are answered with 206,
//! which is what tough's HTTP transport asks for when it resumes a download after an error.
//!
//! ```no_run
//! let served = repo::serve::ServedDir::start("build/repo").unwrap();
//! let metadata = format!("{}metadata/", served.url()); // http://127.0.0.1:PORT/metadata/
//! # drop(metadata);
//! ```
//!
//! It is a test tool: no directory listings, no caching headers, no TLS, GET and HEAD only, and
//! paths with `..` or a leading `/` component are refused with 404.

use crate::error::{self, Result};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use snafu::ResultExt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Bytes read from disk per chunk of a response body.
const CHUNK: usize = 256 * 1024;

/// A directory served over HTTP on 127.0.0.1 until dropped.
#[derive(Debug)]
pub struct ServedDir {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Clone)]
struct Served {
    root: PathBuf,
    requests: Arc<Mutex<Vec<String>>>,
}

impl ServedDir {
    /// Starts serving `dir` (which must exist) on a free port of 127.0.0.1.
    pub fn start(dir: impl Into<PathBuf>) -> Result<ServedDir> {
        let root = dir.into();
        std::fs::metadata(&root).context(error::IoSnafu {
            action: "serve",
            path: &root,
        })?;
        let loopback = PathBuf::from("127.0.0.1:0");
        let listener = TcpListener::bind("127.0.0.1:0").context(error::IoSnafu {
            action: "listen on",
            path: &loopback,
        })?;
        let addr = listener.local_addr().context(error::IoSnafu {
            action: "read the address of",
            path: &loopback,
        })?;
        listener.set_nonblocking(true).context(error::IoSnafu {
            action: "configure",
            path: &loopback,
        })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context(error::IoSnafu {
                action: "start a runtime for",
                path: &root,
            })?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = Served {
            root,
            requests: Arc::clone(&requests),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("serve-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(e) => {
                            tracing::error!("cannot serve on {addr}: {e}");
                            return;
                        }
                    };
                    let app = Router::new().fallback(serve_file).with_state(state);
                    // Stop at once when asked: tests drop the server when they are done with it,
                    // and anything still in flight then is abandoned with the runtime.
                    tokio::select! {
                        result = axum::serve(listener, app) => {
                            if let Err(e) = result {
                                tracing::error!("serving on {addr} failed: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
            })
            .context(error::IoSnafu {
                action: "start a thread to serve",
                path: &loopback,
            })?;
        tracing::debug!("serving on http://{addr}/");
        Ok(ServedDir {
            addr,
            requests,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT/`, with the final slash, ready for `Url::join`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The paths requested so far, in order (`/metadata/timestamp.json`), whatever the answer.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for ServedDir {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve_file(State(served): State<Served>, request: Request) -> Response {
    let raw_path = request.uri().path().to_string();
    if let Ok(mut requests) = served.requests.lock() {
        requests.push(raw_path.clone());
    }
    if !matches!(request.method().as_str(), "GET" | "HEAD") {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let Some(path) = resolve(&served.root, &raw_path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match open(&path, request.headers()).await {
        Ok(response) => response,
        Err(e) if e.kind() == io::ErrorKind::NotFound => StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            tracing::warn!("cannot serve {}: {e}", path.display());
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The file under `root` that the URL path names, if it stays under `root`.
fn resolve(root: &Path, raw_path: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(raw_path)
        .decode_utf8()
        .ok()?;
    let relative = Path::new(decoded.trim_start_matches('/'));
    let mut path = root.to_path_buf();
    for component in relative.components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(path)
}

/// A byte range asked for with `Range: bytes=START-` or `bytes=START-END`; `None` for no range
/// or a form this server does not handle (then the whole file is sent, which HTTP allows).
fn requested_range(headers: &HeaderMap, len: u64) -> Option<Result<(u64, u64), ()>> {
    let value = headers.get(header::RANGE)?.to_str().ok()?;
    let spec = value.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = match end.trim() {
        "" => len.saturating_sub(1),
        end => end.parse::<u64>().ok()?.min(len.saturating_sub(1)),
    };
    if start >= len || end < start {
        return Some(Err(()));
    }
    Some(Ok((start, end + 1)))
}

async fn open(path: &Path, headers: &HeaderMap) -> io::Result<Response> {
    let mut file = tokio::fs::File::open(path).await?;
    let metadata = file.metadata().await?;
    if !metadata.is_file() {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    let len = metadata.len();
    let (status, start, end) = match requested_range(headers, len) {
        None => (StatusCode::OK, 0, len),
        Some(Ok((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end),
        Some(Err(())) => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
    };
    if start > 0 {
        file.seek(io::SeekFrom::Start(start)).await?;
    }
    let body = futures::stream::try_unfold((file, end - start), |(mut file, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let mut buf = vec![0; CHUNK.min(usize::try_from(left).unwrap_or(CHUNK))];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being served",
            ));
        }
        buf.truncate(n);
        Ok::<_, io::Error>(Some((Bytes::from(buf), (file, left - n as u64))))
    });
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        let range = format!("bytes {start}-{}/{len}", end - 1);
        if let Ok(value) = HeaderValue::from_str(&range) {
            headers.insert(header::CONTENT_RANGE, value);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_root() {
        let root = Path::new("/srv/repo");
        assert_eq!(
            resolve(root, "/metadata/1.root.json"),
            Some(PathBuf::from("/srv/repo/metadata/1.root.json"))
        );
        assert_eq!(
            resolve(root, "/targets/a%20b.json"),
            Some(PathBuf::from("/srv/repo/targets/a b.json"))
        );
        assert_eq!(resolve(root, "/metadata/../../etc/passwd"), None);
        assert_eq!(resolve(root, "/%2e%2e/secret"), None);
    }

    #[test]
    fn ranges() {
        let mut headers = HeaderMap::new();
        assert_eq!(requested_range(&headers, 100), None);
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=10-"));
        assert_eq!(requested_range(&headers, 100), Some(Ok((10, 100))));
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=10-19"));
        assert_eq!(requested_range(&headers, 100), Some(Ok((10, 20))));
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=100-"));
        assert_eq!(requested_range(&headers, 100), Some(Err(())));
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=0-1,5-6"));
        assert_eq!(requested_range(&headers, 100), None);
    }
}
