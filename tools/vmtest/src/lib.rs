//! QEMU test harness for Ballast.
//!
//! # Background
//!
//! Ballast's end-to-end tests, `cargo xtask run` and `cargo xtask bench boot` all start a guest in
//! QEMU, watch its serial console and sometimes talk to it. This crate does that in one place:
//!
//! - [`VmConfig`] describes the guest: direct kernel boot ([`Boot::Direct`]) or UEFI boot of a
//!   disk image with OVMF ([`Boot::Uefi`], the variable store is copied per VM), memory, CPUs,
//!   extra virtio disks, a virtio-serial port `ballast.api` bridged to a host Unix socket, and
//!   user networking whose host forwards only listen on 127.0.0.1.
//! - [`Vm::start`] runs `qemu-system-x86_64` with `-nodefaults -no-reboot` and the serial console
//!   on a pipe; a thread streams it into a log file and an in-memory buffer.
//! - [`Vm::wait_for_console`] waits for a text and returns when (since QEMU's start) it
//!   arrived; failures include the log path and the last 40 console lines.
//! - Dropping a [`Vm`] kills QEMU; QEMU also gets SIGKILL if the thread that started it dies.
//!
//! QEMU runs in software emulation (TCG, `-cpu max`). KVM exists on Ballast's build hosts but
//! guests hang under it, so it is used only when `BALLAST_KVM=1` is set.
//!
//! Helpers for building test guests live here too: [`cpio`] writes initramfs archives and
//! [`debkernel`] fetches and unpacks Debian's cloud kernel with the host's apt (the
//! `kmod-index` crate then gives the load order of the modules a guest needs).
//!
//! # Usage
//!
//! ```no_run
//! use std::time::Duration;
//! use vmtest::{Drive, Vm, VmConfig};
//!
//! # fn main() -> vmtest::Result<()> {
//! let config = VmConfig::direct("vmlinuz", Some("initrd.cpio".into()), "console=ttyS0")
//!     .memory_mib(512)
//!     .drive(Drive::raw("disk.img").snapshot());
//! let mut vm = Vm::start(config)?;
//! let t = vm.wait_for_console("Run /init as init process", Duration::from_secs(60))?;
//! println!("kernel reached init after {t:?}; log in {}", vm.log_path().display());
//! vm.wait_for_exit(Duration::from_secs(60))?;
//! # Ok(())
//! # }
//! ```
//!
//! Console logs go to `$BALLAST_VMTEST_LOG_DIR`, else `<tmp>/ballast-vmtest`, unless
//! [`VmConfig::log_dir`] says otherwise; they are kept after the VM ends.
//!
//! # Current limitations
//!
//! - x86_64 guests only; one NIC (user networking), virtio disks only.
//! - No QMP monitor: a VM is stopped by the guest powering off or by SIGKILL, never by an ACPI
//!   shutdown request.
//! - Console patterns are plain substrings, not regular expressions.
//! - Host forwards need a fixed host port; [`free_local_port`] picks one, with the usual small
//!   race between choosing and QEMU binding it.
//! - The death signal that stops orphaned QEMU processes is tied to the starting *thread*: start
//!   and drop a [`Vm`] on the same long-lived thread.

pub mod config;
pub mod cpio;
pub mod debkernel;
pub mod error;
mod vm;

pub use config::{
    Accel, Boot, Drive, DriveFormat, Firmware, GuestForward, HostForward, Proto, UserNet, VmConfig,
    EMULATED_GUEST_PARAMS,
};
pub use error::{Error, Result};
pub use vm::{Vm, TAIL_LINES};

/// A TCP port on 127.0.0.1 that was free a moment ago, for host forwards.
pub fn free_local_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}
