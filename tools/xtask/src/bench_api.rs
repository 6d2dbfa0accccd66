//! `cargo xtask bench api`: starts the release API server on a temporary store and prints
//! GET /settings throughput and commit_and_apply latency with 1 and 16 concurrent clients.
//! The reference in the same run is the cost of one durable file write (temp file, fsync,
//! rename, directory fsync) in the same directory: the floor any durable commit pays.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use xtask::host;

#[derive(Debug, clap::Args)]
pub struct BenchApiArgs {
    /// Seconds each throughput run lasts.
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
    /// commit_and_apply requests per client.
    #[arg(long, default_value_t = 200)]
    pub commits: usize,
}

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run(args: &BenchApiArgs) -> Result<()> {
    host::run(
        "cargo",
        &[
            "build",
            "--release",
            "--quiet",
            "-p",
            "apiserver",
            "-p",
            "storewolf",
        ],
    )?;
    let bin = host::root().join("target/release");
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("datastore");
    let socket = dir.path().join("api.sock");
    let os_release = dir.path().join("os-release");
    std::fs::write(
        &os_release,
        "NAME=Ballast\nPRETTY_NAME=\"Ballast bench\"\nVARIANT_ID=bench\nVERSION_ID=0.1.0\nBUILD_ID=bench\n",
    )?;
    let status = Command::new(bin.join("storewolf"))
        .arg("--datastore-path")
        .arg(&store)
        .arg("--commit")
        .arg("--log-level=warn")
        .status()
        .context("cannot run storewolf")?;
    if !status.success() {
        bail!("storewolf failed ({status})");
    }
    let _server = Server {
        child: Command::new(bin.join("apiserver"))
            .arg("--datastore-path")
            .arg(store.join("current"))
            .arg("--socket-path")
            .arg(&socket)
            .arg("--os-release")
            .arg(&os_release)
            .arg("--apply-command")
            .arg("/bin/true")
            .arg("--log-level=warn")
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start apiserver")?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        wait_for_socket(&socket).await?;
        let floor = durable_write_floor(dir.path(), 200)?;
        println!("reference: one durable file write (temp+fsync+rename+dir fsync): p50 {:.3} ms", ms(floor));
        println!();
        for clients in [1usize, 16] {
            let rps = get_throughput(&socket, clients, Duration::from_secs(args.seconds)).await?;
            println!("GET /settings, {clients:>2} client(s): {rps:>8.0} requests/s");
        }
        println!();
        for clients in [1usize, 16] {
            let per_client = if clients == 1 { args.commits } else { args.commits.div_ceil(4) };
            let (commit, whole) = commit_latency(&socket, clients, per_client).await?;
            println!(
                "commit_and_apply, {clients:>2} client(s), {} commits: p50 {:.2} ms  p99 {:.2} ms  ({:.1}x the durable-write floor)",
                commit.len(),
                ms(percentile(&commit, 50.0)),
                ms(percentile(&commit, 99.0)),
                percentile(&commit, 50.0).as_secs_f64() / floor.as_secs_f64()
            );
            println!(
                "  whole `apiclient set` (PATCH + commit_and_apply): p50 {:.2} ms  p99 {:.2} ms",
                ms(percentile(&whole, 50.0)),
                ms(percentile(&whole, 99.0))
            );
        }
        Ok::<_, anyhow::Error>(())
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let idx = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn wait_for_socket(socket: &Path) -> Result<()> {
    for _ in 0..200 {
        if apiclient::raw_request(socket, "/tx/list", "GET", None)
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("the API server did not answer on {}", socket.display())
}

fn durable_write_floor(dir: &Path, n: usize) -> Result<Duration> {
    let target = dir.join("floor");
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        let tmp: PathBuf = dir.join(".floor.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        write!(f, "\"value {i}\"")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        std::fs::File::open(dir)?.sync_all()?;
        samples.push(start.elapsed());
    }
    Ok(percentile(&samples, 50.0))
}

async fn get_throughput(socket: &Path, clients: usize, length: Duration) -> Result<f64> {
    let deadline = Instant::now() + length;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let socket = socket.to_path_buf();
        tasks.push(tokio::spawn(async move {
            let mut count = 0u64;
            while Instant::now() < deadline {
                let (status, _) = apiclient::raw_request(&socket, "/settings", "GET", None).await?;
                if status != 200 {
                    bail!("GET /settings answered {status}");
                }
                count += 1;
            }
            Ok::<_, anyhow::Error>(count)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / length.as_secs_f64())
}

async fn commit_latency(
    socket: &Path,
    clients: usize,
    per_client: usize,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let socket = socket.to_path_buf();
        tasks.push(tokio::spawn(async move {
            let mut commit = Vec::with_capacity(per_client);
            let mut whole = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let tx = format!("bench-{c}-{i}");
                let body = format!("{{\"motd\": \"client {c} commit {i}\"}}");
                let start = Instant::now();
                let (status, text) = apiclient::raw_request(
                    &socket,
                    &format!("/settings?tx={tx}"),
                    "PATCH",
                    Some(body),
                )
                .await?;
                if status != 204 {
                    bail!("PATCH answered {status}: {text}");
                }
                let before_commit = Instant::now();
                let (status, text) = apiclient::raw_request(
                    &socket,
                    &format!("/tx/commit_and_apply?tx={tx}"),
                    "POST",
                    None,
                )
                .await?;
                if status != 200 {
                    bail!("commit_and_apply answered {status}: {text}");
                }
                commit.push(before_commit.elapsed());
                whole.push(start.elapsed());
            }
            Ok::<_, anyhow::Error>((commit, whole))
        }));
    }
    let (mut commit, mut whole) = (Vec::new(), Vec::new());
    for t in tasks {
        let (c, w) = t.await??;
        commit.extend(c);
        whole.extend(w);
    }
    Ok((commit, whole))
}
