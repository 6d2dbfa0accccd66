//! Shared by the test migration programs of the migrator's tests (not installed into images).
//!
//! Environment, set by the tests:
//! * `BALLAST_TEST_MIGRATION_NAP_MS`: pause between writes, so that the crash test can kill the
//!   migrator while a migration is half done;
//! * `BALLAST_TEST_MIGRATION_LOG`: a file each program appends one line to when it starts:
//!   its argv\[0\] and what `/proc/self/exe` names (a sealed memory file shows as
//!   `/memfd:<name>`), so the tests can tell what ran and from where.
#![forbid(unsafe_code)]

use migration_helpers::{migrate, Custom, Migration, Result, Store};
use std::io::Write;
use std::process::ExitCode;

fn nap(_: &mut Store) -> Result<()> {
    if let Some(ms) = std::env::var("BALLAST_TEST_MIGRATION_NAP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    Ok(())
}

/// A step that pauses (see the module documentation).
pub const NAP: Custom = Custom {
    forward: nap,
    backward: nap,
};

fn record_start() {
    let Some(log) = std::env::var_os("BALLAST_TEST_MIGRATION_LOG") else {
        return;
    };
    let arg0 = std::env::args().next().unwrap_or_default();
    let exe = std::fs::read_link("/proc/self/exe")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("the test's log file can be opened");
    writeln!(file, "{arg0} {exe}").expect("the test's log file can be written");
}

/// The whole `main` of a test migration.
pub fn run(migration: impl Migration) -> ExitCode {
    record_start();
    migrate(migration)
}
