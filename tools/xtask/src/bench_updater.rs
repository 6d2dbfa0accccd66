//! `cargo xtask bench updater`: how long a node under policy `auto` takes to run a newly
//! published version, and what the update daemon costs while it waits.
//!
//! Two dev nodes (TCG) each start on the default version, with a signed repository on host
//! loopback that holds only that version. Then the next version is published (added to the
//! repository and signed) and the clock runs until the node's API answers from the new
//! version:
//! - the reference: a person who calls `apiclient update check` and `apiclient update apply
//!   --reboot` the moment the version is published;
//! - the daemon: policy `auto` with `check-interval = 1m`, nobody calling anything.
//!
//! The reboot is part of both figures: QEMU runs with `-no-reboot`, so the harness starts the
//! next boot from the same disk as soon as the guest goes down.
//!
//! Before publishing, the daemon node idles for `--idle` seconds with checks every minute; the
//! resident memory and CPU time (from /proc) of update-daemon over that span are printed
//! against the API server's in the same span, which answers the daemon's polls and checks.

use anyhow::{bail, Context, Result};
use repo::serve::ServedDir;
use repo::{add_images, AddOptions, ImageSet, KeyDir, RepoDir};
use std::path::Path;
use std::time::{Duration, Instant};
use xtask::image::{self, Built};
use xtask::vm::{BootOptions, Node};

#[derive(Debug, clap::Args)]
pub struct BenchUpdaterArgs {
    /// Seconds the daemon node idles (checks every minute) while its cost is measured.
    #[arg(long, default_value_t = 180)]
    pub idle: u64,
}

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const SHELL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take from publishing to going down for its reboot.
const REBOOT_TIMEOUT: Duration = Duration::from_secs(900);

fn image_of(version: &str) -> Result<Built> {
    image::existing(image::DEFAULT_VARIANT, version).with_context(|| {
        format!(
            "no {} {version} image; build it with `cargo xtask build --variant {} --version {version}`",
            image::DEFAULT_VARIANT,
            image::DEFAULT_VARIANT
        )
    })
}

/// Adds `built`'s update images to the repository in `dir` and signs it, as `cargo xtask repo
/// add` does.
fn publish(dir: &Path, built: &Built) -> Result<()> {
    let repo = RepoDir::new(dir);
    let keys = KeyDir::new(xtask::host::root().join(image::REPO_KEYS_DIR));
    let images = ImageSet::from_build_dir(&built.out_dir)
        .with_context(|| format!("cannot read the images of {}", built.out_dir.display()))?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(add_images(&repo, &keys, &images, &AddOptions::default()))
        .with_context(|| format!("cannot add {} to {}", built.manifest.version, dir.display()))?;
    Ok(())
}

fn apiclient(node: &Node, args: &[&str]) -> Result<String> {
    node.apiclient(args)
}

fn boot(built: &Built, name: &str, served: &ServedDir, keep_disk: bool) -> Result<Node> {
    let mut opts = BootOptions::new(name);
    opts.network = Some(vmtest::UserNet {
        guest_forwards: vec![vmtest::GuestForward::to_host_tcp(
            image::GUEST_REPO_ADDR,
            80,
            served.port(),
        )],
        restrict: true,
        ..Default::default()
    });
    opts.keep_disk = keep_disk;
    let mut node = Node::boot(built, &opts)?;
    node.wait_for_api(BOOT_TIMEOUT)?;
    Ok(node)
}

fn shell(node: &mut Node, command: &str) -> Result<String> {
    let (out, status) = node.vm.run_shell(command, SHELL_TIMEOUT)?;
    if status != 0 {
        bail!("`{command}` failed in the guest: {out}");
    }
    Ok(out.trim().to_string())
}

/// Waits until the boot is marked successful (and so the update daemon runs).
fn wait_until_successful(node: &mut Node) -> Result<()> {
    node.vm.wait_for_shell(SHELL_TIMEOUT)?;
    shell(
        node,
        "until systemctl is-active -q mark-successful-boot; do sleep 0.5; done",
    )?;
    Ok(())
}

fn os_version(node: &Node) -> Result<String> {
    let (code, body) = node.api("GET", "/os", None)?;
    if code != 200 {
        bail!("GET /os answered {code}: {body}");
    }
    let os: serde_json::Value = serde_json::from_str(&body)?;
    Ok(os["version_id"].as_str().unwrap_or_default().to_string())
}

/// A fresh node on `current`, its updates pointed at the served repository.
fn fresh_node(current: &Built, name: &str, served: &ServedDir) -> Result<Node> {
    let mut node = boot(current, name, served, false)?;
    wait_until_successful(&mut node)?;
    let addr = image::GUEST_REPO_ADDR;
    apiclient(
        &node,
        &[
            "set",
            &format!("updates.metadata-base-url=http://{addr}/metadata/"),
            &format!("updates.targets-base-url=http://{addr}/targets/"),
        ],
    )?;
    Ok(node)
}

/// After the guest went down for its reboot: boots the same disk and waits until its API
/// answers from `version`. Returns the time from `since`.
fn reboot_into(
    node: Node,
    current: &Built,
    name: &str,
    served: &ServedDir,
    version: &str,
    since: Instant,
) -> Result<Duration> {
    drop(node);
    let node = boot(current, name, served, true)?;
    let took = since.elapsed();
    let running = os_version(&node)?;
    if running != version {
        bail!("the node came back on {running}, not {version}");
    }
    Ok(took)
}

/// One process's resident memory (KiB) and CPU time (clock ticks) in the guest.
fn process_cost(node: &mut Node, unit: &str) -> Result<(u64, u64)> {
    let out = shell(
        node,
        &format!(
            "pid=$(systemctl show -p MainPID --value {unit}); \
             grep VmRSS /proc/$pid/status; cut -d' ' -f14,15 /proc/$pid/stat"
        ),
    )?;
    let rss = out
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no VmRSS for {unit}: {out}"))?;
    let ticks = out
        .lines()
        .last()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .with_context(|| format!("no CPU times for {unit}: {out}"))?;
    Ok((rss, ticks))
}

pub fn run(args: &BenchUpdaterArgs) -> Result<()> {
    xtask::host::ensure_for("bench updater")?;
    let current = image_of(&image::default_version())?;
    let next = image_of(&image::later_version(1))?;
    let version = next.manifest.version.clone();
    let work = tempfile::tempdir()?;

    // The reference: a person updates by hand the moment the version is published.
    eprintln!("xtask: by hand: booting {}", current.manifest.version);
    let by_hand = {
        let dir = work.path().join("by-hand");
        publish(&dir, &current)?;
        let served = ServedDir::start(&dir)?;
        let name = "bench-updater-hand";
        let mut node = fresh_node(&current, name, &served)?;
        let t0 = Instant::now();
        publish(&dir, &next)?;
        apiclient(&node, &["update", "check"])?;
        apiclient(&node, &["update", "apply", "--reboot"])?;
        node.vm.wait_for_exit(REBOOT_TIMEOUT)?;
        reboot_into(node, &current, name, &served, &version, t0)?
    };
    eprintln!("xtask: by hand: {:.1} s", by_hand.as_secs_f64());

    // The daemon: policy auto, checks every minute, nobody calls anything.
    eprintln!("xtask: policy auto: booting {}", current.manifest.version);
    let dir = work.path().join("auto");
    publish(&dir, &current)?;
    let served = ServedDir::start(&dir)?;
    let name = "bench-updater-auto";
    let mut node = fresh_node(&current, name, &served)?;
    apiclient(
        &node,
        &["set", "updates.policy=auto", "updates.check-interval=1m"],
    )?;
    // The daemon restarts on the change and checks at once; let that settle.
    std::thread::sleep(Duration::from_secs(15));
    let daemon_start = process_cost(&mut node, "update-daemon")?;
    let api_start = process_cost(&mut node, "apiserver")?;
    eprintln!(
        "xtask: policy auto: idling {} s (a check every minute)",
        args.idle
    );
    std::thread::sleep(Duration::from_secs(args.idle));
    let daemon_end = process_cost(&mut node, "update-daemon")?;
    let api_end = process_cost(&mut node, "apiserver")?;

    let t0 = Instant::now();
    publish(&dir, &next)?;
    node.vm
        .wait_for_exit(REBOOT_TIMEOUT)
        .context("the daemon never rebooted the node into the published version")?;
    let auto = reboot_into(node, &current, name, &served, &version, t0)?;

    let ticks_per_sec = 100.0;
    let cpu_ms = |start: (u64, u64), end: (u64, u64)| {
        end.1.saturating_sub(start.1) as f64 / ticks_per_sec * 1000.0
    };
    let daemon_cpu = cpu_ms(daemon_start, daemon_end);
    let api_cpu = cpu_ms(api_start, api_end);
    let per_hour = 3600.0 / args.idle as f64;
    println!("publish {version} -> node runs it (dev, TCG, the reboot included):");
    println!(
        "  by hand (update check + apply --reboot at once): {:>7.1} s  (reference)",
        by_hand.as_secs_f64()
    );
    println!(
        "  policy auto, check-interval 1m:                  {:>7.1} s  ratio {:.2}",
        auto.as_secs_f64(),
        auto.as_secs_f64() / by_hand.as_secs_f64()
    );
    println!(
        "update-daemon idle over {} s, checks every minute:",
        args.idle
    );
    println!(
        "  RSS {} KiB (apiserver {} KiB, ratio {:.2})",
        daemon_end.0,
        api_end.0,
        daemon_end.0 as f64 / api_end.0.max(1) as f64
    );
    println!(
        "  CPU {:.0} ms, {:.1} s per hour (apiserver {:.0} ms, ratio {:.2})",
        daemon_cpu,
        daemon_cpu * per_hour / 1000.0,
        api_cpu,
        daemon_cpu / api_cpu.max(1.0)
    );
    Ok(())
}
