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

/// The VM end-to-end test binaries of tools/xtask/tests.
const VM_TESTS: &[&str] = &["vm", "vm_settings", "vm_update"];

/// The VM tests run in two lanes at once, one VM each: a TCG guest keeps about one core busy,
/// and this machine class has two. Inside a lane, tests run one at a time. A lane is a list of
/// list of [`LaneEntry`]. Splitting by
/// `--skip` in one lane and the same name in the other means a renamed test still runs (in the
/// skipping lane), only the balance suffers. Balanced on a clean-clone run: the rollback test
/// (about 480 s) with vm and vm_settings (about 130 s each) against the other vm_update tests
/// (about 620 s).
const VM_LANES: [&[LaneEntry]; 2] = [
    &[
        LaneEntry::only("vm_update", ROLLBACK_TEST),
        LaneEntry::whole("vm", &[]),
        LaneEntry::whole("vm_settings", &[]),
    ],
    &[LaneEntry::whole("vm_update", &[ROLLBACK_TEST])],
];

/// One `cargo test` run of a lane.
struct LaneEntry {
    /// The test binary (a file of tools/xtask/tests).
    test: &'static str,
    /// The one test to run, or `None` for all of the binary's VM tests.
    only: Option<&'static str>,
    /// Tests of the binary to leave out.
    skip: &'static [&'static str],
}

impl LaneEntry {
    const fn only(test: &'static str, name: &'static str) -> Self {
        LaneEntry {
            test,
            only: Some(name),
            skip: &[],
        }
    }

    const fn whole(test: &'static str, skip: &'static [&'static str]) -> Self {
        LaneEntry {
            test,
            only: None,
            skip,
        }
    }
}

/// The longest VM test, given a lane of its own start.
const ROLLBACK_TEST: &str = "an_update_that_never_finishes_booting_is_rolled_back_by_itself";

/// The `cargo test` arguments of one lane entry.
fn lane_args<'a>(test: &'a str, only: Option<&'a str>, skip: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["test", "-p", "xtask", "--test", test, "--", "--ignored"];
    if let Some(name) = only {
        args.extend(["--exact", name]);
    }
    for name in skip {
        args.extend(["--skip", name]);
    }
    args.extend(["--test-threads=1", "--nocapture"]);
    args
}

/// Runs the VM lanes at once, each line of output prefixed with its lane; fails naming every
/// lane entry that failed (a failure in one lane does not stop the other).
fn run_vm_lanes() -> Result<()> {
    let failures: Vec<String> = std::thread::scope(|scope| {
        let lanes: Vec<_> = VM_LANES
            .iter()
            .enumerate()
            .map(|(i, lane)| scope.spawn(move || run_lane(&format!("lane {}", i + 1), lane)))
            .collect();
        lanes
            .into_iter()
            .flat_map(|lane| {
                lane.join()
                    .unwrap_or_else(|_| vec!["a lane panicked".into()])
            })
            .collect()
    });
    if failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("VM tests failed: {}", failures.join("; "))
    }
}

/// Runs one lane's entries in order, streaming their output; returns the failed entries.
fn run_lane(tag: &str, lane: &[LaneEntry]) -> Vec<String> {
    let mut failed = Vec::new();
    for LaneEntry { test, only, skip } in lane {
        let args = lane_args(test, *only, skip);
        let started = Instant::now();
        eprintln!("[{tag}] xtask: running cargo {}", args.join(" "));
        let ok = match host::run_prefixed(tag, "cargo", &args) {
            Ok(status) => status.success(),
            Err(e) => {
                eprintln!("[{tag}] xtask: {e:#}");
                false
            }
        };
        let what = match only {
            Some(name) => format!("{test} {name}"),
            None => test.to_string(),
        };
        eprintln!(
            "[{tag}] xtask: {what} {} after {:.1} s",
            if ok { "passed" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        );
        if !ok {
            failed.push(format!("{what} ({tag})"));
        }
    }
    failed
}

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
    stages.run("unit and integration tests", crate::unit::run)?;
    if args.no_vm {
        return Ok(());
    }
    for variant in ["dev", "node"] {
        stages.run(&format!("image {variant}"), || {
            image::build(&BuildOptions::variant(variant))
        })?;
    }
    for opts in image::update_test_builds()
        .into_iter()
        .chain([image::node_bridged_build()])
    {
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
    stages.run("VM tests (build)", || {
        let mut args = vec!["test", "-p", "xtask", "--no-run"];
        for test in VM_TESTS {
            args.extend(["--test", test]);
        }
        host::run("cargo", &args)
    })?;
    stages.run("VM tests (two lanes)", run_vm_lanes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vm_test_binary_runs_in_a_lane_and_a_test_run_alone_is_skipped_elsewhere() {
        let entries: Vec<_> = VM_LANES.iter().flat_map(|l| l.iter()).collect();
        for test in VM_TESTS {
            assert!(
                entries.iter().any(|e| e.test == *test && e.only.is_none()),
                "{test} has no lane running it whole"
            );
        }
        for LaneEntry { test, only, .. } in entries.iter().copied() {
            if let Some(name) = only {
                let skipped = entries
                    .iter()
                    .any(|e| e.test == *test && e.only.is_none() && e.skip.contains(name));
                assert!(skipped, "{test} {name} would run twice");
            }
        }
        assert_eq!(
            lane_args("vm_update", None, &["x"]),
            [
                "test",
                "-p",
                "xtask",
                "--test",
                "vm_update",
                "--",
                "--ignored",
                "--skip",
                "x",
                "--test-threads=1",
                "--nocapture"
            ]
        );
    }

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
