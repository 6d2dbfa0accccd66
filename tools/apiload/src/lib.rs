//! # Background
//!
//! `cargo xtask bench api` compares the API server with yardsticks measured in the same run, so
//! that figures from different machines can be compared as ratios. `xtask` itself is a debug
//! build, too slow to drive tens of thousands of requests a second; this crate is the part that
//! must be fast, built in release by the bench: the load generator, the reference server and the
//! reference durable write.
//!
//! # Usage
//!
//! - `apiload serve-static --socket S`: the reference server, a bare hyper HTTP/1.1 server on a
//!   Unix socket that reads each request (and its body) and answers a fixed byte string. It runs
//!   on tokio's default multi-threaded runtime, as the API server does.
//! - `apiload requests --socket S --method M --path P [--body B] --clients N --seconds T`: N
//!   keep-alive connections, each sending the same request back to back for T seconds (after a
//!   short warm-up). Prints one JSON [`Throughput`] line.
//! - `apiload commits --socket S --clients N --commits K`: N clients, each with its own
//!   transaction, doing K rounds of `PATCH /settings` + `POST /tx/commit_and_apply`. Prints one
//!   JSON [`Commits`] line.
//! - `apiload durable-writes --dir D --threads N --writes K`: the commit reference, N threads
//!   each doing K rounds of "write a small file, fsync it, rename it into place, fsync the
//!   directory". Prints one JSON [`Commits`] line (its `whole` is the same as `commit`).
//!
//! The client runs on a current-thread runtime: one core drives the load, whatever the server
//! does with the other, the same for the API server and the reference.
//!
//! # Current limitations
//!
//! - Answers must be 2xx; anything else stops the run with the body in the error.
//! - Latencies are measured per request from the client's side; the request count per client is
//!   not capped, so memory grows with the run length (8 bytes a request).
#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::net::{UnixListener, UnixStream};

/// The body the reference server answers with: a small JSON text, about the size of a
/// single-key answer.
pub const STATIC_BODY: &[u8] = b"{\"motd\":\"Welcome to Ballast!\"}";

/// Warm-up before a throughput run starts counting.
pub const WARM_UP: Duration = Duration::from_millis(300);

/// Result of a throughput run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Throughput {
    pub requests: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Result of a commit (or durable write) run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Commits {
    pub commits: u64,
    /// Commits finished per second over the whole run, all clients together.
    pub per_second: f64,
    /// The commit request alone (or one durable write).
    pub commit_p50_ms: f64,
    pub commit_p99_ms: f64,
    /// PATCH + commit, as `apiclient set` does them.
    pub whole_p50_ms: f64,
    pub whole_p99_ms: f64,
}

/// The `p`th percentile of `samples` (sorted in place), in milliseconds.
#[expect(
    clippy::cast_sign_loss,
    reason = "p is a percentage, so the rank lies in 0..=last"
)]
pub fn percentile_ms(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let last = samples.len() - 1;
    let idx = ((p / 100.0 * last as f64).round() as usize).min(last);
    samples[idx].as_secs_f64() * 1000.0
}

/// Serves [`STATIC_BODY`] on `socket` until killed.
pub async fn serve_static(socket: &Path) -> Result<()> {
    let _ = std::fs::remove_file(socket);
    let listener =
        UnixListener::bind(socket).with_context(|| format!("cannot bind {}", socket.display()))?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async {
                // Read the body as the API server must, then answer the same bytes every time.
                let _ = req.into_body().collect().await;
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                    Bytes::from_static(STATIC_BODY),
                )))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Client {
    pub async fn connect(socket: &Path) -> Result<Client> {
        let stream = UnixStream::connect(socket)
            .await
            .with_context(|| format!("cannot connect to {}", socket.display()))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Client { sender })
    }

    /// Sends one request and reads the whole answer; a status outside 2xx is an error.
    pub async fn send(&mut self, method: &str, path: &str, body: &[u8]) -> Result<Bytes> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "localhost");
        if !body.is_empty() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = builder.body(Full::new(Bytes::copy_from_slice(body)))?;
        self.sender.ready().await?;
        let res = self.sender.send_request(req).await?;
        let status = res.status();
        let bytes = res.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!(
                "{method} {path} answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(bytes)
    }
}

/// `clients` connections sending the same request back to back for `length` after [`WARM_UP`].
pub async fn requests(
    socket: &Path,
    method: &str,
    path: &str,
    body: &[u8],
    clients: usize,
    length: Duration,
) -> Result<Throughput> {
    let start = Instant::now() + WARM_UP;
    let deadline = start + length;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let mut client = Client::connect(socket).await?;
        let (method, path, body) = (method.to_string(), path.to_string(), body.to_vec());
        tasks.spawn(async move {
            let mut samples = Vec::with_capacity(1 << 16);
            loop {
                let sent = Instant::now();
                if sent >= deadline {
                    break;
                }
                client.send(&method, &path, &body).await?;
                if sent >= start {
                    samples.push(sent.elapsed());
                }
            }
            Ok::<_, anyhow::Error>(samples)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    let requests = all.len() as u64;
    Ok(Throughput {
        requests,
        per_second: requests as f64 / length.as_secs_f64(),
        p50_ms: percentile_ms(&mut all, 50.0),
        p99_ms: percentile_ms(&mut all, 99.0),
    })
}

/// `clients` clients, each doing `per_client` rounds of PATCH + commit_and_apply in its own
/// transaction, each round changing the motd so that every commit writes.
pub async fn commits(socket: &Path, clients: usize, per_client: usize) -> Result<Commits> {
    let mut tasks = tokio::task::JoinSet::new();
    let began = Instant::now();
    for c in 0..clients {
        let mut client = Client::connect(socket).await?;
        tasks.spawn(async move {
            let (mut commit, mut whole) = (Vec::new(), Vec::new());
            let patch = format!("/settings?tx=bench-{c}");
            let commit_path = format!("/tx/commit_and_apply?tx=bench-{c}");
            for i in 0..per_client {
                let body = format!("{{\"motd\": \"client {c} commit {i}\"}}");
                let start = Instant::now();
                client.send("PATCH", &patch, body.as_bytes()).await?;
                let before_commit = Instant::now();
                client.send("POST", &commit_path, b"").await?;
                commit.push(before_commit.elapsed());
                whole.push(start.elapsed());
            }
            Ok::<_, anyhow::Error>((commit, whole))
        });
    }
    let (mut commit, mut whole) = (Vec::new(), Vec::new());
    while let Some(done) = tasks.join_next().await {
        let (c, w) = done??;
        commit.extend(c);
        whole.extend(w);
    }
    let elapsed = began.elapsed();
    Ok(summarize(commit, whole, elapsed))
}

/// Percentiles and rate of a run: `commit` holds the commit requests' (or writes') latencies,
/// `whole` those of the whole PATCH + commit rounds, `elapsed` the run's wall time.
pub fn summarize(
    mut commit: Vec<Duration>,
    mut whole: Vec<Duration>,
    elapsed: Duration,
) -> Commits {
    let n = commit.len() as u64;
    Commits {
        commits: n,
        per_second: n as f64 / elapsed.as_secs_f64(),
        commit_p50_ms: percentile_ms(&mut commit, 50.0),
        commit_p99_ms: percentile_ms(&mut commit, 99.0),
        whole_p50_ms: percentile_ms(&mut whole, 50.0),
        whole_p99_ms: percentile_ms(&mut whole, 99.0),
    }
}

/// One durable small-file replacement: write a temporary file, fsync it, rename it over
/// `target`, fsync the directory. What the cheapest durable commit of one value must pay.
pub fn durable_write(dir: &Path, target: &Path, text: &[u8]) -> Result<()> {
    use std::io::Write;
    let name = target
        .file_name()
        .context("the target has no file name")?
        .to_string_lossy();
    let tmp: PathBuf = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text)?;
    f.sync_all()?;
    std::fs::rename(&tmp, target)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// `threads` threads each making `per_thread` durable writes of their own file in `dir`.
pub fn durable_writes(dir: &Path, threads: usize, per_thread: usize) -> Result<Commits> {
    let began = Instant::now();
    let results: Vec<Result<Vec<Duration>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let target = dir.join(format!("reference-{t}"));
                    let mut samples = Vec::with_capacity(per_thread);
                    for i in 0..per_thread {
                        let start = Instant::now();
                        durable_write(dir, &target, format!("\"value {i}\"").as_bytes())?;
                        samples.push(start.elapsed());
                    }
                    Ok(samples)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    let elapsed = began.elapsed();
    Ok(summarize(all.clone(), all, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_server_answers_its_static_body_on_one_connection() {
        let dir = tempfile_dir();
        let socket = dir.join("static.sock");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let server_socket = socket.clone();
            tokio::spawn(async move { serve_static(&server_socket).await });
            while !socket.exists() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let mut client = Client::connect(&socket).await.unwrap();
            for _ in 0..3 {
                let body = client.send("PATCH", "/x", b"{\"a\":1}").await.unwrap();
                assert_eq!(&body[..], STATIC_BODY);
            }
            let run = requests(&socket, "GET", "/", b"", 2, Duration::from_millis(50))
                .await
                .unwrap();
            assert!(run.requests > 0, "{run:?}");
        });
        let writes = durable_writes(&dir, 2, 3).unwrap();
        assert_eq!(writes.commits, 6);
        assert_eq!(
            std::fs::read(dir.join("reference-1")).unwrap(),
            b"\"value 2\""
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("apiload-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
