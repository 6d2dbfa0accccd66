//! What a VM looks like, and how that becomes a QEMU command line.

use crate::error::{InvalidConfigSnafu, MissingFirmwareSnafu, Result};
use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The QEMU binary used unless [`VmConfig::qemu`] says otherwise.
pub const QEMU: &str = "qemu-system-x86_64";
/// Where Debian's `ovmf` package installs its firmware.
pub const OVMF_DIR: &str = "/usr/share/OVMF";
/// Environment variable that opts into KVM when set to `1`.
pub const KVM_ENV: &str = "BALLAST_KVM";
/// Environment variable that overrides the default console log directory.
pub const LOG_DIR_ENV: &str = "BALLAST_VMTEST_LOG_DIR";

/// How the guest is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// QEMU loads the kernel and initramfs itself (`-kernel`, `-initrd`, `-append`).
    Direct {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        append: String,
    },
    /// UEFI firmware boots `disk` (attached as the first virtio disk; qcow2 when its name ends
    /// in `.qcow2`, raw otherwise).
    Uefi {
        disk: PathBuf,
        /// `None`: look for OVMF in [`OVMF_DIR`] when the VM starts.
        firmware: Option<Firmware>,
    },
}

/// An OVMF code image and the variable store template that goes with it. The template is
/// copied to a temporary file for each VM, so guests never change the installed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    pub code: PathBuf,
    pub vars_template: PathBuf,
}

impl Firmware {
    /// Finds an OVMF pair in `dir`: `OVMF_CODE.fd`/`OVMF_VARS.fd`, else the `_4M` pair.
    pub fn find_in(dir: &Path) -> Result<Firmware> {
        [
            ("OVMF_CODE.fd", "OVMF_VARS.fd"),
            ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
        ]
        .into_iter()
        .map(|(code, vars)| Firmware {
            code: dir.join(code),
            vars_template: dir.join(vars),
        })
        .find(|fw| fw.code.is_file() && fw.vars_template.is_file())
        .ok_or_else(|| MissingFirmwareSnafu { dir }.build())
    }

    /// Finds an OVMF pair in [`OVMF_DIR`].
    pub fn find() -> Result<Firmware> {
        Self::find_in(Path::new(OVMF_DIR))
    }
}

/// Disk image formats QEMU is told about explicitly (so it never guesses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveFormat {
    Raw,
    Qcow2,
}

/// A virtio disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    pub path: PathBuf,
    pub format: DriveFormat,
    pub read_only: bool,
    /// Write changes to a temporary overlay that QEMU discards at exit.
    pub snapshot: bool,
    /// Serial number shown to the guest (`/dev/disk/by-id/virtio-<serial>`).
    pub serial: Option<String>,
}

impl Drive {
    /// A raw image, writable.
    pub fn raw(path: impl Into<PathBuf>) -> Self {
        Drive {
            path: path.into(),
            format: DriveFormat::Raw,
            read_only: false,
            snapshot: false,
            serial: None,
        }
    }

    /// A qcow2 image, writable.
    pub fn qcow2(path: impl Into<PathBuf>) -> Self {
        Drive {
            format: DriveFormat::Qcow2,
            ..Drive::raw(path)
        }
    }

    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    pub fn snapshot(mut self) -> Self {
        self.snapshot = true;
        self
    }

    pub fn serial(mut self, serial: impl Into<String>) -> Self {
        self.serial = Some(serial.into());
        self
    }
}

/// Transport protocol of a host forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// A port on the host's 127.0.0.1 forwarded into the guest. Forwards never listen on other
/// host addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostForward {
    pub proto: Proto,
    pub host_port: u16,
    pub guest_port: u16,
}

/// A guest connection to `guest_addr:guest_port` (an address inside QEMU's 10.0.2.0/24 user
/// network) handed to a QEMU character device on the host, e.g. `tcp:127.0.0.1:8080`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestForward {
    pub guest_addr: Ipv4Addr,
    pub guest_port: u16,
    pub target: String,
}

impl GuestForward {
    /// Forwards guest connections to `guest_addr:guest_port` to `127.0.0.1:host_port` on the
    /// host (e.g. a test's TUF repository server).
    pub fn to_host_tcp(guest_addr: Ipv4Addr, guest_port: u16, host_port: u16) -> Self {
        GuestForward {
            guest_addr,
            guest_port,
            target: format!("tcp:127.0.0.1:{host_port}"),
        }
    }
}

/// QEMU user-mode networking with a virtio NIC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserNet {
    pub host_forwards: Vec<HostForward>,
    pub guest_forwards: Vec<GuestForward>,
    /// Cut the guest off from everything except the forwards (`restrict=on`).
    pub restrict: bool,
    /// The guest network in CIDR form (`net=`), e.g. `169.254.169.0/24` so that a guest
    /// forward can stand in for an instance metadata service at 169.254.169.254; QEMU's
    /// default 10.0.2.0/24 when `None`.
    pub network: Option<String>,
}

/// Kernel parameters every emulated (TCG) guest boots with; direct boots get them added, and
/// test disk images that boot through GRUB put them in their own command line.
///
/// `no_timer_check`: early in boot the kernel checks that the IO-APIC timer ticks within a
/// window of wall time; a TCG vCPU that the host deschedules misses the window and the kernel
/// panics with "IO-APIC + timer doesn't work!". Seen in 2 of 41 test boots with the host's load
/// at 13 (two QEMUs beside four compilers). The check guards against broken hardware timers,
/// which an emulated machine does not have.
pub const EMULATED_GUEST_PARAMS: &[&str] = &["no_timer_check"];

/// CPU virtualization backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation; the default, and the only mode known to work on Ballast's CI hosts.
    Tcg,
    /// Hardware virtualization; only when `BALLAST_KVM=1`.
    Kvm,
}

impl Accel {
    /// KVM if `BALLAST_KVM=1`, TCG otherwise.
    pub fn from_env() -> Accel {
        match std::env::var(KVM_ENV).as_deref() {
            Ok("1") => Accel::Kvm,
            _ => Accel::Tcg,
        }
    }
}

/// Everything needed to start a VM. Build it with [`VmConfig::direct`] or [`VmConfig::uefi`]
/// and the builder methods, or fill in the public fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// Used in log file names.
    pub name: String,
    pub boot: Boot,
    pub memory_mib: u32,
    pub cpus: u32,
    /// Additional virtio disks, after the UEFI boot disk if any.
    pub drives: Vec<Drive>,
    /// Host path of a Unix socket bridged to the guest's virtio-serial port `ballast.api`.
    pub api_socket: Option<PathBuf>,
    pub network: Option<UserNet>,
    /// Attach a virtio RNG so the guest's entropy pool fills quickly.
    pub rng: bool,
    pub accel: Accel,
    /// Directory for console logs; default `$BALLAST_VMTEST_LOG_DIR` or `<tmp>/ballast-vmtest`.
    pub log_dir: Option<PathBuf>,
    /// QEMU binary name or path.
    pub qemu: PathBuf,
    /// Passed to QEMU after everything else.
    pub extra_args: Vec<String>,
}

impl VmConfig {
    fn with_boot(boot: Boot) -> Self {
        VmConfig {
            name: "vm".to_string(),
            boot,
            memory_mib: 1024,
            cpus: 2,
            drives: Vec::new(),
            api_socket: None,
            network: None,
            rng: true,
            accel: Accel::from_env(),
            log_dir: None,
            qemu: PathBuf::from(QEMU),
            extra_args: Vec::new(),
        }
    }

    /// Direct kernel boot. Add `console=ttyS0` to `append` to see the kernel on the console.
    pub fn direct(
        kernel: impl Into<PathBuf>,
        initrd: Option<PathBuf>,
        append: impl Into<String>,
    ) -> Self {
        Self::with_boot(Boot::Direct {
            kernel: kernel.into(),
            initrd,
            append: append.into(),
        })
    }

    /// UEFI boot of a disk image with OVMF.
    pub fn uefi(disk: impl Into<PathBuf>) -> Self {
        Self::with_boot(Boot::Uefi {
            disk: disk.into(),
            firmware: None,
        })
    }

    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    pub fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = cpus;
        self
    }

    pub fn drive(mut self, drive: Drive) -> Self {
        self.drives.push(drive);
        self
    }

    pub fn api_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.api_socket = Some(path.into());
        self
    }

    /// Enables user networking (if not yet) and forwards `127.0.0.1:host_port` to the guest.
    pub fn host_forward(mut self, proto: Proto, host_port: u16, guest_port: u16) -> Self {
        self.network
            .get_or_insert_with(UserNet::default)
            .host_forwards
            .push(HostForward {
                proto,
                host_port,
                guest_port,
            });
        self
    }

    /// Enables user networking (if not yet) and adds a guest forward.
    pub fn guest_forward(mut self, forward: GuestForward) -> Self {
        self.network
            .get_or_insert_with(UserNet::default)
            .guest_forwards
            .push(forward);
        self
    }

    /// Enables user networking without forwards.
    pub fn network(mut self, net: UserNet) -> Self {
        self.network = Some(net);
        self
    }

    pub fn accel(mut self, accel: Accel) -> Self {
        self.accel = accel;
        self
    }

    pub fn log_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.log_dir = Some(dir.into());
        self
    }

    pub fn extra_arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// The QEMU arguments for this configuration. `vars` is the writable copy of the OVMF
    /// variable store (UEFI boot only); `firmware` the resolved firmware pair.
    pub fn qemu_args(&self, firmware: Option<(&Firmware, &Path)>) -> Result<Vec<OsString>> {
        let mut args = Args::default();
        args.push_all(["-nodefaults", "-no-reboot", "-display", "none"]);
        args.push_all(["-machine", "q35"]);
        match self.accel {
            Accel::Tcg => args.push_all(["-accel", "tcg", "-cpu", "max"]),
            Accel::Kvm => args.push_all(["-accel", "kvm", "-cpu", "host"]),
        }
        args.push("-m");
        args.push(format!("{}M", self.memory_mib));
        args.push("-smp");
        args.push(self.cpus.to_string());
        // The serial console goes to QEMU's standard output, which the harness reads.
        args.push_all(["-serial", "stdio"]);

        let mut drives: Vec<(&Drive, bool)> = Vec::new();
        let boot_disk;
        match &self.boot {
            Boot::Direct {
                kernel,
                initrd,
                append,
            } => {
                args.push("-kernel");
                args.push(kernel);
                if let Some(initrd) = initrd {
                    args.push("-initrd");
                    args.push(initrd);
                }
                let mut append = append.clone();
                if self.accel == Accel::Tcg {
                    for param in EMULATED_GUEST_PARAMS {
                        if !append.split_whitespace().any(|p| p == *param) {
                            if !append.is_empty() {
                                append.push(' ');
                            }
                            append.push_str(param);
                        }
                    }
                }
                if !append.is_empty() {
                    args.push("-append");
                    args.push(append);
                }
            }
            Boot::Uefi { disk, .. } => {
                let (fw, vars) = firmware.ok_or_else(|| {
                    InvalidConfigSnafu {
                        reason: "UEFI boot needs firmware".to_string(),
                    }
                    .build()
                })?;
                args.push("-drive");
                args.push(drive_opt(
                    "if=pflash,format=raw,unit=0,readonly=on,file=",
                    &fw.code,
                ));
                args.push("-drive");
                args.push(drive_opt("if=pflash,format=raw,unit=1,file=", vars));
                // The format follows the file name: `.qcow2` overlays (how callers keep a
                // built image untouched) or raw images.
                boot_disk = if disk.extension().is_some_and(|e| e == "qcow2") {
                    Drive::qcow2(disk)
                } else {
                    Drive::raw(disk)
                };
                drives.push((&boot_disk, true));
            }
        }
        drives.extend(self.drives.iter().map(|d| (d, false)));
        for (index, (drive, boot)) in drives.into_iter().enumerate() {
            let format = match drive.format {
                DriveFormat::Raw => "raw",
                DriveFormat::Qcow2 => "qcow2",
            };
            let mut opts = format!("if=none,id=disk{index},format={format}");
            if drive.read_only {
                opts.push_str(",readonly=on");
            }
            if drive.snapshot {
                opts.push_str(",snapshot=on");
            }
            opts.push_str(",file=");
            args.push("-drive");
            args.push(drive_opt(&opts, &drive.path));
            let mut device = format!("virtio-blk-pci,drive=disk{index}");
            if let Some(serial) = &drive.serial {
                check_opt_value("drive serial", serial)?;
                device.push_str(&format!(",serial={serial}"));
            }
            if boot {
                device.push_str(",bootindex=0");
            }
            args.push("-device");
            args.push(device);
        }

        if let Some(socket) = &self.api_socket {
            args.push_all(["-device", "virtio-serial-pci", "-chardev"]);
            args.push(drive_opt("socket,id=api,server=on,wait=off,path=", socket));
            args.push("-device");
            args.push(format!(
                "virtserialport,chardev=api,name={}",
                constants::API_PORT_NAME
            ));
        }

        if let Some(net) = &self.network {
            let mut netdev = String::from("user,id=net0");
            if net.restrict {
                netdev.push_str(",restrict=on");
            }
            if let Some(network) = &net.network {
                check_opt_value("guest network", network)?;
                netdev.push_str(&format!(",net={network}"));
            }
            for fwd in &net.host_forwards {
                let proto = match fwd.proto {
                    Proto::Tcp => "tcp",
                    Proto::Udp => "udp",
                };
                netdev.push_str(&format!(
                    ",hostfwd={proto}:127.0.0.1:{}-:{}",
                    fwd.host_port, fwd.guest_port
                ));
            }
            let mut ports = std::collections::BTreeSet::new();
            for fwd in &net.guest_forwards {
                check_opt_value("guest forward target", &fwd.target)?;
                // QEMU names each forward's character device after its guest port only, so two
                // forwards on one port (even to different addresses) refuse to start.
                if !ports.insert(fwd.guest_port) {
                    return InvalidConfigSnafu {
                        reason: format!(
                            "two guest forwards use guest port {}; QEMU cannot run both \
                             (give each its own port)",
                            fwd.guest_port
                        ),
                    }
                    .fail();
                }
                netdev.push_str(&format!(
                    ",guestfwd=tcp:{}:{}-{}",
                    fwd.guest_addr, fwd.guest_port, fwd.target
                ));
            }
            args.push("-netdev");
            args.push(netdev);
            args.push_all(["-device", "virtio-net-pci,netdev=net0"]);
        }

        if self.rng {
            args.push_all(["-device", "virtio-rng-pci"]);
        }
        args.push_all(self.extra_args.iter().map(String::as_str));
        Ok(args.0)
    }
}

/// Refuses values that would break QEMU's comma-separated option syntax.
fn check_opt_value(what: &str, value: &str) -> Result<()> {
    if value.contains(',') || value.is_empty() {
        return InvalidConfigSnafu {
            reason: format!("{what} {value:?} must be non-empty and contain no comma"),
        }
        .fail();
    }
    Ok(())
}

/// `prefix` followed by `path` with commas doubled, QEMU's escape inside option values.
fn drive_opt(prefix: &str, path: &Path) -> OsString {
    let mut out = OsString::from(prefix);
    let escaped = path.as_os_str().to_string_lossy().replace(',', ",,");
    out.push(escaped);
    out
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push(&mut self, arg: impl AsRef<std::ffi::OsStr>) {
        self.0.push(arg.as_ref().to_owned());
    }

    fn push_all<'a>(&mut self, args: impl IntoIterator<Item = &'a str>) {
        self.0.extend(args.into_iter().map(OsString::from));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(args: &[OsString]) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn direct_boot_arguments() {
        let cfg = VmConfig::direct(
            "/k/vmlinuz",
            Some("/k/initrd".into()),
            "console=ttyS0 quiet",
        )
        .accel(Accel::Tcg)
        .memory_mib(512)
        .cpus(1)
        .drive(Drive::raw("/img/disk,1.img").snapshot().serial("ballast"))
        .api_socket(constants::API_SOCKET)
        .host_forward(Proto::Tcp, 2222, 22)
        .guest_forward(GuestForward::to_host_tcp(
            Ipv4Addr::new(10, 0, 2, 100),
            80,
            8080,
        ));
        let args = cfg.qemu_args(None).unwrap();
        let line = joined(&args);
        for expected in [
            "-nodefaults -no-reboot -display none",
            "-accel tcg -cpu max",
            "-m 512M -smp 1",
            "-serial stdio",
            "-kernel /k/vmlinuz -initrd /k/initrd",
            "-drive if=none,id=disk0,format=raw,snapshot=on,file=/img/disk,,1.img",
            "-device virtio-blk-pci,drive=disk0,serial=ballast",
            "-device virtio-serial-pci -chardev socket,id=api,server=on,wait=off,path=/run/api.sock",
            "-device virtserialport,chardev=api,name=ballast.api",
            "-netdev user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22,guestfwd=tcp:10.0.2.100:80-tcp:127.0.0.1:8080",
            "-device virtio-net-pci,netdev=net0",
            "-device virtio-rng-pci",
        ] {
            assert!(line.contains(expected), "{expected:?} missing from {line}");
        }
        // The command line stays one argument even with spaces; an emulated guest gets the
        // parameters that keep it from tripping over a descheduled vCPU.
        assert!(args
            .iter()
            .any(|a| a == "console=ttyS0 quiet no_timer_check"));
        assert!(!line.contains("bootindex"));
    }

    #[test]
    fn uefi_boot_arguments() {
        let fw = Firmware {
            code: "/fw/CODE.fd".into(),
            vars_template: "/fw/VARS.fd".into(),
        };
        let cfg = VmConfig::uefi("/img/ballast.img")
            .accel(Accel::Kvm)
            .drive(Drive::qcow2("/img/data.qcow2").read_only());
        let line = joined(
            &cfg.qemu_args(Some((&fw, Path::new("/tmp/vars.fd"))))
                .unwrap(),
        );
        for expected in [
            "-accel kvm -cpu host",
            "-drive if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd",
            "-drive if=pflash,format=raw,unit=1,file=/tmp/vars.fd",
            "-drive if=none,id=disk0,format=raw,file=/img/ballast.img",
            "-device virtio-blk-pci,drive=disk0,bootindex=0",
            "-drive if=none,id=disk1,format=qcow2,readonly=on,file=/img/data.qcow2",
        ] {
            assert!(line.contains(expected), "{expected:?} missing from {line}");
        }
        assert!(!line.contains("-kernel"));
        assert!(cfg.qemu_args(None).is_err());
    }

    #[test]
    fn rejects_commas_in_option_values() {
        let cfg = VmConfig::direct("/k", None, "").drive(Drive::raw("/d").serial("a,b"));
        assert!(cfg.qemu_args(None).is_err());
        let cfg = VmConfig::direct("/k", None, "").guest_forward(GuestForward {
            guest_addr: Ipv4Addr::new(10, 0, 2, 100),
            guest_port: 1,
            target: "cmd:a,b".into(),
        });
        assert!(cfg.qemu_args(None).is_err());
    }

    #[test]
    fn rejects_two_guest_forwards_on_one_port() {
        let one =
            |last: u8, port: u16| GuestForward::to_host_tcp(Ipv4Addr::new(10, 0, 2, last), port, 9);
        let cfg = VmConfig::direct("/k", None, "")
            .guest_forward(one(100, 80))
            .guest_forward(one(101, 80));
        let err = cfg.qemu_args(None).unwrap_err().to_string();
        assert!(err.contains("guest port 80"), "{err}");
        let cfg = VmConfig::direct("/k", None, "")
            .guest_forward(one(100, 80))
            .guest_forward(one(101, 8080));
        assert!(cfg.qemu_args(None).is_ok());
    }

    #[test]
    fn finds_firmware_pairs() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Firmware::find_in(dir.path()).is_err());
        std::fs::write(dir.path().join("OVMF_CODE_4M.fd"), "").unwrap();
        std::fs::write(dir.path().join("OVMF_VARS_4M.fd"), "").unwrap();
        let fw = Firmware::find_in(dir.path()).unwrap();
        assert!(fw.code.ends_with("OVMF_CODE_4M.fd"));
        let err = Firmware::find_in(Path::new("/nonexistent")).unwrap_err();
        assert!(err
            .to_string()
            .contains("apt-get install -y --no-install-recommends ovmf"));
    }

    #[test]
    fn accel_defaults_to_tcg() {
        // Only BALLAST_KVM=1 selects KVM; the variable is not set in the test environment
        // unless the developer opted in.
        if std::env::var(KVM_ENV).as_deref() != Ok("1") {
            assert_eq!(Accel::from_env(), Accel::Tcg);
        }
    }
}
