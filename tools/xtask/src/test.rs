//! `cargo xtask test`: the README's test command. Formatting and clippy, every test of the
//! workspace, then the VM end-to-end tests against freshly built `dev` and `node` images. At
//! the end (also after a failure) it prints how long each stage took: the CI budget.

use anyhow::Result;
use std::time::{Duration, Instant};
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

/// The VM end-to-end test binaries of tools/xtask/tests, run one at a time.
const VM_TESTS: &[&str] = &["vm", "vm_settings", "vm_update"];

/// Stages run so far, with their times.
#[derive(Default)]
struct Stages {
    done: Vec<(String, Duration, bool)>,
}

impl Stages {
    /// Runs one stage and notes its time and outcome.
    fn run<T>(&mut self, name: &str, stage: impl FnOnce() -> Result<T>) -> Result<T> {
        eprintln!("xtask: == {name}");
        let started = Instant::now();
        let result = stage();
        self.done
            .push((name.to_string(), started.elapsed(), result.is_ok()));
        result
    }

    /// The table of stage times.
    fn table(&self) -> String {
        let width = self
            .done
            .iter()
            .map(|(name, _, _)| name.len())
            .max()
            .unwrap_or(0)
            .max("total".len());
        let mut out = format!("{:<width$}  {:>9}\n", "stage", "seconds");
        for (name, time, ok) in &self.done {
            let mark = if *ok { "" } else { "  FAILED" };
            out.push_str(&format!(
                "{name:<width$}  {:>9.1}{mark}\n",
                time.as_secs_f64()
            ));
        }
        let total: Duration = self.done.iter().map(|(_, t, _)| *t).sum();
        out.push_str(&format!(
            "{:<width$}  {:>9.1}\n",
            "total",
            total.as_secs_f64()
        ));
        out
    }
}

pub fn run(args: &TestArgs) -> Result<()> {
    let mut stages = Stages::default();
    let result = run_stages(args, &mut stages);
    eprintln!();
    eprintln!("xtask: time per stage");
    eprint!("{}", stages.table());
    result?;
    eprintln!("xtask: all tests passed");
    Ok(())
}

fn run_stages(args: &TestArgs, stages: &mut Stages) -> Result<()> {
    stages.run("disk space", || {
        xtask::diskspace::ensure(
            "test",
            xtask::diskspace::TEST_BUDGET_GIB,
            &[host::target_dir(), host::root().join("build")],
        )
    })?;
    stages.run("host packages", || host::ensure_for("test"))?;
    if !args.no_lint {
        stages.run("fmt", || {
            host::run("cargo", &["fmt", "--all", "--", "--check"])
        })?;
        stages.run("clippy", || {
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
            )
        })?;
    }
    stages.run("unit and integration tests", || {
        host::run("cargo", &["test", "--workspace", "--no-fail-fast"])
    })?;
    if args.no_vm {
        return Ok(());
    }
    for variant in ["dev", "node"] {
        stages.run(&format!("image {variant}"), || {
            image::build(&BuildOptions::variant(variant))
        })?;
    }
    for opts in image::update_test_builds() {
        let name = format!(
            "image {} {}",
            opts.variant,
            opts.version.as_deref().unwrap_or_default()
        );
        stages.run(&name, || image::build(&opts))?;
    }
    stages.run(
        "migration rename-dns-search-list",
        image::build_rename_dns_migration,
    )?;
    for test in VM_TESTS {
        stages.run(&format!("VM tests {test}"), || {
            host::run(
                "cargo",
                &[
                    "test",
                    "-p",
                    "xtask",
                    "--test",
                    test,
                    "--",
                    "--ignored",
                    "--test-threads=1",
                    "--nocapture",
                ],
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_every_stage_and_the_total() {
        let mut stages = Stages::default();
        stages.run("fmt", || Ok(())).unwrap();
        let failed: Result<()> = stages.run("clippy", || anyhow::bail!("lint"));
        assert!(failed.is_err());
        let table = stages.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("stage"), "{table}");
        assert!(lines[1].starts_with("fmt "), "{table}");
        assert!(
            lines[2].starts_with("clippy") && lines[2].ends_with("FAILED"),
            "{table}"
        );
        assert!(lines[3].starts_with("total"), "{table}");
    }
}
