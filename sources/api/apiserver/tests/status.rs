//! `GET /units`, `GET /status` and `apiclient status` against real parts: a real systemd
//! manager (systemd's user manager, see `testserver::systemd`; this host's PID 1 is not
//! systemd) holding a unit that really failed, read by the real `systemctl --user`; a journal
//! file written by systemd-journal-remote and read by the real journalctl; the real signpost on
//! a real A/B disk image; and the test updater for the update state. Without root or systemd
//! the tests are skipped with a notice, and fail under `CI=true`.

use api_types::status::{NodeStatus, Part, Unit};
use disk_layout::{Layout, MIB};
use testserver::disk::make_boot_disk;
use testserver::journal::{write_journal, Export};
use testserver::systemd::UserManager;
use testserver::TestServer;

const BOOT: &str = "0123456789abcdef0123456789abcdef";
/// 2026-12-07T06:53:05Z, in microseconds.
const T0: u64 = 1_796_626_385_000_000;

/// A user manager with `boom.service` failed and `fine.service` active, and a server reading
/// it, whose journal holds twelve lines of boom and one of fine, and whose signpost reads a
/// real disk image.
fn node() -> Option<(UserManager, TestServer)> {
    if !hosttools::require_tool(hosttools::JOURNAL_REMOTE) || !hosttools::require_tool("journalctl")
    {
        return None;
    }
    let manager = UserManager::start()?;
    manager.add_unit(
        "boom.service",
        "[Unit]\nDescription=A unit that fails\n[Service]\nExecStart=/bin/false\n",
    );
    manager.add_unit(
        "fine.service",
        "[Unit]\nDescription=A unit that works\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n",
    );
    assert_eq!(manager.start_unit("boom.service", "failed"), "failed");
    assert_eq!(manager.start_unit("fine.service", "active"), "active");

    testserver::build_test_updater();
    testserver::workspace_bin("signpost");
    let mut server = TestServer::start();
    let lines: Vec<String> = (1..=12).map(|n| format!("boom line {n}")).collect();
    let mut entries: Vec<Vec<(&str, &str)>> = lines
        .iter()
        .map(|message| {
            vec![
                ("_SYSTEMD_UNIT", "boom.service"),
                ("SYSLOG_IDENTIFIER", "boom"),
                ("_PID", "77"),
                ("PRIORITY", "3"),
                ("MESSAGE", message.as_str()),
            ]
        })
        .collect();
    entries.push(vec![
        ("_SYSTEMD_UNIT", "fine.service"),
        ("SYSLOG_IDENTIFIER", "fine"),
        ("MESSAGE", "all good"),
    ]);
    let exports: Vec<Export> = entries
        .iter()
        .enumerate()
        .map(|(i, fields)| Export {
            micros: T0 + i as u64 * 1_000_000,
            boot: BOOT,
            fields,
            binary_message: None,
        })
        .collect();
    write_journal(&server.journal_dir, "node", &exports);
    // A 1 GiB disk as the image builder leaves it: set A boots, B is empty.
    let disk = make_boot_disk(server.dir.path(), &Layout::small(), 1024 * MIB);
    assert_eq!(disk, server.disk());
    server.use_manager(&manager);
    Some((manager, server))
}

fn unit<'a>(units: &'a [Unit], name: &str) -> &'a Unit {
    units
        .iter()
        .find(|u| u.name == name)
        .unwrap_or_else(|| panic!("{name} is not listed: {units:?}"))
}

#[test]
fn units_status_and_apiclient_show_a_failed_unit_with_its_last_lines() {
    let Some((manager, mut server)) = node() else {
        return;
    };

    // GET /units: every unit, the failed one with its ten newest entries.
    let units: Vec<Unit> = serde_json::from_value(server.json("GET", "/units", None)).unwrap();
    assert!(units.len() > 2, "{units:?}");
    let boom = unit(&units, "boom.service");
    assert_eq!(
        (
            boom.load_state.as_str(),
            boom.active_state.as_str(),
            boom.sub_state.as_str()
        ),
        ("loaded", "failed", "failed")
    );
    assert_eq!(boom.description, "A unit that fails");
    let log = boom
        .last_log
        .as_ref()
        .expect("a failed unit has its entries");
    let messages: Vec<&str> = log.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages.len(), 10, "{messages:?}");
    assert_eq!(messages[0], "boom line 3");
    assert_eq!(messages[9], "boom line 12");
    let fine = unit(&units, "fine.service");
    assert_eq!(fine.active_state, "active");
    assert!(fine.last_log.is_none(), "only failed units carry entries");

    // GET /status: every part read.
    let raw = server.json("GET", "/status", None);
    let status: NodeStatus = serde_json::from_value(raw.clone()).unwrap();
    let summary = status.units.as_result().unwrap();
    assert_eq!(summary.total as usize, units.len());
    assert_eq!(
        summary
            .failed
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>(),
        ["boom.service"]
    );
    assert!(summary.active() >= 1);
    let boot = status.boot.as_result().unwrap();
    assert_eq!((boot.active.as_str(), boot.next.as_str()), ("A", "A"));
    assert_eq!(boot.disk, server.disk().display().to_string());
    assert!(!boot.inactive_bootable);
    assert_eq!(status.os.as_result().unwrap().version_id, "0.1.0");
    let update = status.update.as_result().unwrap();
    assert_eq!(update.active_partition.image.version, "0.1.0");
    // The JSON's shape, as a script reads it.
    assert_eq!(
        raw["units"]["failed"][0]["last_log"][9]["message"],
        "boom line 12"
    );
    assert_eq!(raw["boot"]["sets"][1]["set"], "B");
    assert_eq!(raw["update"]["update_state"], "Idle");

    // apiclient status: the failed unit and its lines first, then the rest.
    let out = server.apiclient(&["status"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "FAILED boom.service (loaded/failed): A unit that fails",
        "{text}"
    );
    assert_eq!(
        lines[1],
        "    2026-12-07T06:53:07.000000Z boom[77]: boom line 3"
    );
    assert_eq!(
        lines[10],
        "    2026-12-07T06:53:16.000000Z boom[77]: boom line 12"
    );
    assert_eq!(
        lines[11],
        format!(
            "{} units active ({} loaded, 1 failed)",
            summary.active(),
            summary.total
        )
    );
    assert!(
        lines[12].starts_with("Boot: running set A, next boot A; set B: not bootable"),
        "{text}"
    );
    assert_eq!(
        lines[13],
        "Version: 0.1.0 (variant test, build abc123, x86_64)"
    );
    assert_eq!(lines[14], "Update: Idle");

    // apiclient status --json: the server's document.
    let out = server.apiclient(&["status", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let printed: NodeStatus = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed.units, status.units);
    assert_eq!(printed.boot, status.boot);

    // A unit that recovers leaves the failed list.
    let _ = manager.systemctl(&["reset-failed", "boom.service"]);
    let status: NodeStatus = serde_json::from_value(server.json("GET", "/status", None)).unwrap();
    assert!(status.units.as_result().unwrap().failed.is_empty());

    // A journal that cannot be read: the failed unit is still listed, with the reason.
    assert_eq!(manager.start_unit("boom.service", "failed"), "failed");
    server.kill();
    server.extra_args = vec!["--journalctl".into(), "/nonexistent/journalctl".into()];
    server.spawn();
    let units: Vec<Unit> = serde_json::from_value(server.json("GET", "/units", None)).unwrap();
    let boom = unit(&units, "boom.service");
    assert!(boom.last_log.is_none());
    assert!(
        boom.last_log_error
            .as_deref()
            .unwrap()
            .contains("--journalctl"),
        "{boom:?}"
    );
}

#[test]
fn a_part_that_cannot_be_read_is_an_error_in_its_place() {
    let Some((_manager, mut server)) = node() else {
        return;
    };
    // signpost on a disk that is not there: the boot part says why, the others are read.
    std::fs::remove_file(server.disk()).unwrap();
    let raw = server.json("GET", "/status", None);
    let error = raw["boot"]["error"].as_str().expect("boot is an error");
    assert!(error.contains("signpost"), "{error}");
    assert!(error.contains("disk.img"), "{error}");
    assert_eq!(raw["boot"].as_object().unwrap().len(), 1);
    let status: NodeStatus = serde_json::from_value(raw).unwrap();
    assert!(matches!(status.boot, Part::Error(_)));
    assert!(status.units.as_result().is_ok());
    assert!(status.os.as_result().is_ok());
    assert!(status.update.as_result().is_ok());
    let out = server.apiclient(&["status"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\nBoot: cannot be read: "), "{text}");
    assert!(text.contains("\nVersion: 0.1.0"), "{text}");

    // A signpost that prints something else is named as the problem.
    server.signpost_command = "echo not-json".to_string();
    server.kill();
    server.spawn();
    let raw = server.json("GET", "/status", None);
    let error = raw["boot"]["error"].as_str().unwrap();
    assert!(error.contains("--signpost-command"), "{error}");

    // No systemctl: GET /units is a 503 naming the flag; GET /status still answers.
    server.systemctl_command = "/nonexistent/systemctl".to_string();
    server.kill();
    server.spawn();
    let (code, body) = server.raw("GET", "/units", None);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("--systemctl"), "{body}");
    let raw = server.json("GET", "/status", None);
    assert!(raw["units"]["error"]
        .as_str()
        .unwrap()
        .contains("--systemctl"));
    assert_eq!(raw["os"]["version_id"], "0.1.0");

    // A systemctl with no manager to talk to: a 500 quoting it.
    server.systemctl_command = "systemctl --user".to_string();
    server.env = vec![(
        "XDG_RUNTIME_DIR".to_string(),
        server.dir.path().join("no-runtime"),
    )];
    server.kill();
    server.spawn();
    let (code, body) = server.raw("GET", "/units", None);
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("list-units"), "{body}");
}
