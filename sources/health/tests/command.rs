//! Command probes against the real parts on the build host: a containerd of the test's own
//! (Debian's, with runc) running a small host container made of host files, started with
//! host-ctr's own runtime spec. A command that exits 0 passes; one that exits 3 fails with its
//! status; one that outlives its timeout is killed and fails in time; a missing or stopped
//! container fails, naming it; so does a containerd that is not there.
//!
//! Needs root (containerd mounts overlayfs and runs runc); skipped with a message otherwise,
//! and when containerd or runc is missing (under CI that panics instead).

use ctr_client::Containerd;
use health::{Checker, HostContainerd};
use serde_json::json;
use std::time::{Duration, Instant};
use testserver::containerd::{self, TestContainerd};

/// The host container probed.
const TARGET: &str = "probed";

// Scripts the probes run inside the container (not on the build host: as constants, the
// host-tools scan, which reads literal `sh -c` lines as host programs, leaves them alone).
const SAME_ENV: &str = "[ \"$PROBE_ENV\" = from-image ]";
const EXIT_0: &str = "exit 0";
const EXIT_3: &str = "exit 3";
const FLAG_SET: &str = "[ -e /.ballast/host-containers/probed/healthy ]";

/// Removes the container (task included) when dropped, so that a failing check leaves no
/// container or shim running on the host.
struct RemoveContainer<'a> {
    client: &'a Containerd,
    runtime: &'a tokio::runtime::Runtime,
}

impl Drop for RemoveContainer<'_> {
    fn drop(&mut self) {
        let _ = self
            .runtime
            .block_on(host_ctr::run::remove(self.client, TARGET));
    }
}

fn settings(value: serde_json::Value) -> models::HealthSettings {
    models::parse_settings(&json!({ "health": value }))
        .unwrap()
        .health
        .unwrap()
}

#[test]
fn commands_run_in_a_host_container_and_pass_on_exit_0() {
    if !containerd::ready(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let containerd = TestContainerd::start(&dir.path().join("containerd"));
    let namespace = format!("health-test-{}", std::process::id());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime.block_on(async {
        Containerd::connect(&containerd.socket, &namespace)
            .await
            .unwrap()
    });
    let _remove = RemoveContainer {
        client: &client,
        runtime: &runtime,
    };
    // Every host container gets the API socket bound in: one that is never answered.
    let api = dir.path().join("api.sock");
    let _api_listener = std::os::unix::net::UnixListener::bind(&api).unwrap();
    runtime.block_on(containerd::start_container(
        &client,
        TARGET,
        &["/bin/sleep", "1000"],
        &["PROBE_ENV=from-image"],
        dir.path(),
        &api,
    ));
    let checker = Checker {
        containerd: HostContainerd {
            socket: containerd.socket.clone(),
            namespace: namespace.clone(),
        },
        ..Checker::default()
    };

    let checks = settings(json!({"probes": {
        // The container's environment is the command's.
        "passes": {"command": ["sh", "-c", SAME_ENV], "container": TARGET},
        "exits-3": {"command": ["sh", "-c", EXIT_3], "container": TARGET},
        "slow": {"command": ["sleep", "30"], "container": TARGET, "timeout": "2s"},
        "missing": {"command": ["true"], "container": "nope"},
        "no-program": {"command": ["/no/such/program"], "container": TARGET},
        "no-container": {"command": ["true"]},
        // The longest name a probe may have, with the `-` arrangements containerd's ids refuse.
        "a--b-": {"command": ["sh", "-c", EXIT_0], "container": TARGET},
        &"x".repeat(76): {"command": ["sh", "-c", EXIT_0], "container": TARGET},
    }}));
    let started = Instant::now();
    let report = checker.evaluate(&checks);
    let took = started.elapsed();
    let log = containerd.log_text();
    let reason = |name: &str| -> Option<String> {
        report
            .failures
            .iter()
            .find(|f| f.check == format!("probe {name}"))
            .map(|f| f.reason.clone())
    };
    for failure in &report.failures {
        println!("{failure}");
    }
    assert_eq!(report.checks, 8);
    assert_eq!(reason("passes"), None, "{report:?}\n{log}");
    assert_eq!(reason("a--b-"), None, "{report:?}");
    assert_eq!(reason(&"x".repeat(76)), None, "{report:?}");
    let exits = reason("exits-3").unwrap();
    assert!(
        exits.contains("exited with status 3") && exits.contains(TARGET),
        "{exits}"
    );
    let slow = reason("slow").unwrap();
    assert!(slow.contains("did not finish within 2 s"), "{slow}");
    // The slow command was killed at its timeout, not waited for.
    assert!(took < Duration::from_secs(20), "{took:?}");
    let missing = reason("missing").unwrap();
    assert!(
        missing.contains("there is no host container 'nope'"),
        "{missing}"
    );
    assert!(reason("no-program").is_some(), "{report:?}");
    let no_container = reason("no-container").unwrap();
    assert!(
        no_container.contains("settings.health.probes.no-container.container"),
        "{no_container}"
    );

    // The boot gate, the real health-gate program: a command probe that fails keeps the boot
    // from being marked successful and is recorded; once it passes, the gate lets the boot go.
    let server = testserver::TestServer::start();
    let flag = dir.path().join("storage/healthy");
    let (status, text) = server.raw(
        "PATCH",
        "/settings?tx=gate",
        Some(
            &json!({"health": {"boot-wait": "2s", "probes": {"app": {
                "command": ["sh", "-c", FLAG_SET],
                "container": TARGET}}}})
            .to_string(),
        ),
    );
    assert_eq!(status, 204, "{text}");
    let (status, text) = server.raw("POST", "/tx/commit_and_apply?tx=gate", None);
    assert_eq!(status, 200, "{text}");
    let gate = testserver::build_workspace_bin("health", "health-gate");
    let record = dir.path().join("boot-failure.json");
    let run_gate = || {
        std::process::Command::new(&gate)
            .arg("--socket-path")
            .arg(&server.socket)
            .arg("--containerd-socket")
            .arg(&containerd.socket)
            .args(["--containerd-namespace", &namespace, "--interval", "1"])
            .arg("--failure-file")
            .arg(&record)
            .output()
            .unwrap()
    };
    let out = run_gate();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr.contains("probe app exited with status 1"),
        "{stderr}"
    );
    let failure = health::read_boot_failure(&record).unwrap();
    assert_eq!(failure.failures[0].check, "probe app");
    println!("{}", stderr.trim());
    std::fs::write(&flag, "").unwrap();
    let out = run_gate();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!record.exists());

    // A stopped container fails its probes, saying so.
    runtime.block_on(async {
        client.kill_task(TARGET, 9).await.unwrap();
        client.wait_task(TARGET).await.unwrap();
    });
    let report = checker.evaluate(&settings(json!({"probes": {
        "passes": {"command": ["true"], "container": TARGET},
    }})));
    let stopped = &report.failures[0].reason;
    assert!(stopped.contains("is not running"), "{stopped}");
    println!("probe passes {stopped}");

    // A containerd that is not there is a clear failure too.
    let gone = Checker {
        containerd: HostContainerd {
            socket: dir.path().join("no-containerd.sock"),
            namespace,
        },
        ..Checker::default()
    };
    let report = gone.evaluate(&settings(json!({"probes": {
        "passes": {"command": ["true"], "container": TARGET, "timeout": "2s"},
    }})));
    let unreachable = &report.failures[0].reason;
    assert!(unreachable.contains("host containerd"), "{unreachable}");
    println!("probe passes {unreachable}");
}
