//! The audit trail of a real server on a real Unix socket: who is recorded (the peer
//! credentials of this very process, or of the apiclient binary), what is never recorded
//! (secret values), what is recorded whatever the outcome (a refused request), what is not
//! recorded at all (reads), a torn last line left by a crash, and the bound on the file.

use api_types::audit::AuditEntry;
use serde_json::json;
use std::path::PathBuf;
use testserver::TestServer;

fn audit_file(server: &TestServer) -> PathBuf {
    apiserver::audit::AuditConfig::beside_datastore(&server.store)
}

fn entries(server: &TestServer, query: &str) -> Vec<AuditEntry> {
    let (status, body) = server.raw("GET", &format!("/audit{query}"), None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// This process's effective uid and gid (the owner of its /proc directory).
fn uid_gid() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata("/proc/self").unwrap();
    (meta.uid(), meta.gid())
}

/// This process's name as the kernel keeps it (`comm`, at most 15 bytes).
fn own_comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim_end()
        .to_string()
}

#[test]
fn a_set_is_recorded_with_the_callers_credentials() {
    let server = TestServer::start();
    let before = entries(&server, "").len();

    // From this process, through the socket.
    let (status, body) = server.raw(
        "PATCH",
        "/settings?tx=audit-test",
        Some(r#"{"motd": "audited"}"#),
    );
    assert_eq!(status, 204, "{body}");
    let (status, body) = server.raw("POST", "/tx/commit?tx=audit-test", None);
    assert_eq!(status, 200, "{body}");

    let all = entries(&server, "");
    assert_eq!(all.len(), before + 2, "{all:#?}");
    let (patch, commit) = (&all[before], &all[before + 1]);
    let caller = patch.caller.as_ref().expect("peer credentials recorded");
    assert_eq!((caller.uid, caller.gid), uid_gid());
    assert_eq!(caller.pid, Some(std::process::id()));
    assert_eq!(caller.program.as_deref(), Some(own_comm().as_str()));
    assert_eq!(patch.method, "PATCH");
    assert_eq!(patch.path, "/settings?tx=audit-test");
    assert_eq!(patch.status, 204);
    assert_eq!(patch.changes.len(), 1);
    assert_eq!(patch.changes[0].key, "settings.motd");
    assert_eq!(patch.changes[0].value.as_deref(), Some("\"audited\""));
    assert!(!patch.changes[0].redacted);
    assert_eq!(commit.path, "/tx/commit?tx=audit-test");
    assert_eq!(commit.status, 200);
    assert_eq!(commit.changes[0].key, "settings.motd");
    assert!(commit.changes[0].value.is_none());
    patch.time.parse::<jiff::Timestamp>().unwrap();

    // The same in the file, one object per line.
    let text = std::fs::read_to_string(audit_file(&server)).unwrap();
    let last: AuditEntry = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(&last, commit);

    // From the apiclient binary: its own pid and name.
    let out = server.apiclient(&["set", "motd=from apiclient"]);
    assert!(out.status.success(), "{out:?}");
    let all = entries(&server, "?lines=2");
    assert_eq!(all.len(), 2);
    for entry in &all {
        let caller = entry.caller.as_ref().unwrap();
        assert_eq!(caller.program.as_deref(), Some("apiclient"), "{entry:?}");
        assert_ne!(caller.pid, Some(std::process::id()));
    }
    assert_eq!(all[0].method, "PATCH");
    assert!(all[1]
        .path
        .starts_with("/tx/commit_and_apply?tx=apiclient-set-"));

    // `apiclient audit` prints them as lines of text, and as JSON with --json.
    let out = server.apiclient(&["audit", "-n", "2"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains(&format!("uid={} apiclient[", uid_gid().0))
            && lines[0].contains(" PATCH /settings/keypair?tx=apiclient-set-")
            && lines[0].ends_with(" 204 settings.motd"),
        "{text}"
    );
    let out = server.apiclient(&["audit", "-n", "1", "--json"]);
    let json: AuditEntry = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json, all[1]);

    // `since` selects by time.
    assert!(entries(&server, "?since=2999-01-01T00:00:00Z").is_empty());
    assert_eq!(entries(&server, "?since=-1h").len(), before + 4);
}

#[test]
fn secret_values_are_never_recorded() {
    let server = TestServer::start();
    let password = "hunter2-very-secret";
    let user_data = "c2VjcmV0LXVzZXItZGF0YQ=="; // base64 of a secret
    let bad_user_data = "not base64 but secret-xyzzy";

    let (status, body) = server.raw(
        "PATCH",
        "/settings?tx=s",
        Some(
            &json!({
                "container-registry": {"credentials": [
                    {"registry": "r.example", "username": "u", "password": password}
                ]},
                "host-containers": {"admin": {"user-data": user_data, "enabled": false}},
                "motd": "not secret"
            })
            .to_string(),
        ),
    );
    assert_eq!(status, 204, "{body}");
    let out = server.apiclient(&[
        "set",
        &format!("bootstrap-containers.setup.user-data={user_data}"),
    ]);
    assert!(out.status.success(), "{out:?}");
    // Refused, with the secret in the body and in a query parameter the route does not know.
    let (status, _) = server.raw(
        "PATCH",
        &format!("/settings?tx=s&password={password}"),
        Some(r#"{"motd": "x"}"#),
    );
    assert_eq!(status, 400);
    let (status, _) = server.raw(
        "PATCH",
        "/settings?tx=s",
        Some(&json!({"host-containers": {"admin": {"user-data": bad_user_data}}}).to_string()),
    );
    assert_eq!(status, 400);
    // An undo brings secret values back as new values: still not recorded.
    let (status, body) = server.raw("POST", "/tx/commit?tx=s", None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.raw("POST", "/history/undo", None);
    assert_eq!(status, 200, "{body}");

    let file = std::fs::read_to_string(audit_file(&server)).unwrap();
    let (_, answer) = server.raw("GET", "/audit", None);
    let out = server.apiclient(&["audit"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    for secret in [password, user_data, bad_user_data, "xyzzy"] {
        assert!(!file.contains(secret), "{secret} in the file:\n{file}");
        assert!(
            !answer.contains(secret),
            "{secret} in GET /audit:\n{answer}"
        );
        assert!(
            !text.contains(secret),
            "{secret} in apiclient audit:\n{text}"
        );
    }

    let all = entries(&server, "");
    let patch = &all[0];
    let by_key = |key: &str| {
        patch
            .changes
            .iter()
            .find(|c| c.key == key)
            .unwrap_or_else(|| panic!("{key} not in {patch:?}"))
            .clone()
    };
    let credentials = by_key("settings.container-registry.credentials");
    assert!(credentials.redacted && credentials.value.is_none());
    let admin = by_key("settings.host-containers.admin.user-data");
    assert!(admin.redacted && admin.value.is_none());
    let enabled = by_key("settings.host-containers.admin.enabled");
    assert_eq!(
        (enabled.redacted, enabled.value.as_deref()),
        (false, Some("false"))
    );
    assert_eq!(
        by_key("settings.motd").value.as_deref(),
        Some("\"not secret\"")
    );
    assert!(all.iter().any(|e| e.path.contains("password=REDACTED")));
    assert!(text.contains("settings.container-registry.credentials (redacted)"));
}

#[test]
fn a_refused_request_is_recorded_with_its_status_and_a_read_is_not() {
    let server = TestServer::start();
    let before = entries(&server, "").len();

    let (status, _) = server.raw("PATCH", "/settings", Some(r#"{"motd": 42}"#));
    assert_eq!(status, 400);
    let (status, _) = server.raw("POST", "/tx/commit?tx=nothing-here", None);
    assert_eq!(status, 422);
    let (status, _) = server.raw("POST", "/no/such/route", None);
    assert_eq!(status, 404);

    let all = entries(&server, "");
    let statuses: Vec<(String, String, u16)> = all[before..]
        .iter()
        .map(|e| (e.method.clone(), e.path.clone(), e.status))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("PATCH".into(), "/settings".into(), 400),
            ("POST".into(), "/tx/commit?tx=nothing-here".into(), 422),
            ("POST".into(), "/no/such/route".into(), 404),
        ]
    );
    assert!(all[before].changes.is_empty());

    // Reads change nothing and are not recorded, nor is a dry run or GET /audit itself.
    for uri in ["/settings", "/tx/list", "/history", "/os", "/audit"] {
        let (status, _) = server.raw("GET", uri, None);
        assert_eq!(status, 200, "{uri}");
    }
    server.raw("PATCH", "/settings?tx=d", Some(r#"{"motd": "dry"}"#));
    server.raw("POST", "/tx/dry-run?tx=d", None);
    let after = entries(&server, "");
    assert_eq!(after.len(), all.len() + 1, "{:#?}", &after[all.len()..]);
    assert_eq!(after.last().unwrap().method, "PATCH");

    // Bad parameters of GET /audit are refused naming them.
    let (status, body) = server.raw("GET", "/audit?lines=0", None);
    assert_eq!(status, 400);
    assert!(body.contains("lines"), "{body}");
    let (status, body) = server.raw("GET", "/audit?since=yesterday", None);
    assert_eq!(status, 400);
    assert!(body.contains("since"), "{body}");
}

#[test]
fn a_torn_last_line_is_skipped_and_the_bound_holds() {
    let mut server = TestServer::start();
    server.raw("PATCH", "/settings?tx=a", Some(r#"{"motd": "one"}"#));
    // A crash in the middle of a write leaves part of a line.
    server.kill();
    let path = audit_file(&server);
    let mut text = std::fs::read(&path).unwrap();
    let whole = text.len();
    text.extend_from_slice(br#"{"time":"2026-12-07T06:53:05Z","caller":{"ui"#);
    std::fs::write(&path, &text).unwrap();

    server.extra_args = vec!["--audit-max-entries".into(), "10".into()];
    server.spawn();
    server.raw("PATCH", "/settings?tx=a", Some(r#"{"motd": "two"}"#));
    let all = entries(&server, "");
    let motds: Vec<&str> = all
        .iter()
        .filter_map(|e| e.changes.first()?.value.as_deref())
        .collect();
    assert_eq!(motds, ["\"one\"", "\"two\""], "{all:#?}");
    // The earlier line is untouched, the torn piece on a line of its own.
    let now = std::fs::read(&path).unwrap();
    assert_eq!(&now[..whole], &text[..whole]);
    assert_eq!(now.iter().filter(|b| **b == b'\n').count(), all.len() + 1);

    for n in 0..40 {
        let (status, _) = server.raw(
            "PATCH",
            "/settings?tx=a",
            Some(&json!({ "motd": format!("n{n}") }).to_string()),
        );
        assert_eq!(status, 204);
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 10, "{lines} lines after {n}");
    }
    let kept = entries(&server, "");
    assert!(kept.len() <= 10);
    assert_eq!(
        kept.last().unwrap().changes[0].value.as_deref(),
        Some("\"n39\"")
    );
}

#[test]
fn the_settings_history_names_the_same_caller_as_the_audit_trail() {
    let server = TestServer::start();

    // A commit from this process, then a set and an undo through the apiclient binary.
    let (status, body) = server.raw("PATCH", "/settings?tx=who", Some(r#"{"motd": "mine"}"#));
    assert_eq!(status, 204, "{body}");
    let (status, body) = server.raw("POST", "/tx/commit_and_apply?tx=who", None);
    assert_eq!(status, 200, "{body}");
    let out = server.apiclient(&["set", "motd=theirs"]);
    assert!(out.status.success(), "{out:?}");
    let out = server.apiclient(&["undo"]);
    assert!(out.status.success(), "{out:?}");

    let history: Vec<api_types::history::HistoryEntry> =
        serde_json::from_value(server.json("GET", "/history", None)).unwrap();
    let n = history.len();
    assert!(n >= 3, "{history:#?}");
    let (mine, theirs, undo) = (&history[n - 3], &history[n - 2], &history[n - 1]);
    assert_eq!(mine.transaction, "who");
    let caller = mine
        .caller
        .as_ref()
        .expect("the commit's caller is recorded");
    assert_eq!((caller.uid, caller.gid), uid_gid());
    assert_eq!(caller.pid, Some(std::process::id()));
    assert_eq!(caller.program.as_deref(), Some(own_comm().as_str()));
    for entry in [theirs, undo] {
        let caller = entry.caller.as_ref().expect("caller recorded");
        assert_eq!(caller.program.as_deref(), Some("apiclient"), "{entry:?}");
        assert_ne!(caller.pid, Some(std::process::id()));
    }
    assert!(undo.transaction.starts_with("undo-"), "{undo:?}");
    assert_ne!(theirs.caller, undo.caller, "two apiclient runs, two pids");

    // The audit entry of the commit names the same caller.
    let audit = entries(&server, "");
    let commit = audit
        .iter()
        .find(|e| e.path == "/tx/commit_and_apply?tx=who")
        .unwrap();
    assert_eq!(commit.caller.as_ref(), mine.caller.as_ref());

    // `apiclient history` shows it beside the change.
    let out = server.apiclient(&["history"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("settings.motd") && l.contains("\"mine\"") && l.contains(" who "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(&format!(
            "uid={} {}[{}]",
            uid_gid().0,
            own_comm(),
            std::process::id()
        )),
        "{text}"
    );
}
