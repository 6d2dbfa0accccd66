//! What the build host needs: the workspace root, host commands, and Debian packages that are
//! installed when we are root (or named in an exact apt-get line when we are not).

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// The workspace root (tools/xtask/../..).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the xtask crate lives inside the workspace")
}

/// Runs a command in the workspace root, streaming its output; fails naming the command.
pub fn run(program: &str, args: &[&str]) -> Result<()> {
    eprintln!("xtask: running {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot start {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Makes sure each (command, Debian package) pair is present: installs the missing packages
/// with apt-get when running as root, otherwise fails with the exact command to run.
pub fn ensure_packages(needs: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = needs
        .iter()
        .filter(|(cmd, _)| !have_command(cmd))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let line = format!(
        "apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !nix_is_root() {
        bail!("missing host packages; run as root: {line}");
    }
    eprintln!(
        "xtask: installing missing host packages: {}",
        missing.join(" ")
    );
    let update = Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    if !matches!(update, Ok(s) if s.success()) {
        eprintln!("xtask: apt-get update failed; trying the install anyway");
    }
    let status = Command::new("sh")
        .args(["-c", &line])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("cannot run apt-get")?;
    if !status.success() {
        bail!("`{line}` failed ({status}); install these packages and retry");
    }
    Ok(())
}

fn have_command(cmd: &str) -> bool {
    if cmd.contains('/') {
        return std::path::Path::new(cmd).exists();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(cmd).is_file()))
        .unwrap_or(false)
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| std::path::Path::new(d).join(cmd).is_file())
}

fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
