//! Booting a built image in QEMU (software emulation unless BALLAST_KVM=1) with its API
//! reachable from the host: QEMU's virtio-serial port is bridged to a host Unix socket by
//! `apibridge`, and the guest's `apibridge` service connects the port to /run/api.sock (dev
//! variant only). The built image is never modified: the VM runs on a qcow2 overlay.

use crate::image::Built;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What `ballast-ready.service` prints on the console once the API answers (part of its
/// `GET /os` answer); variants without the bridge are known to be up by this line.
pub const API_READY_MARKER: &str = "\"variant_id\":\"";

/// A booted node.
pub struct Node {
    pub vm: vmtest::Vm,
    /// The host end of the API bridge (`apiclient --socket-path` this).
    pub api_socket: PathBuf,
    pub run_dir: PathBuf,
    bridge: Option<apibridge::HostBridge>,
}

/// How to boot.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// Names the run directory under build/run/ and the console log.
    pub name: String,
    /// The disk to boot; the build's raw image when `None`.
    pub disk: Option<PathBuf>,
    /// Bridge the API to the host (needs the apibridge service in the image).
    pub bridge: bool,
    pub memory_mib: u32,
    /// Make the VM's disk this big (`qemu-img resize` of the overlay), as an operator would
    /// enlarge a node's disk; the image's own size when `None`.
    pub disk_size_mib: Option<u64>,
    /// Boot again from the overlay an earlier boot of the same name left (a reboot), instead of
    /// a fresh one.
    pub keep_disk: bool,
    /// QEMU user networking (DHCP, forwards); no network card when `None`.
    pub network: Option<vmtest::UserNet>,
}

impl BootOptions {
    pub fn new(name: &str) -> Self {
        BootOptions {
            name: name.to_string(),
            disk: None,
            bridge: true,
            memory_mib: 1024,
            disk_size_mib: None,
            keep_disk: false,
            network: None,
        }
    }
}

/// Makes a qcow2 overlay over `base` so the VM's writes never touch the base image.
pub fn overlay(base: &Path, overlay: &Path) -> Result<()> {
    let _ = std::fs::remove_file(overlay);
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(base.canonicalize()?)
        .arg(overlay)
        .status()
        .context("cannot run qemu-img")?;
    anyhow::ensure!(
        status.success(),
        "qemu-img create failed for {}",
        overlay.display()
    );
    Ok(())
}

/// Grows the qcow2 image `disk` to `mib` MiB (the new space reads as zeros).
pub fn resize(disk: &Path, mib: u64) -> Result<()> {
    let status = Command::new("qemu-img")
        .args(["resize", "-q", "-f", "qcow2"])
        .arg(disk)
        .arg(format!("{mib}M"))
        .status()
        .context("cannot run qemu-img")?;
    anyhow::ensure!(
        status.success(),
        "qemu-img resize to {mib} MiB failed for {}",
        disk.display()
    );
    Ok(())
}

impl Node {
    /// Runs the host's release `apiclient` against this node's API (through the bridge) and
    /// returns its output whatever its exit status.
    pub fn apiclient_output(&self, args: &[&str]) -> Result<std::process::Output> {
        let bin = crate::host::target_dir().join("release/apiclient");
        Command::new(&bin)
            .arg("--socket-path")
            .arg(&self.api_socket)
            .args(args)
            .output()
            .with_context(|| format!("cannot run {}", bin.display()))
    }

    /// Runs `apiclient ARGS` against this node and returns its standard output; fails with its
    /// standard error when it fails.
    pub fn apiclient(&self, args: &[&str]) -> Result<String> {
        let out = self.apiclient_output(args)?;
        if !out.status.success() {
            bail!(
                "apiclient {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Boots `built` (or `opts.disk`) with UEFI firmware.
    pub fn boot(built: &Built, opts: &BootOptions) -> Result<Node> {
        crate::host::ensure(&[crate::host::Step::Boot])?;
        let run_dir = crate::host::root().join("build/run").join(&opts.name);
        std::fs::create_dir_all(&run_dir)?;
        let disk = run_dir.join("disk.qcow2");
        if opts.keep_disk && disk.exists() {
            // A reboot of the same node: its disk keeps what the last boot wrote.
        } else {
            overlay(opts.disk.as_deref().unwrap_or(&built.raw_image), &disk)?;
            if let Some(mib) = opts.disk_size_mib {
                resize(&disk, mib)?;
            }
        }
        let qemu_api = run_dir.join("qemu-api.sock");
        let api_socket = run_dir.join("api.sock");
        let _ = std::fs::remove_file(&qemu_api);
        let config = vmtest::VmConfig::uefi(&disk)
            .name(&opts.name)
            .memory_mib(opts.memory_mib)
            .api_socket(&qemu_api)
            .log_dir(&run_dir);
        let config = match &opts.network {
            Some(net) => config.network(net.clone()),
            None => config,
        };
        let vm = vmtest::Vm::start(config)?;
        let bridge = if opts.bridge {
            Some(apibridge::spawn_host_bridge(&qemu_api, &api_socket)?)
        } else {
            None
        };
        Ok(Node {
            vm,
            api_socket,
            run_dir,
            bridge,
        })
    }

    /// Waits until `GET /os` answers through the bridge; returns the time since QEMU started.
    pub fn wait_for_api(&mut self, timeout: Duration) -> Result<Duration> {
        if self.bridge.is_none() {
            bail!("this node was booted without the API bridge");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let deadline = Instant::now() + timeout;
        loop {
            let attempt = rt.block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(5),
                    apiclient::raw_request(&self.api_socket, "/os", "GET", None),
                )
                .await
            });
            if let Ok(Ok((200, _))) = attempt {
                return Ok(self.vm.elapsed());
            }
            if !self.vm.is_running() {
                bail!(
                    "the VM stopped before its API answered; console log {}:\n{}",
                    self.vm.log_path().display(),
                    self.vm.console_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the API did not answer within {} s; console log {}:\n{}",
                    timeout.as_secs(),
                    self.vm.log_path().display(),
                    self.vm.console_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// One request through the bridge.
    pub fn api(&self, method: &str, uri: &str, body: Option<&str>) -> Result<(u16, String)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let socket = self.api_socket.clone();
        rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(30),
                apiclient::raw_request(&socket, uri, method, body.map(str::to_string)),
            )
            .await
            .context("the API request timed out")?
            .map_err(anyhow::Error::from)
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.bridge.take();
        let _ = self.vm.kill();
    }
}
