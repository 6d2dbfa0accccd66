//! `GET /report/boot` and `apiclient report boot` against a real systemd manager (systemd's
//! user manager, see `testserver::systemd`), read by the real `systemctl --user`: units that
//! really started one after the other (a.service sleeps, b.service waits for it and sleeps,
//! an apiserver.service stand-in and a target wait for b). Checks orders, never durations
//! against a stopwatch. Without root or systemd the tests are skipped with a notice, and fail
//! under `CI=true`.

use api_types::boot_report::{BootReport, ChainUnit};
use testserver::systemd::UserManager;
use testserver::TestServer;

const ONESHOT: &str = "[Service]\nType=oneshot\nRemainAfterExit=yes\n";

/// A user manager where a.service, then b.service, then apiserver.service and t.target
/// became active, and a server reading it.
fn node() -> Option<(UserManager, TestServer)> {
    let manager = UserManager::start()?;
    manager.add_unit("a.service", &format!("{ONESHOT}ExecStart=/bin/sleep 0.3\n"));
    manager.add_unit(
        "b.service",
        &format!("[Unit]\nAfter=a.service\nWants=a.service\n{ONESHOT}ExecStart=/bin/sleep 0.2\n"),
    );
    manager.add_unit(
        "apiserver.service",
        &format!("[Unit]\nAfter=b.service\nWants=b.service\n{ONESHOT}ExecStart=/bin/true\n"),
    );
    manager.add_unit(
        "t.target",
        "[Unit]\nWants=a.service b.service\nAfter=a.service b.service\n",
    );
    assert_eq!(manager.start_unit("t.target", "active"), "active");
    assert_eq!(manager.start_unit("apiserver.service", "active"), "active");
    let mut server = TestServer::start();
    server.use_manager(&manager);
    Some((manager, server))
}

fn names(units: &[ChainUnit]) -> Vec<&str> {
    units.iter().map(|u| u.name.as_str()).collect()
}

/// The chain's first three units are `first`, b.service and a.service, in an order their
/// times agree with.
fn check_chain(units: &[ChainUnit], first: &str) {
    assert!(units.len() >= 3, "{units:?}");
    assert_eq!(names(&units[..3]), [first, "b.service", "a.service"]);
    let at = |u: &ChainUnit| u.active_at_us.unwrap_or_else(|| panic!("{u:?} is active"));
    let (top, b, a) = (&units[0], &units[1], &units[2]);
    // Each became active no earlier than what it waited for, and b left the inactive state
    // only once a was active (it is ordered after a).
    assert!(at(a) <= at(b) && at(b) <= at(top), "{units:?}");
    let b_start = b.start_us.expect("b's start time is known");
    assert!(at(b) - b_start >= at(a), "{units:?}");
    // The sleeping services took some time to start; every unit is still active.
    assert!(a.start_us.unwrap() > 0 && b_start > 0, "{units:?}");
    assert!(units.iter().all(|u| u.stopped_at_us.is_none()), "{units:?}");
    // At most the depth bound, no unit twice.
    let mut seen = names(units);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), units.len(), "{units:?}");
    assert!(units.len() <= 32);
}

#[test]
fn the_report_shows_phases_and_chains_in_json_and_text() {
    let Some((_manager, server)) = node() else {
        return;
    };

    // The default chains: the API (here a stand-in unit) and configured.target, which this
    // manager does not have: an empty chain, not an error.
    let raw = server.json("GET", "/report/boot", None);
    let report: BootReport = serde_json::from_value(raw.clone()).unwrap();
    assert!(report.finished, "{report:?}");
    // A user manager knows only its own phase.
    for phase in ["firmware_us", "loader_us", "kernel_us", "initrd_us"] {
        assert!(raw["phases"][phase].is_null(), "{phase}: {raw}");
    }
    let userspace = raw["phases"]["userspace_us"].as_u64().expect("userspace");
    assert_eq!(raw["phases"]["total_us"].as_u64(), Some(userspace));
    assert_eq!(report.chains.len(), 2);
    assert_eq!(report.chains[0].target, "apiserver.service");
    check_chain(&report.chains[0].units, "apiserver.service");
    assert_eq!(report.chains[1].target, "configured.target");
    assert_eq!(report.chains[1].load_state, "not-found");
    assert!(report.chains[1].units.is_empty());
    // The JSON's shape, as a script reads it.
    assert_eq!(raw["chains"][0]["units"][1]["name"], "b.service");
    assert!(
        raw["chains"][0]["units"][1]["active_at_us"].is_u64(),
        "{raw}"
    );
    assert!(raw["chains"][0]["units"][1]["start_us"].is_u64(), "{raw}");
    assert_eq!(raw["chains"][0]["units"][1]["active_state"], "active");

    // Another target.
    let report: BootReport =
        serde_json::from_value(server.json("GET", "/report/boot?target=t.target", None)).unwrap();
    assert_eq!(report.chains.len(), 1);
    check_chain(&report.chains[0].units, "t.target");

    // apiclient report boot: the phases, then the chain indented like critical-chain.
    let out = server.apiclient(&["report", "boot", "--target", "t.target"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "firmware:  unknown", "{text}");
    assert_eq!(lines[2], "kernel:    unknown", "{text}");
    assert!(
        lines[4].starts_with("userspace: ") && lines[4].ends_with('s'),
        "{text}"
    );
    assert_eq!(lines[6], "", "{text}");
    assert_eq!(lines[7], "Chain to t.target:", "{text}");
    assert!(lines[8].starts_with("  t.target @"), "{text}");
    assert!(lines[9].starts_with("    b.service @"), "{text}");
    assert!(lines[9].contains(" +0."), "{text}");
    assert!(lines[10].starts_with("      a.service @"), "{text}");

    // --json: the server's document.
    let out = server.apiclient(&["report", "boot", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let printed: BootReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed.chains[1].target, "configured.target");
    check_chain(&printed.chains[0].units, "apiserver.service");
}

#[test]
fn unknown_and_malformed_units_are_refused() {
    let Some((_manager, server)) = node() else {
        return;
    };
    let (status, body) = server.raw("GET", "/report/boot?target=nosuch.service", None);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("nosuch.service"), "{body}");
    // A name without a type is a service.
    let (status, body) = server.raw("GET", "/report/boot?target=nosuch", None);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("nosuch.service"), "{body}");
    for bad in ["../etc", "-a", "a%20b", ""] {
        let (status, body) = server.raw("GET", &format!("/report/boot?target={bad}"), None);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("?target="), "{bad}: {body}");
    }
    let (status, body) = server.raw("GET", "/report/boot?unit=a.service", None);
    assert_eq!(status, 400, "{body}");
    let out = server.apiclient(&["report", "boot", "--target", "nosuch.service"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nosuch.service"), "{stderr}");
}
