//! Test harness: a real API server process on a temporary socket and datastore, driven by the
//! real `apiclient` binary or by raw requests. Unless a test names the real renderer, applies go
//! to a recording script that appends each apply's arguments and stdin to a log.

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
    child: Option<Child>,
    rt: tokio::runtime::Runtime,
}

/// Path of a workspace binary, building it first when this test run did not.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", name, "--bin", name])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p {name} failed");
    }
    path
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
        let mut server = TestServer {
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

    /// Starts the server process and waits until it answers.
    pub fn spawn(&mut self) {
        let child = Command::new(workspace_bin("apiserver"))
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
        let child = Command::new(workspace_bin("apiserver"))
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
        let pid = child.id() as i32;
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
        self.child.as_ref().expect("server running").id() as i32
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
