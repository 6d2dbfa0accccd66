//! A stand-in for the updater (`updog`) in tests of the update API: the `test-updater` binary
//! follows updog's command-line contract, but keeps the node it pretends to update in a JSON
//! file and writes no disk. It is a test tool only and is never installed in an image.
//!
//! Everything lives in the directory given with `--state DIR` (a flag of its own, placed before
//! the contract's flags, e.g. `--updater-command "test-updater --state DIR"`):
//!
//! * `node.json`: the node ([`FakeNode`]): running image, A/B sets, what the repository offers.
//! * `calls.log`: one line per run with its arguments (once they parse), so tests can check
//!   what the API ran.
//! * `fail-<subcommand>`: when present, that subcommand prints the file's text on stderr and
//!   exits 1 (`update-image` fails half way, after reporting some progress).
//! * `hang-<subcommand>`: when present, that subcommand waits until the file is removed.
//! * `hold-download`: when present, `update-image` stops half way through the root target
//!   (progress file written) until the file is removed.
//! * `stdout-<subcommand>`: when present, printed instead of the subcommand's JSON.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An OS image as updog describes a running or staged one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub variant: String,
    pub arch: String,
    pub version: String,
    pub build_id: String,
}

/// The inactive partition set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inactive {
    pub set: String,
    pub image: Option<Image>,
    pub valid: bool,
    pub bootable: bool,
    pub successful: bool,
}

/// An update the node rolled back from: updog prints it as the status document shows it.
pub use api_types::update::FailedUpdate;

/// The pretend node and its repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeNode {
    pub running: Image,
    pub active_set: String,
    pub next_boot: String,
    pub inactive: Inactive,
    pub failed_update: Option<FailedUpdate>,
    /// Versions the repository offers for the running variant and arch.
    pub offered: Vec<String>,
}

/// Sizes of the three targets `update-image` pretends to write.
pub const TARGETS: [(&str, u64); 3] = [("boot", 4 << 20), ("root", 64 << 20), ("hash", 1 << 20)];

impl FakeNode {
    /// A node running `version` of variant `test` from set A, B empty, nothing offered.
    pub fn new(version: &str) -> FakeNode {
        FakeNode {
            running: Image {
                variant: "test".into(),
                arch: std::env::consts::ARCH.into(),
                version: version.into(),
                build_id: "abc123".into(),
            },
            active_set: "A".into(),
            next_boot: "A".into(),
            inactive: Inactive {
                set: "B".into(),
                image: None,
                valid: false,
                bootable: false,
                successful: false,
            },
            failed_update: None,
            offered: Vec::new(),
        }
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join("node.json")
    }

    pub fn load(dir: &Path) -> Result<FakeNode, String> {
        let path = Self::path(dir);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{} is malformed: {e}", path.display()))
    }

    pub fn save(&self, dir: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        write_atomic(&Self::path(dir), text.as_bytes())
    }

    fn image(&self, version: &str) -> Image {
        Image {
            version: version.into(),
            build_id: format!("build-{version}"),
            ..self.running.clone()
        }
    }

    /// A manifest entry as updog prints it.
    fn entry(&self, version: &str) -> serde_json::Value {
        serde_json::json!({
            "variant": self.running.variant,
            "arch": self.running.arch,
            "version": version,
            "max_version": version,
            "waves": {},
            "images": {
                "boot": format!("ballast-{version}-boot.ext4.zst"),
                "root": format!("ballast-{version}-root.erofs.zst"),
                "hash": format!("ballast-{version}-root.verity.zst"),
            },
        })
    }

    /// Offered versions, newest first.
    fn offered_newest_first(&self) -> Vec<String> {
        let mut versions = self.offered.clone();
        versions.sort_by_key(|v| std::cmp::Reverse(version(v)));
        versions
    }

    fn newest_newer(&self) -> Option<String> {
        let running = version(&self.running.version);
        self.offered_newest_first()
            .into_iter()
            .find(|v| version(v) > running)
    }

    /// What `updog --json status` prints for this node (the contract the API server reads).
    fn status_json(&self) -> api_types::updater::NodeStatus {
        let info = |i: &Image| api_types::updater::ImageInfo {
            variant: i.variant.clone(),
            arch: i.arch.clone(),
            version: i.version.clone(),
            build_id: Some(i.build_id.clone()),
        };
        api_types::updater::NodeStatus {
            running: info(&self.running),
            active_set: self.active_set.clone(),
            next_boot: self.next_boot.clone(),
            inactive: api_types::updater::InactiveSet {
                set: self.inactive.set.clone(),
                image: self.inactive.image.as_ref().map(info),
                valid: self.inactive.valid,
                bootable: self.inactive.bootable,
                successful: self.inactive.successful,
            },
            failed_update: self.failed_update.clone(),
        }
    }
}

fn version(text: &str) -> semver::Version {
    semver::Version::parse(text).unwrap_or(semver::Version::new(0, 0, 0))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, bytes)
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A failed run: exit code and message for stderr.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

fn fail(message: impl Into<String>) -> Failure {
    Failure {
        code: 1,
        message: message.into(),
    }
}

/// The parsed command line.
#[derive(Debug, Default)]
struct Args {
    state: Option<PathBuf>,
    json: bool,
    subcommand: String,
    all: bool,
    image: Option<String>,
    allow_downgrade: bool,
    progress_file: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Args, Failure> {
    let mut parsed = Args::default();
    let mut it = args.iter();
    let value = |it: &mut std::slice::Iter<String>, flag: &str| {
        it.next()
            .cloned()
            .ok_or_else(|| fail(format!("{flag} needs a value")))
    };
    // Global flags, then the subcommand.
    loop {
        let Some(arg) = it.next() else {
            return Err(fail("no subcommand given"));
        };
        match arg.as_str() {
            "--state" => parsed.state = Some(value(&mut it, arg)?.into()),
            "--json" => parsed.json = true,
            "--config" | "--os-release" | "--root-json" | "--cache-dir" | "--migrations-dir"
            | "--disk" | "--active" | "--log-level" => {
                value(&mut it, arg)?;
            }
            flag if flag.starts_with('-') => {
                return Err(fail(format!("unknown global flag {flag}")))
            }
            sub => {
                parsed.subcommand = sub.to_string();
                break;
            }
        }
    }
    let allowed: &[&str] = match parsed.subcommand.as_str() {
        "check-update" => &["--all", "--ignore-waves"],
        "update-image" => &[
            "--image",
            "--ignore-waves",
            "--allow-downgrade",
            "--progress-file",
        ],
        "update-apply" => &["--reboot"],
        "update-revert" | "status" => &[],
        other => return Err(fail(format!("unknown subcommand {other}"))),
    };
    while let Some(arg) = it.next() {
        if !allowed.contains(&arg.as_str()) {
            return Err(fail(format!(
                "{} does not take {arg} (global flags go before the subcommand)",
                parsed.subcommand
            )));
        }
        match arg.as_str() {
            "--all" => parsed.all = true,
            "--image" => parsed.image = Some(value(&mut it, arg)?),
            "--allow-downgrade" => parsed.allow_downgrade = true,
            "--progress-file" => parsed.progress_file = Some(value(&mut it, arg)?.into()),
            _ => {}
        }
    }
    Ok(parsed)
}

/// Runs one command line (without the program name); returns what to print on stdout.
pub fn run(args: &[String]) -> Result<String, Failure> {
    let parsed = parse(args)?;
    let dir = parsed
        .state
        .clone()
        .ok_or_else(|| fail("test-updater needs --state DIR before the subcommand"))?;
    let log = format!("{}\n", args.join(" "));
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("calls.log"))
            .map_err(|e| fail(format!("cannot log the call: {e}")))?;
        file.write_all(log.as_bytes())
            .map_err(|e| fail(format!("cannot log the call: {e}")))?;
    }
    let sub = parsed.subcommand.as_str();
    wait_while(&dir.join(format!("hang-{sub}")));
    if sub != "update-image" {
        fail_if_asked(&dir, sub)?;
    }
    let mut node = FakeNode::load(&dir).map_err(fail)?;
    let out = match sub {
        "status" => {
            if parsed.json {
                serde_json::to_string(&node.status_json()).unwrap_or_default()
            } else {
                format!(
                    "{} {} (set {})",
                    node.running.variant, node.running.version, node.active_set
                )
            }
        }
        "check-update" => check_update(&node, &parsed),
        "update-image" => {
            update_image(&mut node, &dir, &parsed)?;
            String::new()
        }
        "update-apply" => {
            if !node.inactive.valid {
                return Err(fail(format!(
                    "the inactive partition set {} holds no valid image; run update-image first",
                    node.inactive.set
                )));
            }
            node.next_boot = node.inactive.set.clone();
            node.save(&dir).map_err(fail)?;
            String::new()
        }
        "update-revert" => {
            node.next_boot = node.active_set.clone();
            node.save(&dir).map_err(fail)?;
            String::new()
        }
        _ => unreachable!("checked by parse"),
    };
    match std::fs::read_to_string(dir.join(format!("stdout-{sub}"))) {
        Ok(replacement) => Ok(replacement),
        Err(_) => Ok(out),
    }
}

fn check_update(node: &FakeNode, args: &Args) -> String {
    let running = version(&node.running.version);
    let updates: Vec<String> = node
        .offered_newest_first()
        .into_iter()
        .filter(|v| args.all || version(v) > running)
        .collect();
    let chosen = node.newest_newer();
    if !args.json {
        return match &chosen {
            Some(v) => format!("{} {v}", node.running.variant),
            None => "no update available".to_string(),
        };
    }
    serde_json::json!({
        "running": node.running,
        "chosen": chosen.map(|v| node.entry(&v)),
        "updates": updates.iter().map(|v| node.entry(v)).collect::<Vec<_>>(),
    })
    .to_string()
}

fn update_image(node: &mut FakeNode, dir: &Path, args: &Args) -> Result<(), Failure> {
    let target = match &args.image {
        Some(v) if node.offered.contains(v) => v.clone(),
        Some(v) => return Err(fail(format!("version {v} is not in the repository"))),
        None => node.newest_newer().ok_or(Failure {
            code: 3,
            message: "no update available".into(),
        })?,
    };
    if version(&target) < version(&node.running.version) && !args.allow_downgrade {
        return Err(fail(format!(
            "{target} is older than the running {}; pass --allow-downgrade",
            node.running.version
        )));
    }
    // Clear the inactive set first, as the real updater does.
    node.inactive.image = None;
    node.inactive.valid = false;
    node.inactive.bootable = false;
    node.inactive.successful = false;
    node.next_boot = node.active_set.clone();
    node.save(dir).map_err(fail)?;
    let progress = |target: &str, written: u64, expected: u64, done: usize, phase: &str| {
        if let Some(path) = &args.progress_file {
            // The progress file's shape, as updog writes it (without the download counters).
            let doc = api_types::update::ProgressFile {
                progress: api_types::update::UpdateProgress {
                    phase: phase.to_string(),
                    target: Some(target.to_string()),
                    bytes_written: written,
                    bytes_expected: Some(expected),
                    targets_done: done as u32,
                    targets_total: TARGETS.len() as u32,
                },
                ..Default::default()
            };
            let text = serde_json::to_string(&doc).map_err(|e| e.to_string())?;
            write_atomic(path, text.as_bytes())
        } else {
            Ok(())
        }
    };
    for (done, (name, size)) in TARGETS.iter().enumerate() {
        for quarter in 0..4u64 {
            progress(
                name,
                size * quarter / 4,
                *size,
                done,
                api_types::update::PHASE_DOWNLOAD,
            )
            .map_err(fail)?;
            if *name == "root" && quarter == 2 {
                wait_while(&dir.join("hold-download"));
                if let Err(failure) = fail_if_asked(dir, "update-image") {
                    let _ = progress(name, size / 2, *size, done, api_types::update::PHASE_FAILED);
                    return Err(failure);
                }
            }
        }
    }
    progress(
        "hash",
        TARGETS[2].1,
        TARGETS[2].1,
        TARGETS.len(),
        api_types::update::PHASE_DONE,
    )
    .map_err(fail)?;
    node.inactive.image = Some(node.image(&target));
    node.inactive.valid = true;
    node.save(dir).map_err(fail)
}

fn fail_if_asked(dir: &Path, sub: &str) -> Result<(), Failure> {
    match std::fs::read_to_string(dir.join(format!("fail-{sub}"))) {
        Ok(message) => Err(fail(message.trim_end())),
        Err(_) => Ok(()),
    }
}

fn wait_while(path: &Path) {
    while path.exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn args(dir: &Path, rest: &str) -> Vec<String> {
        let mut v = vec!["--state".to_string(), dir.display().to_string()];
        v.extend(rest.split_whitespace().map(str::to_string));
        v
    }

    #[test]
    fn follows_the_contract_through_a_cycle() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = FakeNode::new("1.0.0");
        node.offered = vec!["0.9.0".into(), "1.1.0".into(), "1.0.0".into()];
        node.save(dir.path()).unwrap();

        let out: serde_json::Value =
            serde_json::from_str(&run(&args(dir.path(), "--json check-update --all")).unwrap())
                .unwrap();
        assert_eq!(out["chosen"]["version"], "1.1.0");
        let versions: Vec<_> = out["updates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["version"].as_str().unwrap())
            .collect();
        assert_eq!(versions, ["1.1.0", "1.0.0", "0.9.0"]);

        // --json after the subcommand is refused, as the contract puts it before.
        assert!(run(&args(dir.path(), "check-update --json")).is_err());

        let progress = dir.path().join("progress.json");
        let cmd = format!(
            "update-image --image 1.1.0 --progress-file {}",
            progress.display()
        );
        run(&args(dir.path(), &cmd)).unwrap();
        let p: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&progress).unwrap()).unwrap();
        assert_eq!(p["phase"], "done");
        assert_eq!(p["targets_done"], 3);

        run(&args(dir.path(), "update-apply")).unwrap();
        let status: serde_json::Value =
            serde_json::from_str(&run(&args(dir.path(), "--json status")).unwrap()).unwrap();
        assert_eq!(status["next_boot"], "B");
        assert_eq!(status["inactive"]["image"]["version"], "1.1.0");
        run(&args(dir.path(), "update-revert")).unwrap();
        assert_eq!(FakeNode::load(dir.path()).unwrap().next_boot, "A");

        let err = run(&args(dir.path(), "update-image --image 0.9.0")).unwrap_err();
        assert!(err.message.contains("--allow-downgrade"), "{}", err.message);
        let calls = std::fs::read_to_string(dir.path().join("calls.log")).unwrap();
        // Every run that parsed is logged; the refused `check-update --json` is not.
        assert_eq!(calls.lines().count(), 6);
    }

    #[test]
    fn nothing_to_apply_exits_3_and_failures_are_injected() {
        let dir = tempfile::tempdir().unwrap();
        FakeNode::new("1.0.0").save(dir.path()).unwrap();
        assert_eq!(run(&args(dir.path(), "update-image")).unwrap_err().code, 3);
        std::fs::write(dir.path().join("fail-update-apply"), "no GPT\n").unwrap();
        let err = run(&args(dir.path(), "update-apply")).unwrap_err();
        assert_eq!((err.code, err.message.as_str()), (1, "no GPT"));
    }
}
