//! Printing a dry run's preview (`POST /tx/dry-run`) for people: the settings that would change,
//! the services that would restart, and a unified diff of each configuration file.

use serde_json::Value;
use std::fmt::Write;

/// The preview document the server answers with (declared once, in `api_types::preview`).
pub use api_types::preview::{Change, FilePlan, Preview, ServicePlan};

fn show(value: &Value) -> String {
    match value {
        Value::Null => "(unset)".to_string(),
        other => other.to_string(),
    }
}

/// Renders the preview as text. Unknown or missing fields are tolerated, so an older client
/// still prints what it understands from a newer server.
pub fn render(answer: &str) -> Result<String, serde_json::Error> {
    let preview: Preview = serde_json::from_str(answer)?;
    let mut text = String::new();
    if preview.changes.is_empty() {
        text.push_str("No setting would change.\n");
    } else {
        text.push_str("Settings that would change:\n");
        for change in &preview.changes {
            let _ = writeln!(
                text,
                "  {}: {} -> {}",
                change.key,
                show(&change.old),
                show(&change.new)
            );
        }
    }
    let restarting: Vec<&ServicePlan> = preview
        .services
        .iter()
        .filter(|s| s.would_restart)
        .collect();
    if restarting.is_empty() {
        text.push_str("No service would restart.\n");
    } else {
        text.push_str("Services that would restart:\n");
        for service in restarting {
            if service.restart_commands.is_empty() {
                let _ = writeln!(text, "  {}", service.name);
            } else {
                let _ = writeln!(
                    text,
                    "  {} ({})",
                    service.name,
                    service.restart_commands.join("; ")
                );
            }
        }
    }
    if preview.files.is_empty() {
        text.push_str("No configuration file would change.\n");
    } else {
        text.push_str("Configuration files that would change:\n");
        for file in &preview.files {
            text.push_str(&file.diff);
            if !file.diff.ends_with('\n') {
                text.push('\n');
            }
        }
    }
    text.push_str("Nothing was changed (dry run).\n");
    Ok(text)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn renders_every_part() {
        let answer = serde_json::json!({
            "changes": [{"key": "settings.ntp.time-servers", "old": ["a"], "new": ["b"]},
                        {"key": "settings.motd", "old": null, "new": "hi"}],
            "services": [{"name": "timesyncd", "restart-commands": ["systemctl try-restart x"],
                          "would-restart": true},
                         {"name": "motd", "restart-commands": [], "would-restart": false}],
            "files": [{"path": "/etc/x", "service": "timesyncd",
                       "diff": "--- /etc/x\n+++ /etc/x\n@@ -1 +1 @@\n-NTP=a\n+NTP=b\n"}],
            "something-new": 1
        })
        .to_string();
        let text = render(&answer).unwrap();
        assert!(text.contains("settings.ntp.time-servers: [\"a\"] -> [\"b\"]"));
        assert!(text.contains("settings.motd: (unset) -> \"hi\""));
        assert!(text.contains("timesyncd (systemctl try-restart x)"));
        assert!(!text.contains("  motd"));
        assert!(text.contains("+NTP=b"));
        assert!(text.ends_with("Nothing was changed (dry run).\n"));
    }

    #[test]
    fn an_empty_preview_says_so() {
        let text = render("{}").unwrap();
        assert!(text.contains("No setting would change."));
        assert!(text.contains("No configuration file would change."));
    }

    #[test]
    fn not_json_is_an_error() {
        assert!(render("<html>").is_err());
    }
}
