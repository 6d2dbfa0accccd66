//! A stand-in for systemd in VM tests of the early init: run as PID 1 in the verified root, it
//! reports what it sees, prints `BALLAST-TEST-ROOT-OK` and powers the VM off.
//!
//! Build it statically (the test root image holds no C library):
//!
//! ```text
//! RUSTFLAGS="-C target-feature=+crt-static" \
//!     cargo build --release -p vmtest --example testinit --target x86_64-unknown-linux-gnu
//! ```

use nix::sys::reboot::{reboot, RebootMode};
use std::io::Write;

fn report() {
    let mut out = std::io::stdout().lock();
    // One line per mount point the early init is responsible for: "testinit: mount / erofs ro".
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [_, target, fstype, options, ..] = fields[..] {
            let mode = options.split(',').next().unwrap_or("?");
            let _ = writeln!(out, "testinit: mount {target} {fstype} {mode}");
        }
    }
    match std::fs::read_to_string("/etc/hostname") {
        Ok(name) => {
            let _ = writeln!(out, "testinit: /etc/hostname={}", name.trim());
        }
        Err(e) => {
            let _ = writeln!(out, "testinit: /etc/hostname unreadable: {e}");
        }
    }
    let probe = "/var/testinit-probe";
    match std::fs::write(probe, "x") {
        Ok(()) => {
            let _ = writeln!(out, "testinit: /var is writable");
        }
        Err(e) => {
            let _ = writeln!(out, "testinit: /var is not writable: {e}");
        }
    }
    let args: Vec<String> = std::env::args().collect();
    let _ = writeln!(out, "testinit: pid {} args {args:?}", std::process::id());
    let _ = writeln!(out, "BALLAST-TEST-ROOT-OK");
    let _ = out.flush();
}

fn main() {
    report();
    nix::unistd::sync();
    let Err(e) = reboot(RebootMode::RB_POWER_OFF);
    eprintln!("testinit: power off failed: {e}");
    // PID 1 must not exit; if power-off failed, stay here so the message stays readable.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
