//! `host-ctr bootstrap`: runs the bootstrap containers (`settings.bootstrap-containers`) once
//! each, in name order, at boot: after the settings are applied and before
//! `configured.target` ([`constants::BOOTSTRAP_CONTAINERS_UNIT`]).
//!
//! A bootstrap container is superpowered (every capability, the host's PID namespace and
//! devices) and sees the host's root at [`constants::HOST_ROOTFS_INSIDE`]; the root itself is
//! read-only, the data partition below it (`/local`) is writable. Its own directory (with its
//! user data) is at `/.ballast/bootstrap-containers/NAME`. It lives in its own containerd
//! namespace ([`constants::BOOTSTRAP_CONTAINERD_NAMESPACE`]), so a bootstrap and a host
//! container may share a name.
//!
//! * `mode = "once"`: after it exits 0, its mode is set to `off` through the API, so the next
//!   boot skips it. A failed one stays `once` and runs again at the next boot.
//! * `essential = true`: a failure (no source, no pull within [`PULL_BUDGET`], a non-zero exit)
//!   ends the run with an error, the unit fails and `configured.target`, which requires it, is
//!   never reached: the boot is not marked successful, and an update is rolled back by the
//!   boot deadline. The containers after it do not run.
//! * Not essential: a failure is one error line in the journal and the next container runs.

use crate::config::{BootstrapConfig, BootstrapMode, HostCtrConfig};
use crate::error::{self, Result};
use crate::pull;
use crate::run::{launch, remove, Launch, Paths};
use crate::spec::Kind;
use ctr_client::Containerd;
use std::time::{Duration, Instant};

/// How long a bootstrap container's pull is retried before it counts as failed.
pub const PULL_BUDGET: Duration = Duration::from_secs(120);

/// First and longest wait between two pull attempts.
const FIRST_RETRY: Duration = Duration::from_secs(2);
const LONGEST_RETRY: Duration = Duration::from_secs(20);

/// What happened to one bootstrap container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    /// Mode `off`: skipped.
    Skipped,
    /// Exited 0.
    Succeeded,
    /// Failed (not essential, so the run went on).
    Failed(String),
}

/// The bootstrap containers that run this boot, in the order they run.
pub fn due(config: &HostCtrConfig) -> Vec<(&str, &BootstrapConfig)> {
    config
        .bootstrap
        .iter()
        .filter(|(_, c)| c.mode != BootstrapMode::Off)
        .map(|(name, c)| (name.as_str(), c))
        .collect()
}

/// Runs every due bootstrap container in name order (see the module docs); `paths.storage`
/// is where their directories are made. Returns what happened to each, or the first
/// essential failure.
pub async fn run_all(paths: &Paths) -> Result<Vec<(String, Ran)>> {
    let config = HostCtrConfig::load(&paths.config)?;
    let due = due(&config);
    if due.is_empty() {
        tracing::info!("no bootstrap containers to run (settings.bootstrap-containers)");
    }
    let mut report = Vec::new();
    for (name, container) in due {
        tracing::info!(
            "bootstrap container {name}: running ({}{})",
            if container.mode == BootstrapMode::Once {
                "once"
            } else {
                "always"
            },
            if container.essential {
                ", essential"
            } else {
                ""
            }
        );
        let outcome = match run_one(name, container, &config, paths).await {
            Ok(0) => Ok(()),
            Ok(status) => Err(format!("it exited with status {status}")),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => {
                tracing::info!("bootstrap container {name} succeeded");
                if container.mode == BootstrapMode::Once {
                    turn_off(name, paths).await;
                }
                report.push((name.to_string(), Ran::Succeeded));
            }
            Err(message) if container.essential => {
                return error::EssentialFailedSnafu { name, message }.fail();
            }
            Err(message) => {
                tracing::error!(
                    "bootstrap container {name} failed: {message}; it is not essential, so the \
                     boot goes on"
                );
                report.push((name.to_string(), Ran::Failed(message)));
            }
        }
    }
    for (name, c) in &config.bootstrap {
        if c.mode == BootstrapMode::Off {
            report.push((name.clone(), Ran::Skipped));
        }
    }
    Ok(report)
}

/// Pulls (retrying for [`PULL_BUDGET`]) and runs one bootstrap container to its end; its exit
/// status.
async fn run_one(
    name: &str,
    container: &BootstrapConfig,
    config: &HostCtrConfig,
    paths: &Paths,
) -> Result<u32> {
    let source = container
        .source
        .as_deref()
        .ok_or_else(|| error::Error::BootstrapNoSource {
            name: name.to_string(),
        })?;
    let namespace = Kind::Bootstrap.namespace();
    let started = Instant::now();
    let mut wait = FIRST_RETRY;
    let (containerd, pulled) = loop {
        let attempt = async {
            let containerd = Containerd::connect(&paths.socket, namespace).await?;
            let pulled = pull::pull(&containerd, name, source, config).await?;
            Ok::<_, error::Error>((containerd, pulled))
        };
        match attempt.await {
            Ok(done) => break done,
            Err(e) if started.elapsed() + wait < PULL_BUDGET => {
                tracing::warn!(
                    "bootstrap container {name}: cannot pull {source}: {e}; retrying in {} s",
                    wait.as_secs()
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(LONGEST_RETRY);
            }
            Err(e) => return Err(e),
        }
    };

    let launched = launch(
        &containerd,
        paths,
        &pulled,
        &Launch {
            kind: Kind::Bootstrap,
            name,
            superpowered: true,
            user_data: container.user_data.as_deref(),
        },
    )
    .await?;
    tracing::info!(
        "bootstrap container {name} started {} (pid {launched})",
        pulled.name
    );
    let status = containerd.wait_task(name).await;
    remove(&containerd, name).await?;
    Ok(status?)
}

/// Sets the mode of a `once` container that succeeded to `off`. A failure is logged: the
/// container then runs again at the next boot, which is what `once` promises not to do, so
/// the line says so.
async fn turn_off(name: &str, paths: &Paths) {
    let mut inner = serde_json::Map::new();
    inner.insert(name.to_string(), serde_json::json!({"mode": "off"}));
    let mut settings = serde_json::Map::new();
    settings.insert(
        "bootstrap-containers".to_string(),
        serde_json::Value::Object(inner),
    );
    let input = apiclient::set::SettingsInput::Json(settings);
    match apiclient::set::set(&paths.api_socket, &input).await {
        Ok(_) => tracing::info!(
            "bootstrap container {name} ran once: settings.bootstrap-containers.{name}.mode is \
             now off"
        ),
        Err(e) => tracing::error!(
            "bootstrap container {name} ran once, but its mode could not be set to off ({e}); \
             it will run again at the next boot"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Paths under `dir`, with a configuration at `dir/host-ctr.toml`, where no containerd
    /// and no API server listens.
    fn test_paths(dir: &Path) -> Paths {
        Paths {
            config: dir.join("host-ctr.toml"),
            storage: dir.join("storage"),
            fifos: dir.join("fifos"),
            socket: dir.join("no-containerd.sock"),
            api_socket: dir.join("no-api.sock"),
            namespace: String::new(),
            runtime_capabilities: None,
        }
    }

    #[test]
    fn only_once_and_always_are_due_in_name_order() {
        let config = HostCtrConfig::parse(
            r#"
            [bootstrap.zeta]
            mode = "always"
            [bootstrap.alpha]
            mode = "once"
            [bootstrap.middle]
            mode = "off"
            [bootstrap.unset]
            "#,
        )
        .unwrap();
        let names: Vec<&str> = due(&config).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["alpha", "zeta"]);
    }

    #[tokio::test]
    async fn an_essential_container_without_a_source_fails_the_run_and_stops_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("host-ctr.toml"),
            "[bootstrap.a]\nmode = \"once\"\nessential = true\n[bootstrap.b]\nmode = \"once\"\n",
        )
        .unwrap();
        let paths = test_paths(dir.path());
        let err = run_all(&paths).await.unwrap_err().to_string();
        assert!(
            err.contains("Essential bootstrap container 'a' failed"),
            "{err}"
        );
        assert!(
            err.contains("settings.bootstrap-containers.a.source"),
            "{err}"
        );
        assert!(!dir.path().join("storage/b").exists());
    }

    #[tokio::test]
    async fn a_failed_container_that_is_not_essential_lets_the_next_one_run() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("host-ctr.toml"),
            "[bootstrap.a]\nmode = \"always\"\n[bootstrap.b]\nmode = \"always\"\n\
             [bootstrap.c]\nmode = \"off\"\n",
        )
        .unwrap();
        let paths = test_paths(dir.path());
        let report = run_all(&paths).await.unwrap();
        assert_eq!(report.len(), 3, "{report:?}");
        assert!(matches!(&report[0], (n, Ran::Failed(m)) if n == "a" && m.contains("no source")));
        assert!(matches!(&report[1], (n, Ran::Failed(_)) if n == "b"));
        assert_eq!(report[2], ("c".to_string(), Ran::Skipped));
    }
}
