//! `cargo xtask bench ops`: the figures of operating a node without a shell (issue 17), on one
//! booted dev node (TCG), each next to a reference measured in the same run:
//!
//! - `apiclient logs -n 1000` from the host, against `apiclient get settings.motd` (the same
//!   client, the same bridge, the smallest read): what reading the journal through the API
//!   costs beyond a round trip.
//! - A try-mode revert: from the try's deadline to `/etc/motd` showing the old value again,
//!   against a plain `apiclient set` to the new value in `/etc/motd`, both timed inside the
//!   guest by the same polling loop (so the serial console's latency is in neither).
//! - The support bundle of a fresh node: its compressed size, and its size unpacked.
//!
//! The audit trail's share of a commit is printed by `cargo xtask bench api`.

use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};
use xtask::image::{self, Built};
use xtask::vm::{BootOptions, Node};

#[derive(Debug, clap::Args)]
pub struct BenchOpsArgs {
    /// Rounds of each timed request (the median is printed).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const SHELL_TIMEOUT: Duration = Duration::from_secs(120);
/// The try's length: long enough for the `set --try` to return well before it.
const TRY_SECONDS: u64 = 5;

fn shell(node: &mut Node, command: &str) -> Result<String> {
    let (out, status) = node.vm.run_shell(command, SHELL_TIMEOUT)?;
    if status != 0 {
        bail!("`{command}` failed in the guest: {out}");
    }
    Ok(out.trim().to_string())
}

/// Median wall time of `rounds` runs of `apiclient ARGS` from the host, and the last output.
fn timed_apiclient(node: &Node, args: &[&str], rounds: usize) -> Result<(Duration, String)> {
    let mut times = Vec::with_capacity(rounds);
    let mut last = String::new();
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        last = node.apiclient(args)?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok((times[times.len() / 2], last))
}

/// Runs a guest script that prints one number of nanoseconds; returns it.
fn guest_nanos(node: &mut Node, script: &str) -> Result<Duration> {
    let out = shell(node, script)?;
    let nanos: u64 = out
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("the guest printed no time: {out}"))?;
    Ok(Duration::from_nanos(nanos))
}

/// The guest loop that waits for `/etc/motd` to hold `text`, then prints the time since
/// `$start` (nanoseconds since the epoch).
fn until_motd(text: &str) -> String {
    format!(
        "until grep -qF '{text}' /etc/motd; do sleep 0.02; done; \
         echo $(( $(date +%s%N) - start ))"
    )
}

pub fn run(args: &BenchOpsArgs) -> Result<()> {
    xtask::host::ensure_for("bench ops")?;
    let built: Built = image::existing(image::DEFAULT_VARIANT, &image::default_version())
        .with_context(|| {
            format!(
                "no {} image; build it with `cargo xtask build --variant {}`",
                image::DEFAULT_VARIANT,
                image::DEFAULT_VARIANT
            )
        })?;
    eprintln!(
        "xtask: booting {} {}",
        built.manifest.variant, built.manifest.version
    );
    let mut node = Node::boot(&built, &BootOptions::new("bench-ops"))?;
    node.wait_for_api(BOOT_TIMEOUT)?;
    node.vm.wait_for_shell(SHELL_TIMEOUT)?;
    shell(
        &mut node,
        "until systemctl is-active -q mark-successful-boot; do sleep 0.5; done",
    )?;
    let rounds = args.rounds;

    // Logs.
    let (reference, _) = timed_apiclient(&node, &["get", "settings.motd"], rounds)?;
    let (logs, text) = timed_apiclient(&node, &["logs", "-n", "1000"], rounds)?;
    let lines = text.lines().count();
    println!(
        "apiclient logs -n 1000: {:.1} ms ({lines} lines, {} KiB)   reference get settings.motd {:.1} ms   {:.1}x",
        ms(logs),
        text.len() / 1024,
        ms(reference),
        logs.as_secs_f64() / reference.as_secs_f64()
    );

    // Try-mode revert against a plain set, both seen in /etc/motd by the same loop.
    let old = "bench-ops reference";
    let plain = guest_nanos(
        &mut node,
        &format!(
            "start=$(date +%s%N); apiclient set motd='{old}' >/dev/null; {}",
            until_motd(old)
        ),
    )?;
    let revert = guest_nanos(
        &mut node,
        &format!(
            "apiclient set --try {TRY_SECONDS}s motd='bench-ops try' >/dev/null; \
             start=$(( $(date +%s%N) + {TRY_SECONDS}000000000 )); \
             until grep -qF 'bench-ops try' /etc/motd; do sleep 0.02; done; \
             {}",
            until_motd(old)
        ),
    )?;
    println!(
        "try-mode revert: /etc/motd back {:.0} ms after the deadline   reference set to rendered {:.0} ms   {:.2}x",
        ms(revert),
        ms(plain),
        revert.as_secs_f64() / plain.as_secs_f64()
    );

    // Support bundle of this fresh node.
    let dir = tempfile::tempdir()?;
    let bundle = dir.path().join("bundle.tar.gz");
    let started = Instant::now();
    node.apiclient(&["support-bundle", "-o", &bundle.to_string_lossy()])?;
    let took = started.elapsed();
    let compressed = std::fs::metadata(&bundle)?.len();
    let unpacked = unpacked_size(&bundle)?;
    println!(
        "support bundle: {:.1} KiB compressed, {:.1} KiB unpacked ({:.1}x), made and fetched in {:.1} s",
        compressed as f64 / 1024.0,
        unpacked as f64 / 1024.0,
        unpacked as f64 / compressed.max(1) as f64,
        took.as_secs_f64()
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The bytes of the files in a gzip-compressed tarball.
fn unpacked_size(path: &std::path::Path) -> Result<u64> {
    let file = std::fs::File::open(path)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut total = 0;
    for entry in archive
        .entries()
        .with_context(|| format!("{} is not a gzip tarball", path.display()))?
    {
        total += entry?.header().size()?;
    }
    Ok(total)
}
