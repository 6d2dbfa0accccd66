//! The record the boot's health gate (`health-gate`, crate `health`) leaves on the data
//! partition (`constants::HEALTH_BOOT_FAILURE`) when a boot's checks never passed, and
//! that the updater reads after the rollback to say why the update failed.

use serde::{Deserialize, Serialize};

/// A health check that did not pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Which check: `unit NAME` or `probe NAME`.
    pub check: String,
    /// Why, as a sentence part: `is failed`, `answered 503 at URL`.
    pub reason: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.check, self.reason)
    }
}

/// Why a boot was not marked successful: its health checks still failed after the wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootFailure {
    /// RFC 3339, UTC.
    pub time: String,
    /// The OS version that booted (the one rolled back).
    pub version: String,
    /// How long the gate waited.
    pub waited_seconds: u64,
    pub failures: Vec<Failure>,
}

impl BootFailure {
    /// One line: `health checks failed on 0.2.0 after 120 s: unit x.service is failed`.
    pub fn summary(&self) -> String {
        let list: Vec<String> = self.failures.iter().map(Failure::to_string).collect();
        format!(
            "health checks failed on {} after {} s: {}",
            self.version,
            self.waited_seconds,
            list.join("; ")
        )
    }
}

/// Reads the record a failed boot gate left, if any (an unreadable one counts as none).
pub fn read_boot_failure(path: &std::path::Path) -> Option<BootFailure> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}
