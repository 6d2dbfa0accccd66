//! `GET /status`: the node's state in one answer, for an operator without a shell. Four parts,
//! read at the same time, each on its own:
//!
//! | part     | read from                                              |
//! |----------|--------------------------------------------------------|
//! | `units`  | [`crate::units::list`]: counts by state, failed units with their last entries |
//! | `boot`   | `signpost status --json` (`--signpost-command`)        |
//! | `os`     | the os-release file (`--os-release`), as `GET /os`     |
//! | `update` | the update status the server keeps, as `GET /updates/status` |
//!
//! A part that cannot be read is `{"error": "..."}` in its place (`api_types::status::Part`):
//! no A/B disk on a development host, or no systemd to ask, leaves the other parts readable
//! and the answer a 200.

use crate::command::CommandLine;
use crate::error::ApiError;
use api_types::boot::BootState;
use api_types::status::{NodeStatus, Part, RunningOs, UnitsSummary};
use std::path::Path;
use std::time::Duration;

/// signpost's arguments (after any given with `--signpost-command`, such as `--disk`).
pub const SIGNPOST_STATUS_ARGS: &[&str] = &["status", "--json"];
/// How long `signpost status` may take.
pub const SIGNPOST_TIMEOUT: Duration = Duration::from_secs(10);

/// The A/B boot state, from `signpost status --json`.
pub async fn boot_state(signpost: &CommandLine) -> Result<BootState, ApiError> {
    let stdout = signpost
        .stdout(
            SIGNPOST_STATUS_ARGS,
            SIGNPOST_TIMEOUT,
            "signpost",
            "--signpost-command",
        )
        .await?;
    serde_json::from_slice(&stdout).map_err(|e| {
        let text = String::from_utf8_lossy(&stdout);
        let shown: String = text.trim().chars().take(200).collect();
        ApiError::internal(format!(
            "signpost's status output is not the JSON the API expects ({e}); it printed \
             {shown:?}. Is --signpost-command Ballast's signpost?"
        ))
    })
}

/// The running image, from the os-release file.
pub fn running_os(os_release: &Path) -> Result<RunningOs, ApiError> {
    let info = models::OsInfo::from_path(os_release).map_err(|e| {
        tracing::error!("{e}");
        ApiError::internal(format!(
            "cannot read the running version from the os-release file (--os-release): {e}"
        ))
    })?;
    Ok(RunningOs {
        pretty_name: info.pretty_name,
        variant_id: info.variant_id,
        version_id: info.version_id,
        build_id: info.build_id,
        arch: info.arch,
    })
}

/// A part from its outcome: the error's sentence in place of a document.
fn part<T>(result: Result<T, ApiError>) -> Part<T> {
    match result {
        Ok(value) => Part::Read(value),
        Err(e) => {
            tracing::warn!("a part of GET /status cannot be read: {}", e.message);
            Part::error(e.message)
        }
    }
}

/// Reads the four parts at the same time.
pub async fn read(state: &crate::server::AppState) -> NodeStatus {
    let (units, boot, update) = tokio::join!(
        crate::units::list(&state.node.systemctl, &state.journal),
        boot_state(&state.node.signpost),
        state.updates.status(),
    );
    assemble(units.map(UnitsSummary::of), boot, update, &state.os_release)
}

/// The document from its parts, as read (the os-release file is read here): for a caller
/// that reads the units anyway (the support bundle), so systemctl runs once.
pub fn assemble(
    units: Result<UnitsSummary, ApiError>,
    boot: Result<BootState, ApiError>,
    update: Result<api_types::update::UpdateStatus, ApiError>,
    os_release: &Path,
) -> NodeStatus {
    NodeStatus {
        units: part(units),
        boot: part(boot),
        os: part(running_os(os_release)),
        update: part(update),
    }
}

/// The programs `GET /units` and `GET /status` run.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// `--systemctl`.
    pub systemctl: CommandLine,
    /// `--signpost-command`.
    pub signpost: CommandLine,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            systemctl: CommandLine::from_static("systemctl"),
            signpost: CommandLine::from_static("signpost"),
        }
    }
}
