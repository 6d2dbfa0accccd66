//! `status`: the node's state at a glance, from `GET /status`.
//!
//! The text puts what needs attention first: each failed unit with its last journal entries,
//! then how many units are active, the A/B boot state, the running version and the update
//! state ([`format_status`]). A part the server could not read is shown as `<part>: cannot be
//! read: <reason>`, and the rest is still printed. With `--json` the server's document is
//! printed as it is (`api_types::status::NodeStatus`).

use crate::error::Result;
use crate::logs::format_entry;
use crate::output::{print_document, Layout};
use crate::{parse_document, request};
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

/// The document of `GET /status` (declared once, in `api_types::status`).
pub use api_types::status::{NodeStatus, Part, Unit, UnitsSummary};

/// The route this command reads.
pub const STATUS_URI: &str = "/status";

/// Fetches the node's status.
pub async fn fetch(socket_path: impl AsRef<Path>) -> Result<NodeStatus> {
    let body = request(socket_path, STATUS_URI, "GET", None).await?;
    parse_document("the status document", body.as_bytes())
}

/// Prints the node's status to `out`: text, or the server's JSON with `json`.
pub async fn status<W: Write>(
    socket_path: impl AsRef<Path>,
    json: bool,
    out: &mut W,
) -> Result<()> {
    let status = fetch(socket_path).await?;
    print_document(out, &status, json, Layout::Document, format_status)
}

/// The status as text for a person (see the module's documentation).
pub fn format_status(status: &NodeStatus) -> String {
    let mut out = String::new();
    match status.units.as_result() {
        Ok(units) => format_units(&mut out, units),
        Err(e) => line(&mut out, format!("Units: cannot be read: {e}")),
    }
    match status.boot.as_result() {
        Ok(boot) => {
            let inactive = boot.sets.iter().find(|s| s.set == boot.inactive);
            let mut text = format!(
                "Boot: running set {}, next boot {}; set {}: {}",
                boot.active,
                boot.next,
                boot.inactive,
                match inactive {
                    Some(s) if s.bootable => format!(
                        "bootable (priority {}, tries left {}, successful {})",
                        s.priority,
                        s.tries_left,
                        yes_no(s.successful)
                    ),
                    Some(_) => "not bootable".to_string(),
                    None => "unknown".to_string(),
                }
            );
            if !boot.grub_env.in_sync {
                text.push_str("; GRUB environment NOT in sync with the GPT");
            }
            line(&mut out, text);
        }
        Err(e) => line(&mut out, format!("Boot: cannot be read: {e}")),
    }
    match status.os.as_result() {
        Ok(os) => line(
            &mut out,
            format!(
                "Version: {} (variant {}, build {}, {})",
                os.version_id, os.variant_id, os.build_id, os.arch
            ),
        ),
        Err(e) => line(&mut out, format!("Version: cannot be read: {e}")),
    }
    match status.update.as_result() {
        Ok(update) => {
            let mut text = format!("Update: {}", update.update_state);
            if let Some(chosen) = &update.chosen_update {
                let _ = write!(text, "; next version {}", chosen.version);
            }
            if let Some(staged) = &update.staging_partition {
                let _ = write!(
                    text,
                    "; staged {}{}",
                    staged.image.version,
                    if staged.next_to_boot {
                        " (boots next)"
                    } else {
                        ""
                    }
                );
            }
            if let Some(failed) = &update.failed_update {
                let _ = write!(text, "; rolled back from {}", failed.version);
                if let Some(health) = &failed.health {
                    let _ = write!(text, " ({health})");
                }
            }
            if let Some(cmd) = &update.most_recent_command {
                let _ = write!(
                    text,
                    "; last action {} {:?} at {}",
                    cmd.cmd_type, cmd.cmd_status, cmd.timestamp
                );
            }
            line(&mut out, text);
        }
        Err(e) => line(&mut out, format!("Update: cannot be read: {e}")),
    }
    out
}

fn format_units(out: &mut String, units: &UnitsSummary) {
    for unit in &units.failed {
        line(
            out,
            format!(
                "FAILED {} ({}/{}): {}",
                unit.name, unit.load_state, unit.sub_state, unit.description
            ),
        );
        match (&unit.last_log, &unit.last_log_error) {
            (_, Some(e)) => line(out, format!("    journal cannot be read: {e}")),
            (Some(entries), None) if !entries.is_empty() => {
                for entry in entries {
                    line(out, format!("    {}", format_entry(entry)));
                }
            }
            _ => line(out, "    no journal entries".to_string()),
        }
    }
    let failed = units.failed.len();
    line(
        out,
        format!(
            "{} units active ({} loaded, {failed} failed)",
            units.active(),
            units.total
        ),
    );
}

fn line(out: &mut String, text: String) {
    out.push_str(&text);
    out.push('\n');
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_types::logs::LogEntry;
    use std::collections::BTreeMap;

    #[test]
    fn a_rollback_names_the_health_checks_that_failed() {
        let update: api_types::update::UpdateStatus = serde_json::from_value(serde_json::json!({
            "update_state": "Idle",
            "available_updates": [],
            "chosen_update": null,
            "active_partition": {"image": {"arch": "x86_64", "version": "0.1.0",
                                           "variant": "dev"}, "next_to_boot": true},
            "staging_partition": null,
            "most_recent_command": null,
            "failed_update": {"version": "0.1.2", "set": "B",
                              "health": "health checks failed on 0.1.2 after 120 s: unit app.service is failed"},
        }))
        .unwrap();
        let status = NodeStatus {
            units: Part::error("no systemd"),
            boot: Part::error("no disk"),
            os: Part::error("no os-release"),
            update: Part::Read(update),
        };
        let text = format_status(&status);
        assert!(
            text.contains(
                "Update: Idle; rolled back from 0.1.2 (health checks failed on 0.1.2 after \
                 120 s: unit app.service is failed)"
            ),
            "{text}"
        );
    }

    #[test]
    fn failed_units_come_first_and_broken_parts_say_why() {
        let failed = Unit {
            name: "boom.service".into(),
            load_state: "loaded".into(),
            active_state: "failed".into(),
            sub_state: "failed".into(),
            description: "Boom".into(),
            last_log: Some(vec![LogEntry {
                timestamp: "2026-12-07T06:53:05.000000Z".into(),
                boot_id: "b".into(),
                unit: Some("boom.service".into()),
                identifier: Some("boom".into()),
                pid: Some(7),
                priority: Some(3),
                message: "it broke".into(),
            }]),
            last_log_error: None,
        };
        let status = NodeStatus {
            units: Part::Read(UnitsSummary {
                total: 3,
                by_active_state: BTreeMap::from([("active".into(), 2), ("failed".into(), 1)]),
                failed: vec![failed],
            }),
            boot: Part::error("no disk"),
            os: Part::error("no os-release"),
            update: Part::error("no updater"),
        };
        let text = format_status(&status);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "FAILED boom.service (loaded/failed): Boom");
        assert_eq!(
            lines[1],
            "    2026-12-07T06:53:05.000000Z boom[7]: it broke"
        );
        assert_eq!(lines[2], "2 units active (3 loaded, 1 failed)");
        assert_eq!(lines[3], "Boot: cannot be read: no disk");
        assert_eq!(lines[4], "Version: cannot be read: no os-release");
        assert_eq!(lines[5], "Update: cannot be read: no updater");
    }
}
