//! Progress of `update-image`: log lines, and optionally a JSON file rewritten atomically about
//! every half second for a caller that polls it (an API server, a test):
//!
//! ```json
//! {"phase": "download", "target": "ballast-dev-x86_64-1.1.0-abc-root.erofs.zst",
//!  "bytes_written": 1048576, "bytes_expected": null,
//!  "download_bytes": 524288, "download_expected": 3145728,
//!  "targets_done": 1, "targets_total": 3}
//! ```
//!
//! `phase` is `download` while targets are written, `done` after the last one, `failed` after
//! an error (with `target` naming the one that failed). `bytes_written` counts the decompressed
//! bytes written to the partition of the current target; `bytes_expected` is its decompressed
//! size when the zstd frame declares it, else `null`. `download_bytes` and `download_expected`
//! count the compressed target as downloaded and as listed in the signed metadata, so there is
//! always a known total to show a percentage against.
//!
//! The file's shape is declared once, as `api_types::update::ProgressFile`: the API server reads
//! the same type and shows its first six fields as the update status document's `progress`.

use crate::error::{self, Result};
use api_types::update::{ProgressFile, UpdateProgress, PHASE_DONE, PHASE_DOWNLOAD, PHASE_FAILED};
use snafu::ResultExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the progress file is rewritten.
pub const INTERVAL: Duration = Duration::from_millis(500);
/// How often a progress line is logged while a target is written.
const LOG_EVERY: u32 = 10;

/// The phase of an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Download,
    Done,
    Failed,
}

impl Phase {
    /// The name the progress file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Download => PHASE_DOWNLOAD,
            Phase::Done => PHASE_DONE,
            Phase::Failed => PHASE_FAILED,
        }
    }
}

/// One snapshot of the progress, as written to the file.
pub type Report = ProgressFile;

#[derive(Debug)]
struct Fields {
    phase: Phase,
    target: Option<String>,
    bytes_expected: Option<u64>,
    download_expected: Option<u64>,
    targets_done: u32,
    targets_total: u32,
}

/// Counters shared between the download, the writer thread and the reporter.
#[derive(Debug)]
pub struct Progress {
    fields: Mutex<Fields>,
    /// Decompressed bytes written to the partition of the current target.
    pub written: AtomicU64,
    /// Compressed bytes of the current target downloaded and verified so far.
    pub downloaded: AtomicU64,
    file: Option<PathBuf>,
}

impl Progress {
    /// Progress of `targets_total` targets, written to `file` if given.
    pub fn new(file: Option<PathBuf>, targets_total: u32) -> Arc<Progress> {
        Arc::new(Progress {
            fields: Mutex::new(Fields {
                phase: Phase::Download,
                target: None,
                bytes_expected: None,
                download_expected: None,
                targets_done: 0,
                targets_total,
            }),
            written: AtomicU64::new(0),
            downloaded: AtomicU64::new(0),
            file,
        })
    }

    fn with_fields(&self, f: impl FnOnce(&mut Fields)) {
        if let Ok(mut fields) = self.fields.lock() {
            f(&mut fields);
        }
    }

    /// The current snapshot.
    pub fn report(&self) -> Report {
        let fields = self.fields.lock().unwrap_or_else(|e| e.into_inner());
        ProgressFile {
            progress: UpdateProgress {
                phase: fields.phase.as_str().to_string(),
                target: fields.target.clone(),
                bytes_written: self.written.load(Ordering::Relaxed),
                bytes_expected: fields.bytes_expected,
                targets_done: fields.targets_done,
                targets_total: fields.targets_total,
            },
            download_bytes: self.downloaded.load(Ordering::Relaxed),
            download_expected: fields.download_expected,
        }
    }

    /// A new target starts; `length` is its signed (compressed) length.
    pub fn start_target(&self, name: &str, length: Option<u64>) -> Result<()> {
        self.written.store(0, Ordering::Relaxed);
        self.downloaded.store(0, Ordering::Relaxed);
        self.with_fields(|f| {
            f.phase = Phase::Download;
            f.target = Some(name.to_string());
            f.bytes_expected = None;
            f.download_expected = length;
        });
        self.write()
    }

    /// The zstd frame of the current target declares its decompressed size.
    pub fn set_expected(&self, size: u64) {
        self.with_fields(|f| f.bytes_expected = Some(size));
    }

    /// The current target is written and verified.
    pub fn finish_target(&self) -> Result<()> {
        self.with_fields(|f| f.targets_done += 1);
        self.write()
    }

    /// Every target is written.
    pub fn done(&self) -> Result<()> {
        self.with_fields(|f| f.phase = Phase::Done);
        self.write()
    }

    /// The update failed; the file keeps the target that failed. Errors writing the file are
    /// only logged, so they do not hide the failure itself.
    pub fn failed(&self) {
        self.with_fields(|f| f.phase = Phase::Failed);
        if let Err(e) = self.write() {
            tracing::warn!("{e}");
        }
    }

    /// Rewrites the progress file, if there is one.
    pub fn write(&self) -> Result<()> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let mut bytes = serde_json::to_vec(&self.report()).context(error::JsonSnafu {
            what: "the progress",
        })?;
        bytes.push(b'\n');
        crate::state::write_atomic(path, &bytes, false)
    }

    /// Rewrites the file every [`INTERVAL`] and logs a line now and then, until dropped.
    pub fn spawn_reporter(self: &Arc<Self>) -> Reporter {
        let progress = Arc::clone(self);
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut ticks = 0u32;
            loop {
                interval.tick().await;
                ticks += 1;
                if let Err(e) = progress.write() {
                    tracing::warn!("{e}");
                }
                if ticks.is_multiple_of(LOG_EVERY) {
                    let r = progress.report();
                    if let Some(target) = &r.progress.target {
                        tracing::info!(
                            target_name = %target,
                            "{}: {} of {} MiB downloaded, {} MiB written",
                            target,
                            r.download_bytes >> 20,
                            r.download_expected.map_or("?".to_string(), |n| (n >> 20).to_string()),
                            r.progress.bytes_written >> 20,
                        );
                    }
                }
            }
        });
        Reporter { task }
    }
}

/// Stops the periodic reporter when dropped.
pub struct Reporter {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads a progress file (for tests and callers in Rust).
pub fn read(path: &Path) -> Option<serde_json::Value> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}
