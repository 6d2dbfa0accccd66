//! The evaluator against the real things: a systemd user manager of the test's own
//! (`systemctl --user is-active`) and HTTP servers on loopback that answer 200, 503 or not
//! in time. Without a user manager on this host the unit checks are skipped with a notice.

use health::{Checker, Failure};
use models::HealthSettings;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A one-thread HTTP server on loopback answering every request with `status` after `delay`.
fn http_server(status: u16, delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            std::thread::sleep(delay);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    format!("http://127.0.0.1:{port}/healthz")
}

fn settings(value: serde_json::Value) -> HealthSettings {
    models::parse_settings(&json!({ "health": value }))
        .unwrap()
        .health
        .unwrap()
}

#[test]
fn probes_pass_on_2xx_and_fail_naming_the_probe_and_why() {
    let ok = http_server(200, Duration::ZERO);
    let sick = http_server(503, Duration::ZERO);
    let slow = http_server(200, Duration::from_secs(3));
    // A port nothing listens on: bind one and let it go.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}/", l.local_addr().unwrap().port())
    };
    let checks = settings(json!({"probes": {
        "ok": {"url": ok},
        "sick": {"url": sick},
        "slow": {"url": slow, "timeout": "1s"},
        "closed": {"url": closed},
        "nourl": {"timeout": "1s"}
    }}));
    let started = Instant::now();
    let report = Checker::default().evaluate(&checks);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout was not kept"
    );
    assert_eq!(report.checks, 5);
    let by_name = |name: &str| -> Option<Failure> {
        report
            .failures
            .iter()
            .find(|f| f.check == format!("probe {name}"))
            .cloned()
    };
    assert!(by_name("ok").is_none(), "{report:?}");
    assert!(
        by_name("sick").unwrap().reason.contains("answered 503"),
        "{report:?}"
    );
    assert!(
        by_name("slow").unwrap().reason.contains("within 1 s"),
        "{report:?}"
    );
    assert!(
        by_name("closed")
            .unwrap()
            .reason
            .contains("could not reach"),
        "{report:?}"
    );
    assert!(
        by_name("nourl")
            .unwrap()
            .reason
            .contains("neither a url nor a command"),
        "{report:?}"
    );
    let summary = report.summary();
    assert!(
        summary.starts_with("4 of 5 health checks failed: "),
        "{summary}"
    );

    // No checks at all is healthy.
    assert!(Checker::default()
        .evaluate(&HealthSettings::default())
        .healthy());
}

#[test]
fn units_must_be_active_as_systemctl_says() {
    let Some(manager) = testserver::systemd::UserManager::start() else {
        eprintln!("NOTICE: no systemd user manager here; unit checks not run");
        return;
    };
    manager.add_unit(
        "up.service",
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n",
    );
    manager.add_unit(
        "down.service",
        "[Service]\nType=oneshot\nExecStart=/bin/false\n",
    );
    assert_eq!(manager.start_unit("up.service", "active"), "active");
    assert_eq!(manager.start_unit("down.service", "failed"), "failed");
    let checker = Checker {
        systemctl: vec!["systemctl".into(), "--user".into()],
        env: manager.env(),
        ..Checker::default()
    };
    let checks = settings(json!({"units": ["up.service", "down.service", "never.service"]}));
    let report = checker.evaluate(&checks);
    assert_eq!(report.checks, 3);
    let failed: Vec<String> = report.failures.iter().map(|f| f.to_string()).collect();
    assert_eq!(
        failed,
        [
            "unit down.service is failed",
            "unit never.service is inactive"
        ],
        "{report:?}"
    );

    // `wait` gives up after its bound, with the last failures; and returns as soon as the
    // checks pass.
    let started = Instant::now();
    let report = checker.wait(&checks, Duration::from_secs(2), Duration::from_millis(500));
    assert!(!report.healthy());
    assert!(started.elapsed() < Duration::from_secs(4));
    let up = settings(json!({"units": ["up.service"]}));
    assert!(checker
        .wait(&up, Duration::from_secs(60), Duration::from_secs(1))
        .healthy());
}

#[test]
fn the_gate_records_the_failed_checks_and_clears_them_once_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("failure.json");
    let sick = http_server(500, Duration::ZERO);
    let checks = settings(json!({"probes": {"app": {"url": sick}}}));
    let report = Checker::default().evaluate(&checks);
    let line = health::gate_outcome(&report, "0.2.0", Duration::from_secs(120), &file).unwrap_err();
    assert!(
        line.contains("health checks failed on 0.2.0 after 120 s: probe app answered 500"),
        "{line}"
    );
    let record = health::read_boot_failure(&file).unwrap();
    assert_eq!(record.version, "0.2.0");
    assert_eq!(record.failures[0].check, "probe app");

    // The version booted after the rollback is healthy: the record of the failed update stays
    // for the updater to report (found by the health-gated rollback VM test).
    let healthy = Checker::default().evaluate(&HealthSettings::default());
    health::gate_outcome(&healthy, "0.1.0", Duration::from_secs(1), &file).unwrap();
    assert_eq!(health::read_boot_failure(&file).unwrap().version, "0.2.0");
    // The same version, healthy later: its own old record goes.
    health::gate_outcome(&healthy, "0.2.0", Duration::from_secs(1), &file).unwrap();
    assert!(!file.exists());
}
