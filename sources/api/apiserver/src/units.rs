//! `GET /units`: every systemd unit's state, read with `systemctl list-units --all
//! --output=json`, and for each failed unit its newest journal entries, read with the journal
//! reader of `GET /logs` ([`crate::logs::read`]).
//!
//! systemctl prints one object per unit (`unit`, `load`, `active`, `sub`, `description`;
//! systemd 252 and later); fields it may add are ignored. The program is `--systemctl` (split
//! on spaces, so a test can give `systemctl --user`). systemctl that cannot be started is a
//! 503 naming the flag; one that fails (no systemd to talk to) or prints something else is a
//! 500 quoting it. A failed unit whose journal cannot be read still appears, with
//! `last_log_error` saying why.

use crate::command::CommandLine;
use crate::error::ApiError;
use crate::logs::{JournalConfig, LogFilter};
use api_types::status::{Unit, FAILED_UNIT_LOG_LINES};
use serde::Deserialize;
use std::time::Duration;

/// How long `systemctl list-units` may take.
pub const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(10);
/// The failed units whose journal is read, at most: more failures than this are listed
/// without their entries (the first ones, in systemctl's order, get them).
pub const MAX_FAILED_WITH_LOG: usize = 32;

/// systemctl's arguments: every unit systemd has loaded, whatever its state, as JSON.
pub const LIST_UNITS_ARGS: &[&str] = &["list-units", "--all", "--output=json", "--no-pager"];

/// One object of `systemctl list-units --output=json`.
#[derive(Debug, Deserialize)]
struct ListedUnit {
    unit: String,
    load: String,
    active: String,
    sub: String,
    #[serde(default)]
    description: String,
}

/// The units in systemctl's JSON, in its order.
pub fn parse_list_units(stdout: &[u8]) -> Result<Vec<Unit>, String> {
    let listed: Vec<ListedUnit> = serde_json::from_slice(stdout).map_err(|e| {
        let text = String::from_utf8_lossy(stdout);
        let shown: String = text.trim().chars().take(200).collect();
        format!(
            "systemctl's list-units output is not the JSON the API expects ({e}); it printed \
             {shown:?}. Is --systemctl a systemctl of systemd 252 or later?"
        )
    })?;
    Ok(listed
        .into_iter()
        .map(|u| Unit {
            name: u.unit,
            load_state: u.load,
            active_state: u.active,
            sub_state: u.sub,
            description: u.description,
            last_log: None,
            last_log_error: None,
        })
        .collect())
}

/// The journal query for a failed unit's newest entries.
pub fn failed_unit_filter(unit: &str) -> LogFilter {
    LogFilter {
        units: vec![unit.to_string()],
        priority: None,
        since: None,
        until: None,
        boot: None,
        grep: None,
        lines: FAILED_UNIT_LOG_LINES,
        follow: false,
    }
}

/// Every unit, each failed one with its newest journal entries.
pub async fn list(systemctl: &CommandLine, journal: &JournalConfig) -> Result<Vec<Unit>, ApiError> {
    let stdout = systemctl
        .stdout(
            LIST_UNITS_ARGS,
            SYSTEMCTL_TIMEOUT,
            "systemctl",
            "--systemctl",
        )
        .await?;
    let mut units = parse_list_units(&stdout).map_err(ApiError::internal)?;
    let reads = units
        .iter_mut()
        .filter(|u| u.is_failed())
        .take(MAX_FAILED_WITH_LOG)
        .map(|unit| async move {
            match crate::logs::read(journal, &failed_unit_filter(&unit.name)).await {
                Ok(entries) => unit.last_log = Some(entries),
                Err(e) => unit.last_log_error = Some(e.message),
            }
        });
    futures::future::join_all(reads).await;
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemctl_json_becomes_units() {
        // As systemd 252's systemctl prints it.
        let out = br#"[{"unit":"-.mount","load":"loaded","active":"active","sub":"mounted","description":"Root Mount"},{"unit":"boom.service","load":"loaded","active":"failed","sub":"failed","description":"A unit that fails"},{"unit":"x.service","load":"not-found","active":"inactive","sub":"dead","description":"x.service","extra":1}]"#;
        let units = parse_list_units(out).unwrap();
        assert_eq!(units.len(), 3);
        assert_eq!(units[1].name, "boom.service");
        assert!(units[1].is_failed());
        assert_eq!(units[2].load_state, "not-found");
        let e = parse_list_units(b"UNIT LOAD ACTIVE SUB").unwrap_err();
        assert!(e.contains("--systemctl"), "{e}");
    }

    #[test]
    fn a_failed_unit_gets_its_newest_entries() {
        let args = failed_unit_filter("boom.service").journalctl_args(None);
        assert!(args.contains(&"--unit=boom.service".into()));
        assert!(args.contains(&format!("--lines={FAILED_UNIT_LOG_LINES}").into()));
        assert!(!args.contains(&"--follow".into()));
    }
}
