//! The first process of Ballast's initramfs.
//!
//! # Background
//!
//! A Ballast node boots a read-only erofs root image protected by dm-verity. The kernel cannot
//! open a verity device from its command line in the way Ballast wants (by GPT partition name,
//! with a data partition and a tmpfs `/etc` prepared around it), so a small program in the
//! initramfs does it and then hands over to systemd. It runs as PID 1 with no udev, no shell and
//! no other tools, and it does these steps, printing a `ballast-init: ...` line for each:
//!
//! 1. mount `/proc`, `/sys`, `/dev` (devtmpfs) and `/run` (tmpfs);
//! 2. read the `ballast.*` kernel parameters (`boot_params::BootParams`);
//! 3. load the modules listed in `/etc/modules.order` ([`modules`]);
//! 4. find the ROOT, HASH and DATA partitions by GPT name in `/sys/class/block/*/uevent`
//!    ([`uevent`]), waiting up to 10 s for them;
//! 5. create the read-only dm-verity device `root` through raw device-mapper ioctls ([`dm`]) and
//!    mount it as erofs at `/sysroot`;
//! 6. grow DATA to the end of the disk if the disk is bigger than the image ([`grow`]: GPT,
//!    kernel partition, then an online ext4 resize; failures are logged, not fatal), mount
//!    DATA (ext4) at `/sysroot/local` and bind its `var` and `opt` onto `/sysroot/var` and
//!    `/sysroot/opt`; put a tmpfs on `/sysroot/etc` seeded from `/sysroot/usr/share/factory/etc`;
//! 7. move the API filesystems into `/sysroot`, switch root (freeing the initramfs) and execute
//!    `ballast.init` (default `/usr/lib/systemd/systemd`).
//!
//! If a step fails, the init prints which step failed and why, waits five seconds and then
//! reboots (default, so the boot loader can fall back to the other partition set) or powers off
//! (`ballast.onfailure=poweroff`). It never exits, which would make the kernel panic without
//! explanation.
//!
//! Kernel parameters: `ballast.root`, `ballast.hash`, `ballast.roothash`, `ballast.salt`,
//! `ballast.datablocks` and optionally `ballast.hashstart` and `ballast.data` (the verity root
//! the image builder writes), `ballast.init`, `ballast.onfailure` and `ballast.debug`. Their
//! grammar and meaning live in the `boot-params` crate, which the image builder writes them
//! with.
//!
//! # Usage
//!
//! The binary must be fully static, because the initramfs holds no C library. Build it with:
//!
//! ```text
//! RUSTFLAGS="-C target-feature=+crt-static" \
//!     cargo build --release -p early-init --target x86_64-unknown-linux-gnu
//! ```
//!
//! and install `target/x86_64-unknown-linux-gnu/release/init` as `/init` in the initramfs
//! (mode 0755). The initramfs also needs `/dev/console` (character device 5:1) so that the init
//! has a console, `/etc/modules.order` and the listed modules under
//! `/lib/modules/<kernel release>/`. The root image must contain the mount points `/proc`,
//! `/sys`, `/dev`, `/run`, `/etc`, `/var`, `/opt` and `/local`.
//!
//! The binary refuses to do anything unless it runs as PID 1, so running it by mistake on a
//! development machine is harmless.
//!
//! # Current limitations
//!
//! - The hash tree is fixed to sha256 with 4096-byte blocks and `restart_on_corruption`; there is
//!   no forward error correction and no root hash signature.
//! - Partitions are found by GPT partition name or device path only (no PARTUUID, no filesystem
//!   labels), and a name present on two devices is an error.
//! - DATA is expected to be pre-formatted ext4 by the image builder. A completely blank DATA
//!   partition is formatted only if the initramfs contains `mkfs.ext4`; anything else that is not
//!   ext4 stops the boot rather than risk data. Without `ballast.data`, `/local`, `/var` and
//!   `/opt` live on a tmpfs and are lost at shutdown.
//! - DATA is only ever grown, never shrunk, and only when it is the last partition on its disk.
//!   If a boot stops between growing the GPT and growing the filesystem, the next boot finishes
//!   the filesystem part (it compares the ext4 size with the partition size every boot).
//! - `/etc` is a plain copy of the factory tree: no merge with saved state and no SELinux labels.
//! - Compressed modules rely on the kernel's own decompression (`CONFIG_MODULE_DECOMPRESS`);
//!   Debian 12's kernels ship uncompressed modules.
//! - The device-mapper device is created without udev cookies, so udev in the real root sees it
//!   only through its coldplug pass.

pub mod dm;
pub mod error;
pub mod fsops;
pub mod grow;
pub mod log;
pub mod modules;
pub mod readahead;
pub mod uevent;

pub use error::{Error, Result};

use boot_params::{BootParams, FailureAction, VerityRoot};
use log::Log;
use nix::fcntl::{fcntl, FcntlArg};
use nix::mount::MsFlags;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use snafu::ResultExt;
use std::convert::Infallible;
use std::ffi::{CString, OsString};
use std::fmt;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the verified root is mounted before the switch.
pub const SYSROOT: &str = "/sysroot";
/// Name of the device-mapper device of the root image.
pub const DM_NAME: &str = constants::VERITY_ROOT_DM_NAME;
/// How long to wait for partitions to appear.
pub const DEVICE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the failure message stays on screen before the reboot or power-off.
pub const FAILURE_DELAY: Duration = Duration::from_secs(5);

/// The steps of the init, used to say where a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Start,
    ApiFilesystems,
    Cmdline,
    Modules,
    FindDevices,
    Verity,
    MountRoot,
    Data,
    Etc,
    SwitchRoot,
    Exec,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Start => "start",
            Step::ApiFilesystems => "mount /proc /sys /dev /run",
            Step::Cmdline => "read kernel command line",
            Step::Modules => "load kernel modules",
            Step::FindDevices => "find partitions",
            Step::Verity => "set up dm-verity",
            Step::MountRoot => "mount root image",
            Step::Data => "mount DATA partition",
            Step::Etc => "prepare /etc",
            Step::SwitchRoot => "switch root",
            Step::Exec => "start init",
        })
    }
}

/// Runs the init if this process is PID 1; otherwise prints why it will not and returns a
/// failure code. As PID 1 it never returns: it either executes the real init or reboots.
pub fn run_as_pid1() -> std::process::ExitCode {
    if std::process::id() != 1 {
        eprintln!(
            "ballast-init: refusing to run: this is the initramfs init and must be PID 1 \
             (it mounts filesystems and reboots the machine on errors)"
        );
        return std::process::ExitCode::FAILURE;
    }
    let mut init = Init {
        log: Log::new(),
        step: Step::Start,
        on_failure: FailureAction::default(),
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| init.run()));
    let error = match outcome {
        Ok(Err(error)) => error,
        Ok(Ok(never)) => match never {},
        Err(panic) => Error::Panic {
            message: panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown".to_string()),
        },
    };
    init.fail(error)
}

struct Init {
    log: Log,
    step: Step,
    on_failure: FailureAction,
}

impl Init {
    fn run(&mut self) -> Result<Infallible> {
        self.log.info("starting");

        self.step = Step::ApiFilesystems;
        fsops::mount_api_filesystems()?;
        ensure_console();
        self.log.info("mounted /proc /sys /dev /run");

        self.step = Step::Cmdline;
        let cmdline_path = Path::new("/proc/cmdline");
        let cmdline = std::fs::read_to_string(cmdline_path)
            .context(error::ReadFileSnafu { path: cmdline_path })?;
        self.on_failure = boot_params::failure_action(&cmdline);
        let params = BootParams::parse(&cmdline)?;
        self.log.set_debug(params.debug);
        self.log.debug(format!("parameters: {params:?}"));

        self.step = Step::Modules;
        self.load_modules()?;

        self.step = Step::FindDevices;
        let dirs = uevent::DeviceDirs::default();
        let root_dev = uevent::wait_for_device(&params.verity.root, &dirs, DEVICE_TIMEOUT)?;
        let hash_dev = uevent::wait_for_device(&params.verity.hash, &dirs, DEVICE_TIMEOUT)?;
        let data_dev = match &params.verity.data {
            Some(spec) => Some(uevent::wait_for_device(spec, &dirs, DEVICE_TIMEOUT)?),
            None => None,
        };
        self.log.info(format!(
            "root={} hash={} data={}",
            root_dev.display(),
            hash_dev.display(),
            data_dev
                .as_deref()
                .map_or_else(|| "none".into(), |p| p.display().to_string())
        ));

        self.step = Step::Verity;
        let root_node = self.setup_verity(&params.verity, root_dev, hash_dev)?;

        self.step = Step::MountRoot;
        let sysroot = Path::new(SYSROOT);
        fsops::mount_fs(
            &root_node.to_string_lossy(),
            sysroot,
            "erofs",
            MsFlags::MS_RDONLY,
            None,
        )?;
        self.log.info(format!(
            "mounted {} (erofs, read-only) at {SYSROOT}",
            root_node.display()
        ));
        if readahead::start(sysroot) {
            self.log
                .debug("reading ahead the first programs of the root");
        }

        self.step = Step::Data;
        self.setup_data(sysroot, data_dev.as_deref())?;

        self.step = Step::Etc;
        self.setup_etc(sysroot)?;

        self.step = Step::SwitchRoot;
        let init_in_root = sysroot.join(params.init.strip_prefix("/").unwrap_or(&params.init));
        if std::fs::symlink_metadata(&init_in_root).is_err() {
            return error::InitMissingSnafu { path: params.init }.fail();
        }
        self.log.info(format!(
            "switching root, starting {} ({} ms after init start)",
            params.init.display(),
            self.log.elapsed_ms()
        ));
        fsops::switch_root(sysroot)?;

        self.step = Step::Exec;
        exec_init(&params.init)
    }

    fn load_modules(&mut self) -> Result<()> {
        let order = Path::new(modules::MODULES_ORDER);
        let text = match std::fs::read_to_string(order) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.log
                    .info("no /etc/modules.order; assuming the drivers are built in");
                return Ok(());
            }
            Err(source) => return Err(source).context(error::ReadFileSnafu { path: order }),
        };
        let list = modules::parse_modules_order(&text)?;
        let release_path = Path::new("/proc/sys/kernel/osrelease");
        let release = std::fs::read_to_string(release_path)
            .context(error::ReadFileSnafu { path: release_path })?;
        let base = Path::new("/lib/modules").join(release.trim());
        let (mut loaded, mut present) = (0, 0);
        for rel in &list {
            let outcome = modules::load_module(&base.join(rel), Path::new("/sys/module"))?;
            self.log
                .debug(format!("module {}: {outcome:?}", rel.display()));
            match outcome {
                modules::LoadOutcome::Loaded => loaded += 1,
                _ => present += 1,
            }
        }
        self.log.info(format!(
            "loaded {loaded} kernel modules ({present} already present)"
        ));
        Ok(())
    }

    fn setup_verity(
        &mut self,
        verity: &VerityRoot,
        root_dev: PathBuf,
        hash_dev: PathBuf,
    ) -> Result<PathBuf> {
        let target = dm::VerityTarget::new(verity, root_dev, hash_dev).target();
        self.log.debug(format!("verity table: {}", target.line()));
        let control_path = Path::new(dm::CONTROL);
        // devtmpfs creates the control node when dm-mod registers it; give it a moment.
        for _ in 0..100 {
            if control_path.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let control = dm::Control::open(control_path)?;
        let dev = control.create_device(DM_NAME, &[target], true)?;
        // No udev here: create the /dev/mapper/<name> node ourselves.
        let node = Path::new("/dev/mapper").join(DM_NAME);
        match mknod(
            &node,
            SFlag::S_IFBLK,
            Mode::from_bits_truncate(0o600),
            makedev(dev.major, dev.minor),
        ) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(source) => return Err(source).context(error::MknodSnafu { path: node }),
        }
        self.log.info(format!(
            "dm-verity device {DM_NAME} ({dev}) active, {} data blocks",
            verity.data_blocks
        ));
        Ok(node)
    }

    fn setup_data(&mut self, sysroot: &Path, data_dev: Option<&Path>) -> Result<()> {
        let local = sysroot.join("local");
        match data_dev {
            Some(dev) => {
                // Growing is best effort: on any failure DATA mounts at the size it has.
                match grow::grow_partition(dev) {
                    Ok(Some((old, new))) => self.log.debug(format!(
                        "DATA partition grown from {} to {} bytes",
                        old, new
                    )),
                    Ok(None) => {}
                    Err(e) => self.log.error(format!(
                        "cannot grow the DATA partition, keeping its size: {e}"
                    )),
                }
                let formatted = fsops::mount_data(dev, &local)?;
                self.log.info(format!(
                    "mounted {} (ext4{}) at {}",
                    dev.display(),
                    if formatted { ", newly formatted" } else { "" },
                    local.display()
                ));
                match grow::grow_filesystem(dev, &local) {
                    Ok(Some((old, new))) => self.log.info(format!(
                        "grew DATA from {} MiB to {} MiB",
                        old >> 20,
                        new >> 20
                    )),
                    Ok(None) => {}
                    Err(e) => self.log.error(format!(
                        "cannot grow the DATA filesystem, keeping its size: {e}"
                    )),
                }
            }
            None => {
                fsops::mount_fs(
                    "tmpfs",
                    &local,
                    "tmpfs",
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some("mode=0755"),
                )?;
                self.log.info(
                    "no ballast.data: /local, /var and /opt are on tmpfs and will not persist",
                );
            }
        }
        for dir in ["var", "opt"] {
            let source = local.join(dir);
            fsops::mkdir_p(&source)?;
            fsops::bind(&source, &sysroot.join(dir))?;
        }
        Ok(())
    }

    fn setup_etc(&mut self, sysroot: &Path) -> Result<()> {
        let etc = sysroot.join("etc");
        fsops::mount_fs(
            "tmpfs",
            &etc,
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        )?;
        let factory = sysroot.join(constants::FACTORY_ETC_IN_IMAGE);
        if factory.is_dir() {
            let copied = fsops::copy_tree(&factory, &etc)?;
            self.log.info(format!(
                "/etc is a tmpfs with {copied} entries from /usr/share/factory/etc"
            ));
        } else {
            self.log
                .info("/etc is an empty tmpfs (no /usr/share/factory/etc)");
        }
        Ok(())
    }

    /// Reports the failure and reboots or powers off; never returns.
    fn fail(&mut self, error: Error) -> ! {
        self.log
            .error(format!("FAILED at step '{}': {error}", self.step));
        self.log.error(format!(
            "{} in {} seconds",
            self.on_failure,
            FAILURE_DELAY.as_secs()
        ));
        std::thread::sleep(FAILURE_DELAY);
        nix::unistd::sync();
        let mode = match self.on_failure {
            FailureAction::Reboot => nix::sys::reboot::RebootMode::RB_AUTOBOOT,
            FailureAction::PowerOff => nix::sys::reboot::RebootMode::RB_POWER_OFF,
        };
        let error = match nix::sys::reboot::reboot(mode) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        self.log
            .error(format!("{} failed: {error}; halting here", self.on_failure));
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// Gives the process a console on fds 0-2 if the kernel could not (no /dev/console in the
/// initramfs), so that messages are visible and the next init inherits it.
fn ensure_console() {
    if fcntl(1, FcntlArg::F_GETFD).is_ok() {
        return;
    }
    if let Ok(console) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    {
        use std::os::fd::IntoRawFd;
        let fd = console.into_raw_fd();
        for target in 0..3 {
            if fd != target {
                let _ = nix::unistd::dup2(fd, target);
            }
        }
        if fd > 2 {
            let _ = nix::unistd::close(fd);
        }
    }
}

/// Executes the real init with this process's arguments (after argv[0]) and environment.
fn exec_init(init: &Path) -> Result<Infallible> {
    let to_c = |s: OsString| CString::new(s.into_vec()).ok();
    let path = to_c(init.as_os_str().to_owned()).ok_or_else(|| {
        error::InitMissingSnafu {
            path: init.to_path_buf(),
        }
        .build()
    })?;
    let mut argv = vec![path.clone()];
    argv.extend(std::env::args_os().skip(1).filter_map(to_c));
    let error = match nix::unistd::execv(&path, &argv) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    Err(error).context(error::ExecSnafu { path: init })
}
