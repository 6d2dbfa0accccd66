//! `cargo xtask test`: the README's test command. Formatting and clippy, every test of the
//! workspace, then the VM end-to-end tests against freshly built `dev` and `node` images.

use anyhow::Result;
use xtask::host;
use xtask::image::{self, BuildOptions};

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Skip `cargo fmt --check` and clippy (tests only).
    #[arg(long)]
    pub no_lint: bool,
    /// Skip building images and the VM end-to-end tests.
    #[arg(long)]
    pub no_vm: bool,
}

pub fn run(args: &TestArgs) -> Result<()> {
    let mut tools: Vec<(&str, &str)> = vec![("veritysetup", "cryptsetup-bin")];
    tools.extend_from_slice(image::BUILD_TOOLS);
    tools.extend_from_slice(image::RUN_TOOLS);
    host::ensure_packages(&tools)?;
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
    if !args.no_vm {
        for variant in ["dev", "node"] {
            image::build(&BuildOptions::variant(variant))?;
        }
        for opts in image::update_test_builds() {
            image::build(&opts)?;
        }
        image::build_rename_dns_migration()?;
        host::run(
            "cargo",
            &[
                "test",
                "-p",
                "xtask",
                "--test",
                "vm",
                "--test",
                "vm_settings",
                "--test",
                "vm_update",
                "--",
                "--ignored",
                "--test-threads=1",
                "--nocapture",
            ],
        )?;
    }
    eprintln!("xtask: all tests passed");
    Ok(())
}
