//! `cargo xtask bench api`: starts the release API server on a temporary store and prints each
//! figure next to a yardstick measured in the same run, and the ratio, so that runs on different
//! machines compare:
//!
//! - Requests (reads and PATCH): the same request, client count and client loop against a bare
//!   hyper server on a Unix socket in the same directory that answers a fixed body
//!   (`apiload serve-static`). Ratio = ours / reference (1.0 = as fast as a server that does
//!   nothing).
//! - Commits: one durable small-file write (write, fsync, rename, fsync the directory) in the
//!   same directory, from as many threads as there are committers. Latency ratio = ours /
//!   reference (lower is better); throughput ratio = ours / reference.
//! - Memory: the resident set of the reference server, idle and after the same load.
//!
//! The load generator and the reference server are the `apiload` crate, built in release with
//! the server (this program is a debug build).

use anyhow::{bail, Context, Result};
use apiload::{Commits, Throughput};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use xtask::host;

#[derive(Debug, clap::Args)]
pub struct BenchApiArgs {
    /// Seconds each throughput run lasts.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Commits per client in the latency run (the 8-committer run does a quarter as many each).
    #[arg(long, default_value_t = 300)]
    pub commits: usize,
}

/// A child process killed when dropped.
struct Process {
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Resident set size in MB (10^6 bytes), from /proc.
    fn rss_mb(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS line in /proc/PID/status")?;
        Ok(kb * 1024.0 / 1e6)
    }

    fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

struct Bench {
    load: PathBuf,
    api: PathBuf,
    reference: PathBuf,
    dir: PathBuf,
}

impl Bench {
    fn apiload<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> Result<T> {
        let out = Command::new(&self.load)
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run apiload")?;
        if !out.status.success() {
            bail!("apiload {args:?} failed ({})", out.status);
        }
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("apiload {args:?} printed no result"))
    }

    fn requests(
        &self,
        socket: &Path,
        method: &str,
        path: &str,
        body: &str,
        clients: usize,
        seconds: f64,
    ) -> Result<Throughput> {
        self.apiload(&[
            "requests",
            "--socket",
            &socket.to_string_lossy(),
            "--method",
            method,
            "--path",
            path,
            "--body",
            body,
            "--clients",
            &clients.to_string(),
            "--seconds",
            &seconds.to_string(),
        ])
    }

    /// Runs a request scenario against the API server and the reference, and prints both.
    fn compare(
        &self,
        label: &str,
        method: &str,
        path: &str,
        body: &str,
        clients: usize,
        seconds: f64,
    ) -> Result<f64> {
        let ours = self.requests(&self.api, method, path, body, clients, seconds)?;
        let reference = self.requests(&self.reference, method, path, body, clients, seconds)?;
        let ratio = ours.per_second / reference.per_second;
        println!(
            "{label:<44} c={clients}  {:>7.0} req/s (p50 {:.3} ms, p99 {:.3} ms)   reference {:>7.0} req/s (p50 {:.3} ms)   {ratio:.2}x",
            ours.per_second, ours.p50_ms, ours.p99_ms, reference.per_second, reference.p50_ms
        );
        Ok(ratio)
    }

    fn commits(&self, clients: usize, per_client: usize) -> Result<Commits> {
        self.apiload(&[
            "commits",
            "--socket",
            &self.api.to_string_lossy(),
            "--clients",
            &clients.to_string(),
            "--commits",
            &per_client.to_string(),
        ])
    }

    fn durable_writes(&self, threads: usize, per_thread: usize) -> Result<Commits> {
        self.apiload(&[
            "durable-writes",
            "--dir",
            &self.dir.to_string_lossy(),
            "--threads",
            &threads.to_string(),
            "--writes",
            &per_thread.to_string(),
        ])
    }
}

/// The audit trail's cost per entry (the apiserver's `audit_appends` example, release build).
fn audit_appends(bin: &Path, dir: &Path, count: usize) -> Result<Commits> {
    let out = Command::new(bin.join("examples/audit_appends"))
        .arg(dir)
        .arg(count.to_string())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run the audit_appends example")?;
    if !out.status.success() {
        bail!("audit_appends failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).context("audit_appends printed no result")
}

pub fn run(args: &BenchApiArgs) -> Result<()> {
    host::run(
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "apiserver",
            "-p",
            "storewolf",
            "-p",
            "apiload",
            "--bins",
            "--example",
            "audit_appends",
        ],
    )?;
    let bin = host::target_dir().join("release");
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("datastore");
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
    let bench = Bench {
        load: bin.join("apiload"),
        api: dir.path().join("api.sock"),
        reference: dir.path().join("static.sock"),
        dir: dir.path().to_path_buf(),
    };
    let server = Process {
        child: Command::new(bin.join("apiserver"))
            .arg("--datastore-path")
            .arg(store.join("current"))
            .arg("--socket-path")
            .arg(&bench.api)
            .arg("--os-release")
            .arg(&os_release)
            .arg("--apply-command")
            .arg("/bin/true")
            .arg("--log-level=warn")
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start apiserver")?,
    };
    let reference = Process {
        child: Command::new(&bench.load)
            .arg("serve-static")
            .arg("--socket")
            .arg(&bench.reference)
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the reference server")?,
    };
    wait_for_socket(&bench.api)?;
    wait_for_socket(&bench.reference)?;
    // Idle: started and answering, nothing asked yet.
    std::thread::sleep(Duration::from_millis(300));
    let (idle, idle_ref) = (server.rss_mb()?, reference.rss_mb()?);
    let (threads, threads_ref) = (server.threads(), reference.threads());

    let s = args.seconds;
    println!("Requests: ours against a static-body hyper server on the same kind of socket, same client loop (ratio > 1 is faster)");
    let one_key = "/settings?keys=settings.motd";
    bench.compare("GET /settings?keys=settings.motd", "GET", one_key, "", 1, s)?;
    bench.compare("GET /settings?keys=settings.motd", "GET", one_key, "", 4, s)?;
    bench.compare("GET /settings", "GET", "/settings", "", 1, s)?;
    bench.compare(
        "GET /settings?prefix=host-containers",
        "GET",
        "/settings?prefix=host-containers",
        "",
        1,
        s,
    )?;
    let keypair = r#"{"request_payload":["motd=bench keypair"]}"#;
    let keypair_path = "/settings/keypair?tx=bench-keypair";
    bench.compare(
        "PATCH /settings/keypair",
        "PATCH",
        keypair_path,
        keypair,
        1,
        s,
    )?;
    bench.compare(
        "PATCH /settings/keypair",
        "PATCH",
        keypair_path,
        keypair,
        4,
        s,
    )?;

    println!();
    println!("Commits: ours against one durable file write (write+fsync+rename+dir fsync) in the same directory (latency ratio < 1 is faster)");
    let floor = bench.durable_writes(1, args.commits)?;
    let single = bench.commits(1, args.commits)?;
    println!(
        "PATCH + commit_and_apply, c=1: p50 {:.3} ms, p99 {:.3} ms   reference p50 {:.3} ms, p99 {:.3} ms   {:.2}x",
        single.whole_p50_ms,
        single.whole_p99_ms,
        floor.commit_p50_ms,
        floor.commit_p99_ms,
        single.whole_p50_ms / floor.commit_p50_ms
    );
    println!(
        "  commit_and_apply alone:       p50 {:.3} ms, p99 {:.3} ms   {:.2}x",
        single.commit_p50_ms,
        single.commit_p99_ms,
        single.commit_p50_ms / floor.commit_p50_ms
    );
    let per_client = args.commits.div_ceil(4);
    let floor8 = bench.durable_writes(8, per_client)?;
    let eight = bench.commits(8, per_client)?;
    println!(
        "commits/s, 1 committer:  {:>7.0}   reference {:>7.0} writes/s   {:.2}x",
        single.per_second,
        floor.per_second,
        single.per_second / floor.per_second
    );
    println!(
        "commits/s, 8 committers: {:>7.0}   reference {:>7.0} writes/s   {:.2}x   (commit p50 {:.3} ms, p99 {:.3} ms)",
        eight.per_second,
        floor8.per_second,
        eight.per_second / floor8.per_second,
        eight.commit_p50_ms,
        eight.commit_p99_ms
    );
    println!(
        "8 committers / 1 committer: {:.2}x   reference {:.2}x",
        eight.per_second / single.per_second,
        floor8.per_second / floor.per_second
    );
    let audit = audit_appends(&bin, &bench.dir, args.commits)?;
    println!(
        "audit trail, one entry appended: p50 {:.3} ms, p99 {:.3} ms   = {:.1}% of PATCH + commit_and_apply p50",
        audit.commit_p50_ms,
        audit.commit_p99_ms,
        100.0 * audit.commit_p50_ms / single.whole_p50_ms
    );

    println!();
    let (loaded, loaded_ref) = (server.rss_mb()?, reference.rss_mb()?);
    println!("Memory: resident set, ours against the static-body server (ratio < 1 is smaller)");
    println!(
        "RSS idle:       {idle:>5.1} MB ({threads} threads)   reference {idle_ref:>5.1} MB ({threads_ref} threads)   {:.2}x",
        idle / idle_ref
    );
    println!(
        "RSS after load: {loaded:>5.1} MB ({} threads)   reference {loaded_ref:>5.1} MB ({} threads)   {:.2}x",
        server.threads(),
        reference.threads(),
        loaded / loaded_ref
    );
    Ok(())
}

fn wait_for_socket(socket: &Path) -> Result<()> {
    for _ in 0..400 {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!("nothing answered on {}", socket.display())
}
