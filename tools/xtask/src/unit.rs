//! The workspace's tests (everything but the VM end-to-end tests), several test binaries at
//! once.
//!
//! `cargo test` runs one test binary after another. Many of ours spend their time waiting: on a
//! QEMU boot, a private containerd or registry, a server's timeout. So the binaries are built
//! first (`cargo test --no-run`), then run side by side, a few at a time, each the way cargo
//! would run it (from its package's directory, with cargo's runtime environment); the doc tests
//! run as one more job beside them. Output lines carry the binary's name, so the interleaved log
//! stays readable, and every binary runs even after one fails.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;
use xtask::host;

/// One built test binary, as cargo's JSON messages describe it.
#[derive(Debug)]
struct TestBinary {
    /// `package/target` (the target is the test file's name, or `lib`/the binary's name).
    name: String,
    executable: PathBuf,
    package: String,
    package_dir: PathBuf,
}

/// A job of the pool: a test binary or the doc tests.
#[derive(Debug)]
enum Job {
    Binary(TestBinary),
    DocTests,
}

impl Job {
    fn name(&self) -> &str {
        match self {
            Job::Binary(binary) => &binary.name,
            Job::DocTests => "doc tests",
        }
    }
}

/// The part of cargo's `compiler-artifact` message used here.
#[derive(Deserialize)]
struct Artifact {
    reason: String,
    #[serde(default)]
    package_id: String,
    #[serde(default)]
    manifest_path: PathBuf,
    #[serde(default)]
    executable: Option<PathBuf>,
    #[serde(default)]
    profile: Option<Profile>,
    #[serde(default)]
    target: Option<Target>,
}

#[derive(Deserialize)]
struct Profile {
    test: bool,
}

#[derive(Deserialize)]
struct Target {
    name: String,
}

/// How many jobs run at once: one more than the cores, since most of them wait more than they
/// compute (a QEMU boot or a busy test binary takes a core; the rest sleep on sockets).
fn parallelism() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) + 1
}

/// Builds every test binary of the workspace, then runs them and the doc tests, a few at a
/// time. Fails naming every binary that failed.
pub fn run() -> Result<()> {
    let binaries = build()?;
    let mut jobs: VecDeque<Job> = binaries.into_iter().map(Job::Binary).collect();
    // The doc tests compile as they go (one rustdoc per crate): start them first, so they are
    // not the tail of the run.
    jobs.push_front(Job::DocTests);
    let total = jobs.len();
    let width = parallelism();
    eprintln!("xtask: running {total} test jobs, {width} at a time");
    let queue = Mutex::new(jobs);
    let failed = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..width {
            scope.spawn(|| loop {
                let Some(job) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let started = Instant::now();
                let outcome = run_job(&job);
                let secs = started.elapsed().as_secs_f64();
                match outcome {
                    Ok(()) => eprintln!("xtask: {} passed after {secs:.1} s", job.name()),
                    Err(e) => {
                        eprintln!("xtask: {} FAILED after {secs:.1} s: {e:#}", job.name());
                        failed.lock().unwrap().push(job.name().to_string());
                    }
                }
            });
        }
    });
    let failed = failed.into_inner().unwrap();
    if !failed.is_empty() {
        bail!(
            "{} of {total} test jobs failed: {}",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// `cargo test --workspace --no-run`, returning the test binaries it built.
fn build() -> Result<Vec<TestBinary>> {
    let args = [
        "test",
        "--workspace",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ];
    eprintln!("xtask: running cargo {}", args.join(" "));
    let output = Command::new("cargo")
        .args(args)
        .current_dir(host::root())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start cargo")?;
    if !output.status.success() {
        bail!(
            "`cargo {}` failed ({}): see the compiler's messages above",
            args.join(" "),
            output.status
        );
    }
    parse_artifacts(&String::from_utf8_lossy(&output.stdout))
}

/// The test binaries among cargo's JSON messages, in the order cargo reported them.
fn parse_artifacts(messages: &str) -> Result<Vec<TestBinary>> {
    let mut binaries = Vec::new();
    for line in messages.lines().filter(|l| l.starts_with('{')) {
        let artifact: Artifact = serde_json::from_str(line)
            .with_context(|| format!("cargo printed a message that is not JSON: {line}"))?;
        let is_test = artifact.profile.as_ref().is_some_and(|p| p.test);
        let (Some(executable), Some(target), true) =
            (artifact.executable, artifact.target, is_test)
        else {
            continue;
        };
        if artifact.reason != "compiler-artifact" {
            continue;
        }
        let package = package_name(&artifact.package_id, &artifact.manifest_path);
        let package_dir = artifact
            .manifest_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(host::root);
        binaries.push(TestBinary {
            name: format!("{package}/{}", target.name),
            executable,
            package,
            package_dir,
        });
    }
    if binaries.is_empty() {
        bail!("cargo built no test binary: is this the workspace root?");
    }
    Ok(binaries)
}

/// The package's name: the directory name of its manifest, unless the package id says
/// otherwise (`path+file:///dir#name@version` names it when it differs from the directory).
fn package_name(package_id: &str, manifest_path: &Path) -> String {
    let dir_name = manifest_path
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match package_id.rsplit_once('#') {
        Some((_, fragment)) => match fragment.split_once('@') {
            Some((name, _)) => name.to_string(),
            // `#version` alone: the name is the directory's.
            None => dir_name,
        },
        None => dir_name,
    }
}

fn run_job(job: &Job) -> Result<()> {
    let command = match job {
        Job::DocTests => {
            let mut command = Command::new("cargo");
            command
                .args(["test", "--workspace", "--doc", "--no-fail-fast"])
                .current_dir(host::root());
            command
        }
        Job::Binary(binary) => {
            let mut command = Command::new(&binary.executable);
            // What cargo gives a test binary at run time.
            command
                .current_dir(&binary.package_dir)
                .env("CARGO_MANIFEST_DIR", &binary.package_dir)
                .env("CARGO_PKG_NAME", &binary.package);
            command
        }
    };
    let status = host::run_command_prefixed(job.name(), command)?;
    if !status.success() {
        bail!("{status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_binaries_are_picked_from_cargo_messages() {
        let messages = r#"
{"reason":"compiler-artifact","package_id":"path+file:///w/sources/api/apiserver#0.1.0","manifest_path":"/w/sources/api/apiserver/Cargo.toml","target":{"name":"api"},"profile":{"test":true},"executable":"/t/debug/deps/api-1"}
{"reason":"compiler-artifact","package_id":"path+file:///w/tools/hosttools#host-tools@0.1.0","manifest_path":"/w/tools/hosttools/Cargo.toml","target":{"name":"host_tools"},"profile":{"test":true},"executable":"/t/debug/deps/host_tools-2"}
{"reason":"compiler-artifact","package_id":"path+file:///w/x#0.1.0","manifest_path":"/w/x/Cargo.toml","target":{"name":"x"},"profile":{"test":false},"executable":"/t/debug/x"}
{"reason":"compiler-artifact","package_id":"registry+https://x#serde@1.0.0","manifest_path":"/r/serde/Cargo.toml","target":{"name":"serde"},"profile":{"test":false},"executable":null}
{"reason":"build-finished","success":true}
"#;
        let binaries = parse_artifacts(messages).unwrap();
        let names: Vec<_> = binaries.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["apiserver/api", "host-tools/host_tools"]);
        assert_eq!(
            binaries[0].package_dir,
            Path::new("/w/sources/api/apiserver")
        );
        assert_eq!(
            binaries[1].executable,
            Path::new("/t/debug/deps/host_tools-2")
        );
    }

    #[test]
    fn no_test_binary_is_an_error() {
        let err = parse_artifacts(r#"{"reason":"build-finished","success":true}"#).unwrap_err();
        assert!(err.to_string().contains("no test binary"), "{err}");
    }
}
