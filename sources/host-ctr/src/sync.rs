//! `host-ctr sync`: the restart command of the `host-containers` service. After the renderer
//! has written [`constants::HOST_CTR_CONFIG`], it brings each `host-containers@NAME.service`
//! in line with the settings: started when enabled, restarted when its source, superpowered
//! flag or user data changed since it was started, stopped when disabled.
//!
//! What each unit was started with is kept in [`APPLIED_DIR`] (on tmpfs: every boot starts
//! from nothing, and the boot's render starts every enabled container). The `systemctl` calls
//! do not wait (`--no-block`): at boot the renderer runs before `configured.target`, which the
//! units are ordered after.

use crate::config::{ContainerConfig, HostCtrConfig};
use crate::error::{self, Result};
use snafu::ResultExt;
use std::path::Path;
use std::process::Command;

/// Where `sync` remembers what each running unit was started with.
pub const APPLIED_DIR: &str = "/run/host-ctr/applied";

/// What `sync` does to one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Enabled and unchanged: start it if it is not running (a no-op when it is).
    Start,
    /// Enabled and changed: replace the running container.
    Restart,
    /// Disabled or without a source.
    Stop,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Restart => "restart",
            Action::Stop => "stop",
        }
    }
}

/// The unit that runs host container `name`.
pub fn unit_name(name: &str) -> String {
    constants::HOST_CONTAINER_UNIT_TEMPLATE.replacen("@.", &format!("@{name}."), 1)
}

/// What identifies one start of a container: a change in any of these replaces it.
fn fingerprint(container: &ContainerConfig) -> String {
    format!(
        "source={}\nsuperpowered={}\nuser-data={}\n",
        container.source.as_deref().unwrap_or(""),
        container.superpowered,
        container.user_data.as_deref().unwrap_or("")
    )
}

/// Decides the action for one container, given what it was last started with.
pub fn decide(container: &ContainerConfig, applied: Option<&str>) -> Action {
    if !container.enabled || container.source.is_none() {
        Action::Stop
    } else if applied.is_some_and(|a| a != fingerprint(container)) {
        Action::Restart
    } else {
        Action::Start
    }
}

/// The node's systemctl, by its full path as the other restart commands name it.
const SYSTEMCTL: &str = "/usr/bin/systemctl";

fn systemctl(action: Action, unit: &str) -> Result<()> {
    let command = format!("{SYSTEMCTL} --no-block {} {unit}", action.verb());
    let out = Command::new(SYSTEMCTL)
        .args(["--no-block", action.verb(), unit])
        .output()
        .map_err(|e| error::Error::Systemctl {
            command: command.clone(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(error::Error::Systemctl {
            command,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Applies `config` to the units; `applied_dir` holds the fingerprints. Every container is
/// tried; the first error is returned at the end.
pub fn sync(config: &HostCtrConfig, applied_dir: &Path) -> Result<Vec<(String, Action)>> {
    std::fs::create_dir_all(applied_dir).context(error::IoSnafu {
        action: "create",
        path: applied_dir,
    })?;
    let mut done = Vec::new();
    let mut first_error = None;
    for (name, container) in &config.containers {
        let path = applied_dir.join(name);
        let applied = std::fs::read_to_string(&path).ok();
        let action = decide(container, applied.as_deref());
        let unit = unit_name(name);
        tracing::info!("host container {name}: {} {unit}", action.verb());
        let result = systemctl(action, &unit).and_then(|()| match action {
            Action::Stop => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(error::Error::Io {
                    action: "remove".into(),
                    path: path.clone(),
                    source: e,
                }),
                _ => Ok(()),
            },
            Action::Start | Action::Restart => std::fs::write(&path, fingerprint(container))
                .context(error::IoSnafu {
                    action: "write",
                    path: &path,
                }),
        });
        match result {
            Ok(()) => done.push((name.clone(), action)),
            Err(e) => {
                tracing::error!("host container {name}: {e}");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(enabled: bool, source: Option<&str>) -> ContainerConfig {
        ContainerConfig {
            source: source.map(str::to_string),
            enabled,
            superpowered: true,
            user_data: None,
        }
    }

    #[test]
    fn unit_names() {
        assert_eq!(unit_name("admin"), "host-containers@admin.service");
    }

    #[test]
    fn decisions() {
        let on = container(true, Some("r/a:1"));
        assert_eq!(decide(&on, None), Action::Start);
        assert_eq!(decide(&on, Some(&fingerprint(&on))), Action::Start);
        let moved = container(true, Some("r/a:2"));
        assert_eq!(decide(&moved, Some(&fingerprint(&on))), Action::Restart);
        assert_eq!(
            decide(&container(false, Some("r/a:1")), Some(&fingerprint(&on))),
            Action::Stop
        );
        assert_eq!(decide(&container(true, None), None), Action::Stop);
    }
}
