//! A real systemd manager for tests of `GET /units` and `GET /status`: systemd's user manager
//! (`systemd --user`), with its own runtime directory and unit directory under a temporary
//! directory, so a test can load units, make one fail, and read them back with the real
//! `systemctl --user`.
//!
//! systemd refuses to start a user manager unless the machine was booted with it (it looks
//! for `/run/systemd/system`). On a host whose PID 1 is something else (a container, this
//! project's CI runners), the manager runs in a private mount namespace (`unshare -m`) where a
//! tmpfs on `/run/systemd` holds that directory; nothing outside the namespace changes. That
//! needs root (CAP_SYS_ADMIN); without it, or without systemd installed, [`UserManager::start`]
//! returns `None` after a notice, and panics under CI.
//!
//! On a host without systemd as PID 1, every manager started this way lives in the test
//! process's cgroup, and two of them would manage the same cgroup paths (the same unit in two
//! tests: one manager's cleanup removes the other's cgroup, and a unit hangs in
//! `deactivating`). So one manager runs at a time on the machine: [`UserManager::start`] takes
//! an exclusive lock on [`LOCK_PATH`] and the manager holds it until dropped.
//!
//! systemctl finds the manager through `XDG_RUNTIME_DIR` ([`UserManager::env`]): a server
//! that should read it gets that variable and `--systemctl "systemctl --user"`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the manager may take to come up, and to stop.
const TIMEOUT: Duration = Duration::from_secs(20);

/// The lock that keeps test user managers one at a time, across threads and processes.
pub const LOCK_PATH: &str = "/tmp/ballast-test-user-manager.lock";

/// A running user manager; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct UserManager {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Held while the manager runs (released after it has stopped: fields drop in order, and
    /// `Drop::drop` stops the manager before any field is dropped).
    _lock: std::fs::File,
}

impl UserManager {
    /// Starts a user manager and waits until it answers; `None` (with a notice) when this host
    /// cannot run one.
    pub fn start() -> Option<UserManager> {
        let ci = hosttools::in_ci();
        for tool in [hosttools::SYSTEMD, "systemctl", "unshare"] {
            if !hosttools::require_tool(tool) {
                return None;
            }
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_PATH)
            .unwrap_or_else(|e| panic!("cannot open {LOCK_PATH}: {e}"));
        lock.lock()
            .unwrap_or_else(|e| panic!("cannot lock {LOCK_PATH}: {e}"));
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = dir.path().join("runtime");
        std::fs::create_dir(&runtime).unwrap();
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::create_dir_all(dir.path().join("config/systemd/user")).unwrap();
        let log = std::fs::File::create(dir.path().join("manager.log")).unwrap();
        let mut command = if Path::new("/run/systemd/system").is_dir() {
            let mut c = Command::new(hosttools::SYSTEMD);
            c.arg("--user");
            c
        } else {
            // The shell is replaced by systemd (exec), so the child's pid is the manager's.
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg(format!(
                    "mount -t tmpfs -o mode=0755 tmpfs /run/systemd && mkdir /run/systemd/system && exec {} --user",
                    hosttools::SYSTEMD
                ));
            c
        };
        let child = command
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env("SYSTEMD_LOG_TARGET", "console")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start unshare or systemd");
        let mut manager = UserManager {
            dir,
            child: Some(child),
            _lock: lock,
        };
        let start = Instant::now();
        while start.elapsed() < TIMEOUT {
            // Not `is-system-running`: that says "offline" when the calling process sees no
            // /run/systemd/system, as outside the namespace.
            let state = manager.systemctl(&["show", "--property=SystemState", "--value"]);
            let text = String::from_utf8_lossy(&state.stdout);
            if matches!(text.trim(), "running" | "degraded") {
                return Some(manager);
            }
            if let Some(Ok(Some(status))) = manager.child.as_mut().map(Child::try_wait) {
                let log = std::fs::read_to_string(manager.dir.path().join("manager.log"))
                    .unwrap_or_default();
                let why = format!(
                    "systemd's user manager exited ({status}) before it answered; it needs \
                     root (unshare --mount) on a host not booted with systemd. Its log: {log}"
                );
                if ci {
                    panic!("{why}");
                }
                eprintln!("NOTICE: {why}; skipping this check");
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "systemd's user manager did not answer within {} s",
            TIMEOUT.as_secs()
        );
    }

    /// The environment under which `systemctl --user` reaches this manager.
    pub fn env(&self) -> Vec<(String, PathBuf)> {
        vec![(
            "XDG_RUNTIME_DIR".to_string(),
            self.dir.path().join("runtime"),
        )]
    }

    /// Runs the real `systemctl --user` against this manager.
    pub fn systemctl(&self, args: &[&str]) -> Output {
        let mut command = Command::new("systemctl");
        command.arg("--user").args(args);
        for (k, v) in self.env() {
            command.env(k, v);
        }
        command
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .output()
            .expect("run systemctl")
    }

    /// Writes unit file `name` into the manager's unit directory and reloads it.
    pub fn add_unit(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join("config/systemd/user").join(name), text).unwrap();
        let out = self.systemctl(&["daemon-reload"]);
        assert!(
            out.status.success(),
            "systemctl --user daemon-reload: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `unit` and waits (up to 20 s) until its active state is `expected` ("failed" for
    /// a service whose program exits non-zero: it is briefly "active" first); returns the
    /// state it reached.
    pub fn start_unit(&self, unit: &str, expected: &str) -> String {
        // A unit that fails may make `start` exit non-zero; the state says how it went.
        let _ = self.systemctl(&["start", unit]);
        let start = Instant::now();
        loop {
            let out = self.systemctl(&["show", "--property=ActiveState", "--value", unit]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == expected || start.elapsed() > TIMEOUT {
                return state;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let start = Instant::now();
        while start.elapsed() < TIMEOUT {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
