//! The update API: `GET /updates/status` and `POST /actions/{refresh,prepare,activate,deactivate}
//! -update`, plus `POST /actions/reboot`. This is the work Bottlerocket gives to a separate
//! program, thar-be-updates; here the API server does it in-process and runs the updater
//! (`--updater-command`, `updog` by default) as a child for each action.
//!
//! An action is checked against the current state ([`status::Transitions::check`]: 409 when
//! the state does not allow it, 423 while another action runs), the updater is started, the
//! status says `Running`, and the request is answered with 204 at once. A background task waits
//! for the updater, keeps the tail of its stderr, parses its JSON, asks `updog status` about the
//! partition sets and moves the state on. While a prepare runs, `progress` shows the updater's
//! progress file.
//!
//! The status document is saved atomically in `--updater-status-dir` after every change, so a
//! restarted API server carries on where the last one stopped. That directory is on tmpfs on a
//! node: after a reboot there is nothing saved and the first request builds a fresh status
//! from `updog status` (Idle, or Ready when an update already boots next).
//!
//! Children get SIGTERM when the API server dies, and are killed when it shuts down; an action
//! that was running then is reported as Failed by the next server (see
//! [`status::INTERRUPTED`]).
//!
//! A status while a prepare runs:
//!
//! ```json
//! {
//!   "update_state": "Available",
//!   "available_updates": ["1.2.0", "1.1.0"],
//!   "chosen_update": {"arch": "x86_64", "version": "1.2.0", "variant": "dev"},
//!   "active_partition": {
//!     "image": {"arch": "x86_64", "version": "1.1.0", "variant": "dev"},
//!     "next_to_boot": true
//!   },
//!   "staging_partition": null,
//!   "most_recent_command": {
//!     "cmd_type": "prepare", "cmd_status": "Running",
//!     "timestamp": "2025-03-01T10:00:00Z", "exit_status": null, "stderr": ""
//!   },
//!   "progress": {
//!     "phase": "download", "target": "root", "bytes_written": 33554432,
//!     "bytes_expected": 964689920, "targets_done": 1, "targets_total": 3
//!   },
//!   "failed_update": null
//! }
//! ```
//!
//! Once it succeeds: `"update_state": "Staged"`, `staging_partition` holds 1.2.0 with
//! `"next_to_boot": false`, `cmd_status` is `Success` with `exit_status` 0, and `progress` is
//! null again.

pub mod status;
pub mod updater;

use crate::command::{cannot_run, CommandLine};
use crate::error::ApiError;
use api_types::update::DaemonReport;
use axum::http::StatusCode;
use status::{
    CommandType, Outcome, Partitions, Refusal, Transitions, UpdateProgress, UpdateStatus,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Name of the saved status document inside the status directory.
pub const STATUS_FILE: &str = "status.json";
/// Name of the update daemon's last report inside the status directory.
pub const DAEMON_FILE: &str = "daemon.json";
/// Name of the progress file the updater writes while preparing.
pub const PROGRESS_FILE: &str = "progress.json";
/// How much of the updater's stderr is kept in the status.
const STDERR_LIMIT: usize = 16 * 1024;
/// How long `updog status` may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the reboot command may take to return.
const REBOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// How to run updates.
#[derive(Debug, Clone)]
pub struct UpdatesConfig {
    /// The updater and any leading arguments (`--updater-command`).
    pub updater: CommandLine,
    /// Where the status document and the progress file live (`--updater-status-dir`).
    pub status_dir: PathBuf,
    /// What `POST /actions/reboot` runs (`--reboot-command`).
    pub reboot: CommandLine,
}

impl Default for UpdatesConfig {
    fn default() -> Self {
        UpdatesConfig {
            updater: CommandLine::from_static("updog"),
            status_dir: PathBuf::from("/run/cache/ballast-updates"),
            reboot: CommandLine::from_static("systemctl reboot"),
        }
    }
}

/// A handle to the update machinery. Cheap to clone; all clones share one status.
#[derive(Clone)]
pub struct Updates {
    shared: Arc<Shared>,
}

struct Shared {
    config: UpdatesConfig,
    /// `None` until the first request that needs it loads or builds the status.
    status: Mutex<Option<UpdateStatus>>,
    /// The update daemon's last report (`PUT /updates/daemon`), shown as the status's `daemon`.
    daemon: Mutex<Option<DaemonReport>>,
}

impl Updates {
    /// Nothing runs until the first update request, so a node without an updater still serves
    /// every other route.
    pub fn new(config: UpdatesConfig) -> Updates {
        Updates {
            shared: Arc::new(Shared {
                daemon: Mutex::new(read_daemon_report(&config.status_dir)),
                config,
                status: Mutex::new(None),
            }),
        }
    }

    fn config(&self) -> &UpdatesConfig {
        &self.shared.config
    }

    fn progress_path(&self) -> PathBuf {
        self.config().status_dir.join(PROGRESS_FILE)
    }

    /// The current status, with the progress of a running prepare.
    pub async fn status(&self) -> Result<UpdateStatus, ApiError> {
        let mut guard = self.shared.status.lock().await;
        let mut status = self.loaded(&mut guard).await?.clone();
        drop(guard);
        if status
            .running()
            .is_some_and(|r| r.cmd_type == CommandType::Prepare)
        {
            status.progress = read_progress(&self.progress_path());
        }
        status.daemon = self.shared.daemon.lock().await.clone();
        Ok(status)
    }

    /// Keeps the update daemon's latest decision for the status document, and saves it beside
    /// the status so that a restarted API server still shows it.
    pub async fn record_daemon(&self, report: DaemonReport) -> Result<(), ApiError> {
        let dir = &self.config().status_dir;
        ensure_dir(dir)?;
        let bytes = serde_json::to_vec_pretty(&report)
            .map_err(|e| ApiError::internal(format!("cannot encode the daemon report: {e}")))?;
        if let Err(e) = write_atomic(dir, DAEMON_FILE, &bytes) {
            tracing::error!(
                "cannot save the update daemon's report in {}: {e}",
                dir.display()
            );
        }
        *self.shared.daemon.lock().await = Some(report);
        Ok(())
    }

    /// Starts `cmd` in the background if the state allows it.
    pub async fn start(&self, cmd: CommandType) -> Result<(), ApiError> {
        let mut guard = self.shared.status.lock().await;
        let status = self.loaded(&mut guard).await?;
        status.check(cmd).map_err(|refusal| match refusal {
            Refusal::Busy(text) => ApiError::new(StatusCode::LOCKED, text),
            Refusal::NotAllowed(text) => ApiError::new(StatusCode::CONFLICT, text),
        })?;
        let args = match cmd {
            CommandType::Refresh => updater::check_update_args(),
            CommandType::Prepare => {
                let chosen = status.chosen_update.as_ref().ok_or_else(|| {
                    ApiError::internal("no update is chosen although the state allows a prepare")
                })?;
                let downgrade =
                    updater::is_downgrade(&status.active_partition.image.version, &chosen.version);
                let progress = self.progress_path();
                remove_if_present(&progress);
                ensure_dir(&self.config().status_dir)?;
                updater::update_image_args(&chosen.version, downgrade, &progress)
            }
            CommandType::Activate => updater::update_apply_args(),
            CommandType::Deactivate => updater::update_revert_args(),
        };
        let child = self.spawn_updater(&args)?;
        tracing::info!(
            "update action {cmd} started: {} {}",
            self.config().updater,
            args.join(" ")
        );
        status.begin(cmd, now());
        self.save(status);
        drop(guard);
        let this = self.clone();
        tokio::spawn(async move { this.finish(cmd, child).await });
        Ok(())
    }

    /// Runs the reboot command, unless an update action is running.
    pub async fn reboot(&self) -> Result<(), ApiError> {
        // Held until the command returns, so no update action starts under a reboot.
        let guard = self.shared.status.lock().await;
        if let Some(running) = guard.as_ref().and_then(|s| s.running()) {
            return Err(ApiError::new(
                StatusCode::LOCKED,
                format!(
                    "not rebooting: the update action '{}' started at {} is still running; \
                     wait until GET /updates/status shows it finished",
                    running.cmd_type, running.timestamp
                ),
            ));
        }
        let reboot = &self.config().reboot;
        tracing::warn!("reboot requested through the API; running {reboot}");
        let mut command = reboot.command::<&str>(&[]);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = command
            .spawn()
            .map_err(|e| cannot_run("reboot command", reboot, "--reboot-command", &e))?;
        let output = tokio::time::timeout(REBOOT_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| {
                ApiError::internal(format!(
                    "the reboot command '{reboot}' did not return within {} s",
                    REBOOT_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| ApiError::internal(format!("the reboot command '{reboot}': {e}")))?;
        drop(guard);
        if !output.status.success() {
            return Err(ApiError::internal(format!(
                "the reboot command '{reboot}' failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(())
    }

    /// The status, loaded from the saved document or built from `updog status` the first time.
    async fn loaded<'a>(
        &self,
        slot: &'a mut Option<UpdateStatus>,
    ) -> Result<&'a mut UpdateStatus, ApiError> {
        if slot.is_none() {
            let status = match self.read_saved() {
                Some(mut saved) => {
                    match self.partitions().await {
                        Ok(p) => saved.set_partitions(p),
                        Err(e) => {
                            tracing::warn!("keeping the saved partition facts: {}", e.message)
                        }
                    }
                    if saved.recover_interrupted() {
                        tracing::warn!(
                            "the update action running when the last API server stopped is \
                             marked failed"
                        );
                        remove_if_present(&self.progress_path());
                    }
                    saved
                }
                None => status::initial(self.partitions().await?),
            };
            self.save(&status);
            *slot = Some(status);
        }
        slot.as_mut()
            .ok_or_else(|| ApiError::internal("the update status vanished while loading"))
    }

    /// The saved status, if there is a readable one.
    fn read_saved(&self) -> Option<UpdateStatus> {
        let path = self.config().status_dir.join(STATUS_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(
                    "cannot read {}: {e}; starting from updog status",
                    path.display()
                );
                return None;
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(status) => Some(status),
            Err(e) => {
                tracing::warn!(
                    "{} is not a status document ({e}); starting from updog status",
                    path.display()
                );
                None
            }
        }
    }

    /// Saves the status atomically; a failure is logged, not fatal: the status stays in memory.
    fn save(&self, status: &UpdateStatus) {
        let dir = &self.config().status_dir;
        let mut saved = status.clone();
        saved.progress = None;
        let result = serde_json::to_vec_pretty(&saved)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_atomic(dir, STATUS_FILE, &bytes));
        if let Err(e) = result {
            tracing::error!(
                "cannot save the update status in {}: {e}; it will be lost if the API server \
                 restarts (check --updater-status-dir)",
                dir.display()
            );
        }
    }

    /// Starts the updater with `args`, its stdout and stderr captured.
    fn spawn_updater(&self, args: &[String]) -> Result<tokio::process::Child, ApiError> {
        let updater = &self.config().updater;
        updater
            .captured(args)
            .spawn()
            .map_err(|e| cannot_run("updater", updater, "--updater-command", &e))
    }

    /// Asks the updater about the partition sets.
    async fn partitions(&self) -> Result<Partitions, ApiError> {
        let args = updater::status_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stdout = self
            .config()
            .updater
            .stdout(&args, STATUS_TIMEOUT, "updater", "--updater-command")
            .await?;
        let status = updater::parse_status(&stdout).map_err(ApiError::internal)?;
        Ok(updater::partitions(status))
    }

    /// Waits for the updater of a running action and records how it went.
    async fn finish(self, cmd: CommandType, child: tokio::process::Child) {
        let outcome = match child.wait_with_output().await {
            Ok(output) => interpret(cmd, &output),
            Err(e) => Outcome {
                success: false,
                exit_status: None,
                stderr: format!("waiting for the updater failed: {e}"),
                refresh: None,
            },
        };
        if outcome.success {
            tracing::info!("update action {cmd} succeeded");
        } else {
            let exit = outcome
                .exit_status
                .map_or("killed".to_string(), |code| format!("exit status {code}"));
            tracing::error!(
                "update action {cmd} failed ({exit}): {}",
                outcome.stderr.trim()
            );
        }
        let partitions = self.partitions().await;
        let mut guard = self.shared.status.lock().await;
        if let Some(status) = guard.as_mut() {
            status.end(outcome);
            match partitions {
                Ok(p) => status.set_partitions(p),
                Err(e) => tracing::warn!(
                    "after {cmd}, cannot refresh the partition facts: {}",
                    e.message
                ),
            }
            self.save(status);
            tracing::info!("update state is now {}", status.update_state);
        }
        if cmd == CommandType::Prepare {
            remove_if_present(&self.progress_path());
        }
    }
}

/// Turns the updater's exit and output into an outcome.
fn interpret(cmd: CommandType, output: &Output) -> Outcome {
    let exit_status = output.status.code();
    let mut stderr = tail(&String::from_utf8_lossy(&output.stderr), STDERR_LIMIT);
    if exit_status.is_none() {
        use std::os::unix::process::ExitStatusExt;
        let signal = output.status.signal().unwrap_or_default();
        append_line(
            &mut stderr,
            &format!("the updater was killed by signal {signal}"),
        );
    }
    if !output.status.success() {
        if cmd == CommandType::Prepare && exit_status == Some(updater::EXIT_NOTHING_TO_APPLY) {
            append_line(
                &mut stderr,
                "the updater found no update to apply: the chosen version is no longer offered; \
                 refresh (apiclient update check) and try again",
            );
        }
        return Outcome {
            success: false,
            exit_status,
            stderr,
            refresh: None,
        };
    }
    let refresh = if cmd == CommandType::Refresh {
        match updater::CheckUpdate::parse(&output.stdout) {
            Ok(check) => Some(check.refreshed()),
            Err(text) => {
                append_line(&mut stderr, &text);
                return Outcome {
                    success: false,
                    exit_status,
                    stderr,
                    refresh: None,
                };
            }
        }
    } else {
        None
    };
    Outcome {
        success: true,
        exit_status,
        stderr,
        refresh,
    }
}

fn append_line(text: &mut String, line: &str) {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
}

/// The last `limit` bytes of `text`, cut at a character boundary.
fn tail(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// The saved daemon report, if there is a readable one.
fn read_daemon_report(dir: &Path) -> Option<DaemonReport> {
    let bytes = std::fs::read(dir.join(DAEMON_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn read_progress(path: &Path) -> Option<UpdateProgress> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(progress) => Some(progress),
        Err(e) => {
            tracing::debug!("ignoring unreadable progress file {}: {e}", path.display());
            None
        }
    }
}

fn remove_if_present(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
    }
}

/// Mode of the status directory: only the server (and the updater it runs) use it.
pub const STATUS_DIR_MODE: u32 = 0o700;
/// Mode of the saved status.
pub const STATUS_FILE_MODE: u32 = 0o600;

/// Creates the status directory (and missing parents) with [`STATUS_DIR_MODE`]; the umask can
/// only take bits away, so it is never more open than that, even for an instant.
fn create_status_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(STATUS_DIR_MODE)
        .create(dir)
}

fn ensure_dir(dir: &Path) -> Result<(), ApiError> {
    create_status_dir(dir).map_err(|e| {
        tracing::error!(
            "cannot create the update status directory {}: {e}",
            dir.display()
        );
        ApiError::internal(format!(
            "cannot create the update status directory: {e} (check --updater-status-dir)"
        ))
    })
}

/// Writes `name` in `dir` through a temporary file, fsync and rename, then syncs the directory.
/// The file has [`STATUS_FILE_MODE`] from its creation.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    create_status_dir(dir)?;
    let temp = dir.join(format!(".{name}.tmp"));
    remove_if_present(&temp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(STATUS_FILE_MODE)
        .open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod test {
    use super::*;

    fn output(code: i32, stdout: &str, stderr: &str) -> Output {
        use std::os::unix::process::ExitStatusExt;
        Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    #[test]
    fn refresh_output_that_is_not_json_fails_the_refresh() {
        let o = interpret(CommandType::Refresh, &output(0, "dev 1.0.0", ""));
        assert!(!o.success);
        assert!(o.stderr.contains("not the JSON"), "{}", o.stderr);
        let o = interpret(
            CommandType::Refresh,
            &output(
                0,
                r#"{"running":{"variant":"d","arch":"a","version":"1"},"chosen":null,"updates":[]}"#,
                "",
            ),
        );
        assert!(o.success);
        assert_eq!(o.refresh.unwrap().chosen, None);
    }

    #[test]
    fn nothing_to_apply_is_explained() {
        let o = interpret(CommandType::Prepare, &output(3, "", "no update"));
        assert!(!o.success);
        assert_eq!(o.exit_status, Some(3));
        assert!(o.stderr.starts_with("no update\n"), "{}", o.stderr);
        assert!(o.stderr.contains("apiclient update check"), "{}", o.stderr);
    }

    #[test]
    fn a_signal_is_named() {
        use std::os::unix::process::ExitStatusExt;
        let o = interpret(
            CommandType::Activate,
            &Output {
                status: std::process::ExitStatus::from_raw(9),
                stdout: Vec::new(),
                stderr: Vec::new(),
            },
        );
        assert_eq!(o.exit_status, None);
        assert_eq!(o.stderr, "the updater was killed by signal 9");
    }

    #[test]
    fn stderr_keeps_its_tail() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("ab", 3), "ab");
        // Never cut inside a character.
        assert_eq!(tail("aéb", 2), "b");
    }

    #[test]
    fn atomic_write_replaces_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        write_atomic(&sub, "s.json", b"one").unwrap();
        write_atomic(&sub, "s.json", b"two").unwrap();
        assert_eq!(std::fs::read(sub.join("s.json")).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(&sub).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }
}
