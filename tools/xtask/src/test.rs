//! `cargo xtask test`: the README's test command. Formatting, clippy, then every test of the
//! workspace (unit, integration, crash and end-to-end tests).

use crate::host;
use anyhow::Result;

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Skip `cargo fmt --check` and clippy (tests only).
    #[arg(long)]
    pub no_lint: bool,
}

pub fn run(args: &TestArgs) -> Result<()> {
    host::ensure_packages(&[
        ("veritysetup", "cryptsetup-bin"),
        ("sgdisk", "gdisk"),
        ("qemu-img", "qemu-utils"),
        ("gpgv", "gpgv"),
    ])?;
    if !args.no_lint {
        host::run("cargo", &["fmt", "--all", "--", "--check"])?;
        host::run(
            "cargo",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        )?;
    }
    host::run("cargo", &["test", "--workspace", "--no-fail-fast"])?;
    eprintln!("xtask: all tests passed");
    Ok(())
}
