//! Test harness: a real API server process on a temporary socket and datastore, driven by the
//! real `apiclient` binary or by raw requests. Unless a test names the real renderer, applies go
//! to a recording script that appends each apply's arguments and stdin to a log.
//!
//! The server's update actions run the `test-updater` program of this crate ([`updater`]) over a
//! pretend node in the test's directory, and `POST /actions/reboot` runs a script that appends a
//! line to [`TestServer::reboot_log`]: no test can update or reboot the machine it runs on.
//! [`TestServer::start_with_updates`] builds `test-updater` first; with the other constructors
//! a test that uses the update routes calls [`build_test_updater`] before starting the server.
//!
//! `GET /logs` reads [`TestServer::journal_dir`] (`--journal-dir`), an empty directory until a
//! test writes journal files into it, never the host's journal.
//!
//! `GET /units` runs [`TestServer::systemctl_command`] (the host's `systemctl` unless a test
//! points it at a [`systemd::UserManager`]), and `GET /status` runs the workspace's real
//! `signpost` on [`TestServer::disk`], a disk image that does not exist until a test makes
//! one (with [`disk::make_boot_disk`]): by default its boot part is an error, never the
//! host's disk. The same disk serves the tests of signpost and updog.
#![forbid(unsafe_code)]

pub mod containerd;
pub mod disk;
pub mod journal;
pub mod systemd;
pub mod updater;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub store: PathBuf,
    pub apply_log: PathBuf,
    pub apply_command: PathBuf,
    /// `--updater-command` of the server: `test-updater --state <dir>/updater` unless a test
    /// changes it (then `kill` and `spawn` again).
    pub updater_command: String,
    /// `--reboot-command` of the server: a script appending a line to `reboot_log`.
    pub reboot_command: String,
    pub reboot_log: PathBuf,
    /// `--journal-dir` of the server: empty unless a test puts journal files there.
    pub journal_dir: PathBuf,
    /// `--systemctl` of the server: `systemctl` unless a test changes it (then `kill` and
    /// `spawn` again).
    pub systemctl_command: String,
    /// `--signpost-command` of the server: the workspace's signpost (see [`workspace_bin`]) on
    /// [`TestServer::disk`] with set A running.
    pub signpost_command: String,
    /// Variables added to the server's environment (e.g. a user manager's `XDG_RUNTIME_DIR`).
    pub env: Vec<(String, PathBuf)>,
    /// More flags for the server, ones the harness does not already pass.
    pub extra_args: Vec<String>,
    child: Option<Child>,
    rt: tokio::runtime::Runtime,
}

/// The directory holding the workspace's binaries for this test run (e.g. target/debug).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// Path of the `test-updater` binary (built by [`build_test_updater`]).
pub fn test_updater_bin() -> PathBuf {
    bin_dir().join("test-updater")
}

/// Builds binary `bin` of workspace package `package` (cargo decides whether anything changed,
/// so the binary is never stale) and returns its path.
pub fn build_workspace_bin(package: &str, bin: &str) -> PathBuf {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "-p", package, "--bin", bin]);
    if bin_dir().file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo build -p {package} --bin {bin} failed"
    );
    bin_dir().join(bin)
}

/// Builds `test-updater` (once per test process) and returns its path.
pub fn build_test_updater() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| build_workspace_bin("testserver", "test-updater"))
        .clone()
}

/// Path of a workspace binary, built (once per test process) by cargo, which rebuilds it only
/// when its sources changed; a binary left by an earlier build is never used stale.
pub fn workspace_bin(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        build_workspace_bin(name, name);
        built.push(name.to_string());
    }
    bin_dir().join(name)
}

impl TestServer {
    /// A server over a store seeded (and committed) with the shared defaults, applying with a
    /// recording script.
    pub fn start() -> TestServer {
        let defaults = storewolf::load_defaults(&[]).expect("shared defaults");
        TestServer::start_with(&defaults, true, None)
    }

    /// A server over a store seeded with `defaults` (committed to live when `commit`, else left
    /// in the boot transaction), applying with `apply_command` (a recording script when `None`;
    /// its log is [`TestServer::apply_log`]).
    pub fn start_with(
        defaults: &models::Defaults,
        commit: bool,
        apply_command: Option<PathBuf>,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("datastore");
        storewolf::run(&base, "0.1", defaults, commit).expect("seed datastore");
        std::fs::write(
            dir.path().join("os-release"),
            "NAME=Ballast\nPRETTY_NAME=\"Ballast test\"\nVARIANT_ID=test\nVERSION_ID=0.1.0\nBUILD_ID=abc123\n",
        )
        .unwrap();
        let apply_log = dir.path().join("applied.log");
        let script = dir.path().join("record-apply");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nprintf '%s|%s\\n' \"$*\" \"$(cat)\" >> {}\n",
                apply_log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let reboot_log = dir.path().join("reboots.log");
        let reboot_script = dir.path().join("record-reboot");
        std::fs::write(
            &reboot_script,
            format!(
                "#!/bin/sh\necho \"reboot $*\" >> {}\n",
                reboot_log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&reboot_script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let updater_dir = dir.path().join("updater");
        std::fs::create_dir(&updater_dir).unwrap();
        let journal_dir = dir.path().join("journal");
        std::fs::create_dir(&journal_dir).unwrap();
        updater::FakeNode::new("0.1.0").save(&updater_dir).unwrap();
        let signpost_command = format!(
            "{} --disk {} --active A",
            bin_dir().join("signpost").display(),
            dir.path().join("disk.img").display()
        );
        let mut server = TestServer {
            systemctl_command: "systemctl".to_string(),
            signpost_command,
            env: Vec::new(),
            extra_args: Vec::new(),
            updater_command: format!(
                "{} --state {}",
                test_updater_bin().display(),
                updater_dir.display()
            ),
            reboot_command: reboot_script.display().to_string(),
            reboot_log,
            journal_dir,
            apply_command: apply_command.unwrap_or(script),
            socket: dir.path().join("api.sock"),
            store: base.join("current"),
            apply_log,
            dir,
            child: None,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        };
        server.spawn();
        server
    }

    /// A server over the shared defaults whose pretend node (running 0.1.0) is offered
    /// `versions` by its repository; `test-updater` is built first.
    pub fn start_with_updates(versions: &[&str]) -> TestServer {
        build_test_updater();
        let server = TestServer::start();
        let mut node = server.node();
        node.offered = versions.iter().map(|v| v.to_string()).collect();
        server.set_node(&node);
        server
    }

    /// The `--state` directory of the test updater: node, call log and failure switches.
    pub fn updater_dir(&self) -> PathBuf {
        self.dir.path().join("updater")
    }

    /// The disk image signpost reads for `GET /status` (absent unless a test writes it).
    pub fn disk(&self) -> PathBuf {
        self.dir.path().join(disk::DISK_FILE)
    }

    /// Points `GET /units` at a user manager and restarts the server.
    pub fn use_manager(&mut self, manager: &systemd::UserManager) {
        self.systemctl_command = "systemctl --user".to_string();
        self.env = manager.env();
        self.kill();
        self.spawn();
    }

    /// The server's `--updater-status-dir`.
    pub fn update_status_dir(&self) -> PathBuf {
        self.dir.path().join("update-status")
    }

    /// The pretend node the test updater works on.
    pub fn node(&self) -> updater::FakeNode {
        updater::FakeNode::load(&self.updater_dir()).expect("test updater node")
    }

    pub fn set_node(&self, node: &updater::FakeNode) {
        node.save(&self.updater_dir())
            .expect("save test updater node");
    }

    /// The argument lines the server ran the test updater with, oldest first.
    pub fn updater_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.updater_dir().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// How many times the reboot command ran.
    pub fn reboots(&self) -> usize {
        std::fs::read_to_string(&self.reboot_log)
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// The update and journal flags every server of the harness gets, so none can touch (or
    /// read) the host.
    fn update_flags(&self, cmd: &mut Command) {
        cmd.arg("--journal-dir")
            .arg(&self.journal_dir)
            .arg("--updater-command")
            .arg(&self.updater_command)
            .arg("--updater-status-dir")
            .arg(self.update_status_dir())
            .arg("--reboot-command")
            .arg(&self.reboot_command)
            .arg("--systemctl")
            .arg(&self.systemctl_command)
            .arg("--signpost-command")
            .arg(&self.signpost_command)
            .env_remove("DBUS_SESSION_BUS_ADDRESS");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.args(&self.extra_args);
    }

    /// Starts the server process and waits until it answers.
    pub fn spawn(&mut self) {
        let mut cmd = Command::new(workspace_bin("apiserver"));
        self.update_flags(&mut cmd);
        let child = cmd
            .arg("--datastore-path")
            .arg(&self.store)
            .arg("--socket-path")
            .arg(&self.socket)
            .arg("--os-release")
            .arg(self.dir.path().join("os-release"))
            .arg("--apply-command")
            .arg(&self.apply_command)
            .arg("--log-level=warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start apiserver");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Spawns without waiting for readiness; returns the pid.
    pub fn spawn_nowait(&mut self) -> i32 {
        let mut cmd = Command::new(workspace_bin("apiserver"));
        self.update_flags(&mut cmd);
        let child = cmd
            .arg("--datastore-path")
            .arg(&self.store)
            .arg("--socket-path")
            .arg(&self.socket)
            .arg("--os-release")
            .arg(self.dir.path().join("os-release"))
            .arg("--log-level=error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start apiserver");
        let pid = i32::try_from(child.id()).expect("a pid fits in i32");
        self.child = Some(child);
        pid
    }

    pub fn wait_ready(&mut self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok((200, _)) = self.try_raw("GET", "/tx/list", None) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("apiserver exited before answering: {status}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "apiserver did not answer on {} within 60 s",
            self.socket.display()
        );
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.as_ref().expect("server running").id()).expect("a pid fits in i32")
    }

    /// SIGKILLs the server and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    pub fn try_raw(
        &self,
        method: &str,
        uri: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), String> {
        self.rt
            .block_on(apiclient::raw_request(
                &self.socket,
                uri,
                method,
                body.map(str::to_string),
            ))
            .map_err(|e| e.to_string())
    }

    pub fn raw(&self, method: &str, uri: &str, body: Option<&str>) -> (u16, String) {
        self.try_raw(method, uri, body)
            .unwrap_or_else(|e| panic!("{method} {uri}: {e}"))
    }

    pub fn json(&self, method: &str, uri: &str, body: Option<&str>) -> serde_json::Value {
        let (status, text) = self.raw(method, uri, body);
        assert!(
            (200..300).contains(&status),
            "{method} {uri} answered {status}: {text}"
        );
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {uri}: {e}: {text}"))
    }

    /// Runs the real apiclient binary against this server.
    pub fn apiclient(&self, args: &[&str]) -> Output {
        Command::new(workspace_bin("apiclient"))
            .arg("--socket-path")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run apiclient")
    }

    /// Waits until the recording renderer has seen `n` applies; returns the log lines.
    pub fn applies(&self, n: usize) -> Vec<String> {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&self.apply_log).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            if lines.len() >= n || start.elapsed() > Duration::from_secs(10) {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}
