//! `cargo xtask bench settings`: time from `apiclient set` to the affected service restarted.
//!
//! On the host: the release API server with the real renderer (`thar-be-settings --root` a
//! temporary tree holding the shipped templates), where timesyncd's restart command is
//! replaced by one that creates a marker file; the clock runs from starting `apiclient set
//! ntp.time-servers=...` to the marker appearing. The reference in the same run is an
//! `apiclient set` of a setting that affects no service: the same client, request and commit,
//! without rendering or restarting.
//!
//! In the VM (`--vm`): the dev image, where the guest's own shell times `apiclient set` of an
//! NTP server until systemd reports a new run of systemd-timesyncd.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use xtask::host;

#[derive(Debug, clap::Args)]
pub struct BenchSettingsArgs {
    /// Changes measured on the host.
    #[arg(long, default_value_t = 50)]
    pub rounds: usize,
    /// Also boot the dev image and measure inside the VM.
    #[arg(long)]
    pub vm: bool,
    /// Changes measured in the VM.
    #[arg(long, default_value_t = 5)]
    pub vm_rounds: usize,
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Copies every package's `files/usr/share/templates/*` into `root/usr/share/templates/`.
fn copy_templates(root: &Path) -> Result<()> {
    let dest = root.join("usr/share/templates");
    std::fs::create_dir_all(&dest)?;
    for package in std::fs::read_dir(host::root().join("packages"))? {
        let dir = package?.path().join("files/usr/share/templates");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry?;
            std::fs::copy(entry.path(), dest.join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn apiclient_set(bin: &Path, socket: &Path, pair: &str) -> Result<()> {
    let out = Command::new(bin.join("apiclient"))
        .arg("--socket-path")
        .arg(socket)
        .args(["set", pair])
        .output()
        .context("cannot run apiclient")?;
    if !out.status.success() {
        bail!(
            "apiclient set {pair} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

pub fn run(args: &BenchSettingsArgs) -> Result<()> {
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
            "apiclient",
            "-p",
            "thar-be-settings",
        ],
    )?;
    let bin = host::target_dir().join("release");
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("root");
    copy_templates(&root)?;
    let marker = dir.path().join("timesyncd-restarted");
    let defaults = dir.path().join("bench-defaults.toml");
    std::fs::write(
        &defaults,
        format!(
            "[services.timesyncd]\nconfiguration-files = [\"timesyncd-conf\"]\nrestart-commands = [\"/usr/bin/touch {}\"]\n",
            marker.display()
        ),
    )?;
    let renderer = dir.path().join("renderer");
    std::fs::write(
        &renderer,
        format!(
            "#!/bin/sh\nexec {} --root {} \"$@\"\n",
            bin.join("thar-be-settings").display(),
            root.display()
        ),
    )?;
    std::fs::set_permissions(
        &renderer,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let store = dir.path().join("datastore");
    let status = Command::new(bin.join("storewolf"))
        .arg("--datastore-path")
        .arg(&store)
        .arg("--defaults")
        .arg(&defaults)
        .arg("--commit")
        .arg("--log-level=warn")
        .status()
        .context("cannot run storewolf")?;
    if !status.success() {
        bail!("storewolf failed ({status})");
    }
    let socket = dir.path().join("api.sock");
    let os_release = dir.path().join("os-release");
    std::fs::write(
        &os_release,
        "NAME=Ballast\nVARIANT_ID=bench\nVERSION_ID=0.1.0\nBUILD_ID=bench\n",
    )?;
    let _server = Server(
        Command::new(bin.join("apiserver"))
            .arg("--datastore-path")
            .arg(store.join("current"))
            .arg("--socket-path")
            .arg(&socket)
            .arg("--os-release")
            .arg(&os_release)
            .arg("--apply-command")
            .arg(&renderer)
            .arg("--log-level=warn")
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start apiserver")?,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while Command::new(bin.join("apiclient"))
        .arg("--socket-path")
        .arg(&socket)
        .args(["get", "os"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_or(true, |s| !s.success())
    {
        if Instant::now() > deadline {
            bail!("the API server did not answer on {}", socket.display());
        }
        std::thread::sleep(Duration::from_millis(25));
    }

    let (mut restart, mut reference) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let _ = std::fs::remove_file(&marker);
        let start = Instant::now();
        apiclient_set(
            &bin,
            &socket,
            &format!("ntp.time-servers=[\"ntp{round}.ballast.invalid\"]"),
        )?;
        let limit = Instant::now() + Duration::from_secs(30);
        while !marker.exists() {
            if Instant::now() > limit {
                bail!("the restart command did not run within 30 s of round {round}");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        restart.push(start.elapsed());

        let start = Instant::now();
        apiclient_set(
            &bin,
            &socket,
            &format!("updates.ignore-waves={}", round % 2 == 0),
        )?;
        reference.push(start.elapsed());
    }
    let rendered = std::fs::read_to_string(root.join("etc/systemd/timesyncd.conf"))
        .context("the renderer did not write timesyncd.conf")?;
    if !rendered.contains(&format!("ntp{}.ballast.invalid", args.rounds - 1)) {
        bail!("timesyncd.conf does not hold the last server:\n{rendered}");
    }
    let (r, f) = (median(&mut restart), median(&mut reference));
    println!(
        "host: apiclient set ntp.time-servers -> timesyncd.conf rendered -> restart command run: p50 {:.1} ms = {:.2}x an apiclient set that affects no service ({:.1} ms), {} rounds",
        ms(r),
        r.as_secs_f64() / f.as_secs_f64(),
        ms(f),
        args.rounds
    );
    if args.vm {
        vm(args.vm_rounds)?;
    }
    Ok(())
}

fn vm(rounds: usize) -> Result<()> {
    xtask::host::ensure_for("bench settings")?;
    let built = xtask::image::existing("dev", &xtask::image::default_version())
        .context("no dev image; run `cargo xtask build --variant dev` first")?;
    let mut node = xtask::vm::Node::boot(&built, &xtask::vm::BootOptions::new("bench-settings"))?;
    node.wait_for_api(Duration::from_secs(300))?;
    let timeout = Duration::from_secs(120);
    node.vm.wait_for_shell(timeout)?;
    let (active, _) = node.vm.run_shell(
        "until systemctl is-active -q mark-boot-reached; do sleep 0.2; done; echo up",
        timeout,
    )?;
    if !active.contains("up") {
        bail!("the node did not finish booting: {active}");
    }
    let script = format!(
        "for i in $(seq 1 {rounds}); do \
           old=$(systemctl show -p InvocationID --value systemd-timesyncd); \
           t0=$(date +%s%N); \
           apiclient set \"ntp.time-servers=[\\\"vm$i.ballast.invalid\\\"]\" || exit 1; \
           while [ \"$(systemctl show -p InvocationID --value systemd-timesyncd)\" = \"$old\" ]; do :; done; \
           t1=$(date +%s%N); echo \"ms=$(( (t1 - t0) / 1000000 ))\"; \
         done"
    );
    let (out, status) = node.vm.run_shell(&script, timeout)?;
    if status != 0 {
        bail!("the measurement failed in the guest: {out}");
    }
    let mut samples: Vec<u64> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ms=")?.parse().ok())
        .collect();
    if samples.is_empty() {
        bail!("no figures from the guest: {out}");
    }
    samples.sort();
    println!(
        "VM (dev, TCG): apiclient set ntp.time-servers in the guest -> systemd-timesyncd restarted: median {} ms, min {} ms, max {} ms over {} changes",
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1],
        samples.len()
    );
    let path: PathBuf = node.vm.log_path().to_path_buf();
    eprintln!("xtask: console log {}", path.display());
    Ok(())
}
