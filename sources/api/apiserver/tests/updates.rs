//! The update API end to end: a real apiserver process running the test updater (testserver's
//! `test-updater`, which follows updog's contract over a pretend node) as real child processes,
//! driven by raw requests and by the real apiclient binary.

use serde_json::Value;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testserver::{build_test_updater, TestServer};

const WAIT: Duration = Duration::from_secs(30);

fn status(server: &TestServer) -> Value {
    server.json("GET", "/updates/status", None)
}

/// Polls the status until `done` holds; panics with the last status after 30 s.
fn wait_until(server: &TestServer, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let s = status(server);
        if done(&s) {
            return s;
        }
        assert!(start.elapsed() < WAIT, "waited 30 s for {what}: {s:#}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for the running action to finish; returns the status.
fn finished(server: &TestServer) -> Value {
    wait_until(server, "the action to finish", |s| {
        s["most_recent_command"]["cmd_status"] != "Running"
    })
}

fn post(server: &TestServer, route: &str) -> (u16, String) {
    server.raw("POST", route, None)
}

/// Posts an action that must be accepted and waits for it to succeed.
fn act(server: &TestServer, route: &str) -> Value {
    let (code, body) = post(server, route);
    assert_eq!(code, 204, "POST {route}: {body}");
    let s = finished(server);
    assert_eq!(s["most_recent_command"]["cmd_status"], "Success", "{s:#}");
    s
}

fn touch(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn remove(dir: &Path, name: &str) {
    std::fs::remove_file(dir.join(name)).unwrap();
}

fn error_text(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["error"].as_str().unwrap().to_string()
}

#[test]
fn full_cycle_idle_available_staged_ready_staged() {
    let server = TestServer::start_with_updates(&["0.1.5", "0.2.0"]);
    let s = status(&server);
    assert_eq!(s["update_state"], "Idle");
    assert_eq!(s["most_recent_command"], Value::Null);
    assert_eq!(s["active_partition"]["image"]["version"], "0.1.0");
    assert_eq!(s["active_partition"]["next_to_boot"], true);
    assert_eq!(s["staging_partition"], Value::Null);
    assert_eq!(s["progress"], Value::Null);
    assert_eq!(s["failed_update"], Value::Null);

    let s = act(&server, "/actions/refresh-updates");
    assert_eq!(s["update_state"], "Available");
    assert_eq!(
        s["available_updates"],
        serde_json::json!(["0.2.0", "0.1.5"])
    );
    assert_eq!(s["chosen_update"]["version"], "0.2.0");
    assert_eq!(s["chosen_update"]["variant"], "test");
    assert_eq!(s["most_recent_command"]["cmd_type"], "refresh");
    assert_eq!(s["most_recent_command"]["exit_status"], 0);

    let s = act(&server, "/actions/prepare-update");
    assert_eq!(s["update_state"], "Staged");
    assert_eq!(s["staging_partition"]["image"]["version"], "0.2.0");
    assert_eq!(s["staging_partition"]["next_to_boot"], false);
    assert_eq!(
        s["progress"],
        Value::Null,
        "no progress once the prepare is over"
    );
    let progress_file = server.update_status_dir().join("progress.json");
    assert!(!progress_file.exists(), "the progress file is cleaned up");

    let s = act(&server, "/actions/activate-update");
    assert_eq!(s["update_state"], "Ready");
    assert_eq!(s["staging_partition"]["next_to_boot"], true);
    assert_eq!(s["active_partition"]["next_to_boot"], false);
    assert_eq!(server.node().next_boot, "B");

    // A refresh in Ready looks again but keeps the state.
    let s = act(&server, "/actions/refresh-updates");
    assert_eq!(s["update_state"], "Ready");

    let s = act(&server, "/actions/deactivate-update");
    assert_eq!(s["update_state"], "Staged");
    assert_eq!(s["staging_partition"]["next_to_boot"], false);
    assert_eq!(server.node().next_boot, "A");

    // The updater was run as updog's contract says: global flags before the subcommand.
    let prefix = format!("--state {} ", server.updater_dir().display());
    let tails: Vec<String> = server
        .updater_calls()
        .iter()
        .map(|c| c.strip_prefix(&prefix).unwrap_or(c).to_string())
        .collect();
    assert!(
        tails.contains(&"--json check-update --all".to_string()),
        "{tails:?}"
    );
    assert!(tails.contains(&"--json status".to_string()), "{tails:?}");
    assert!(tails.contains(&"update-apply".to_string()), "{tails:?}");
    assert!(tails.contains(&"update-revert".to_string()), "{tails:?}");
    let image = format!(
        "update-image --image 0.2.0 --progress-file {}",
        progress_file.display()
    );
    assert!(tails.contains(&image), "{tails:?}");
}

#[test]
fn wrong_transition_is_409_with_the_state_and_what_to_do() {
    let server = TestServer::start_with_updates(&["0.2.0"]);
    let (code, body) = post(&server, "/actions/prepare-update");
    assert_eq!(code, 409, "{body}");
    let text = error_text(&body);
    assert!(text.contains("Idle"), "{text}");
    assert!(text.contains("/actions/refresh-updates"), "{text}");
    let (code, body) = post(&server, "/actions/activate-update");
    assert_eq!(code, 409);
    assert!(error_text(&body).contains("prepare-update"), "{body}");
    let (code, body) = post(&server, "/actions/deactivate-update");
    assert_eq!(code, 409);
    assert!(error_text(&body).contains("Idle"), "{body}");

    act(&server, "/actions/refresh-updates");
    // Available: cannot activate what is not staged.
    let (code, body) = post(&server, "/actions/activate-update");
    assert_eq!(code, 409);
    assert!(error_text(&body).contains("Available"), "{body}");
    act(&server, "/actions/prepare-update");
    act(&server, "/actions/activate-update");
    let (code, body) = post(&server, "/actions/prepare-update");
    assert_eq!(code, 409);
    let text = error_text(&body);
    assert!(text.contains("Ready") && text.contains("0.2.0"), "{text}");
    assert!(text.contains("deactivate-update"), "{text}");

    // Nothing was run for the refused requests.
    let images = server
        .updater_calls()
        .iter()
        .filter(|c| c.contains("update-image"))
        .count();
    assert_eq!(images, 1);
    assert_eq!(status(&server)["update_state"], "Ready");
}

#[test]
fn actions_and_reboot_are_423_while_an_action_runs() {
    let server = TestServer::start_with_updates(&["0.2.0"]);
    let dir = server.updater_dir();
    touch(&dir, "hang-check-update", "");
    let (code, _) = post(&server, "/actions/refresh-updates");
    assert_eq!(code, 204, "the answer does not wait for the updater");
    let s = status(&server);
    assert_eq!(s["most_recent_command"]["cmd_status"], "Running");
    assert_eq!(s["most_recent_command"]["exit_status"], Value::Null);
    for route in [
        "/actions/refresh-updates",
        "/actions/prepare-update",
        "/actions/activate-update",
        "/actions/deactivate-update",
        "/actions/reboot",
    ] {
        let (code, body) = post(&server, route);
        assert_eq!(code, 423, "{route}: {body}");
        assert!(error_text(&body).contains("'refresh'"), "{body}");
    }
    assert_eq!(server.reboots(), 0);
    remove(&dir, "hang-check-update");
    let s = finished(&server);
    assert_eq!(s["update_state"], "Available");
    let (code, body) = post(&server, "/actions/reboot");
    assert_eq!(code, 204, "{body}");
    assert_eq!(server.reboots(), 1);
}

#[test]
fn failed_prepare_reports_stderr_and_returns_to_available() {
    let server = TestServer::start_with_updates(&["0.2.0"]);
    let dir = server.updater_dir();
    act(&server, "/actions/refresh-updates");
    touch(
        &dir,
        "fail-update-image",
        "cannot write ROOT-B: no space left on device\n",
    );
    let (code, _) = post(&server, "/actions/prepare-update");
    assert_eq!(code, 204);
    let s = finished(&server);
    let cmd = &s["most_recent_command"];
    assert_eq!(cmd["cmd_type"], "prepare");
    assert_eq!(cmd["cmd_status"], "Failed");
    assert_eq!(cmd["exit_status"], 1);
    assert!(
        cmd["stderr"]
            .as_str()
            .unwrap()
            .contains("cannot write ROOT-B: no space left on device"),
        "{s:#}"
    );
    assert_eq!(s["update_state"], "Available");
    assert_eq!(
        s["staging_partition"],
        Value::Null,
        "the half-written set is not staged"
    );
    assert_eq!(s["progress"], Value::Null);

    // Once the cause is gone, the same prepare works.
    remove(&dir, "fail-update-image");
    let s = act(&server, "/actions/prepare-update");
    assert_eq!(s["update_state"], "Staged");
}

#[test]
fn progress_is_visible_while_preparing() {
    let server = TestServer::start_with_updates(&["0.2.0"]);
    let dir = server.updater_dir();
    act(&server, "/actions/refresh-updates");
    touch(&dir, "hold-download", "");
    assert_eq!(post(&server, "/actions/prepare-update").0, 204);
    // The test updater holds half way through the root target until the file goes.
    let s = wait_until(&server, "progress half way through root", |s| {
        s["progress"]["target"] == "root" && s["progress"]["bytes_written"] == 32 << 20
    });
    assert_eq!(s["most_recent_command"]["cmd_status"], "Running");
    let p = &s["progress"];
    assert_eq!(p["phase"], "download");
    assert_eq!(p["bytes_written"], 32 << 20);
    assert_eq!(p["bytes_expected"], 64 << 20);
    assert_eq!(p["targets_done"], 1);
    assert_eq!(p["targets_total"], 3);
    remove(&dir, "hold-download");
    let s = finished(&server);
    assert_eq!(s["update_state"], "Staged");
    assert_eq!(s["progress"], Value::Null);
}

/// Pids of live test-updater processes working in `dir` with `subcommand`.
fn updater_processes(dir: &Path, subcommand: &str) -> Vec<u32> {
    let needle = dir.display().to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).to_string())
            .collect();
        // A zombie has an empty command line; it is not running any more.
        if args.iter().any(|a| a == &needle) && args.iter().any(|a| a == subcommand) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn status_survives_an_apiserver_restart() {
    let mut server = TestServer::start_with_updates(&["0.2.0"]);
    act(&server, "/actions/refresh-updates");
    let staged = act(&server, "/actions/prepare-update");
    assert_eq!(staged["update_state"], "Staged");
    assert!(server.update_status_dir().join("status.json").exists());
    server.kill();
    server.spawn();
    assert_eq!(
        status(&server),
        staged,
        "the restarted server knows what the old one knew"
    );
    let s = act(&server, "/actions/activate-update");
    assert_eq!(s["update_state"], "Ready");

    // A restart in the middle of a prepare: the updater dies with the server, and the new
    // server reports the prepare as failed and falls back to Available.
    let s = act(&server, "/actions/deactivate-update");
    assert_eq!(s["update_state"], "Staged");
    let dir = server.updater_dir();
    touch(&dir, "hold-download", "");
    assert_eq!(post(&server, "/actions/prepare-update").0, 204);
    wait_until(&server, "progress", |s| s["progress"].is_object());
    assert_eq!(updater_processes(&dir, "update-image").len(), 1);
    server.kill();
    let start = Instant::now();
    while !updater_processes(&dir, "update-image").is_empty() {
        assert!(
            start.elapsed() < WAIT,
            "the updater outlived the API server that started it"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.spawn();
    let s = status(&server);
    let cmd = &s["most_recent_command"];
    assert_eq!(cmd["cmd_type"], "prepare");
    assert_eq!(cmd["cmd_status"], "Failed");
    assert!(
        cmd["stderr"]
            .as_str()
            .unwrap()
            .contains("API server stopped"),
        "{s:#}"
    );
    assert_eq!(s["update_state"], "Available");
    assert_eq!(s["staging_partition"], Value::Null);
    remove(&dir, "hold-download");
    assert_eq!(
        act(&server, "/actions/prepare-update")["update_state"],
        "Staged"
    );
}

#[test]
fn after_a_reboot_the_status_starts_from_updog_status() {
    let mut server = TestServer::start_with_updates(&["0.2.0"]);
    act(&server, "/actions/refresh-updates");
    server.kill();
    // A reboot empties the tmpfs status directory; the node now has 0.2.0 activated in B and
    // remembers a failed update.
    std::fs::remove_dir_all(server.update_status_dir()).unwrap();
    let mut node = server.node();
    node.inactive.image = Some(testserver::updater::Image {
        variant: "test".into(),
        arch: std::env::consts::ARCH.into(),
        version: "0.2.0".into(),
        build_id: "b".into(),
    });
    node.inactive.valid = true;
    node.next_boot = "B".into();
    node.failed_update = Some(testserver::updater::FailedUpdate {
        version: "0.1.9".into(),
        set: "B".into(),
        health: None,
    });
    server.set_node(&node);
    server.spawn();
    let s = status(&server);
    assert_eq!(s["update_state"], "Ready");
    assert_eq!(s["most_recent_command"], Value::Null);
    assert_eq!(s["staging_partition"]["image"]["version"], "0.2.0");
    assert_eq!(s["staging_partition"]["next_to_boot"], true);
    assert_eq!(s["failed_update"]["version"], "0.1.9");
    assert_eq!(s["failed_update"]["set"], "B");
    assert_eq!(s["available_updates"], serde_json::json!([]));
}

#[test]
fn an_updater_that_cannot_run_is_a_clear_503() {
    let mut server = TestServer::start();
    server.kill();
    server.updater_command = "/nonexistent/updog --log-level warn".into();
    server.spawn();
    for (method, route) in [
        ("GET", "/updates/status"),
        ("POST", "/actions/refresh-updates"),
    ] {
        let (code, body) = server.raw(method, route, None);
        assert_eq!(code, 503, "{route}: {body}");
        let text = error_text(&body);
        assert!(text.contains("/nonexistent/updog"), "{text}");
        assert!(text.contains("--updater-command"), "{text}");
    }
    // Everything else still works.
    assert_eq!(server.raw("GET", "/os", None).0, 200);
}

#[test]
fn reboot_route_runs_the_reboot_command() {
    let mut server = TestServer::start();
    let (code, body) = post(&server, "/actions/reboot");
    assert_eq!(code, 204, "{body}");
    assert_eq!(server.reboots(), 1);
    // A failing or missing reboot command is reported, naming the command or the flag.
    server.kill();
    let failing = server.dir.path().join("failing-reboot");
    std::fs::write(
        &failing,
        "#!/bin/sh\necho 'inhibited by a lock' >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
    server.reboot_command = failing.display().to_string();
    server.spawn();
    let (code, body) = post(&server, "/actions/reboot");
    assert_eq!(code, 500, "{body}");
    assert!(error_text(&body).contains("inhibited by a lock"), "{body}");
    server.kill();
    server.reboot_command = "/nonexistent/systemctl reboot".into();
    server.spawn();
    let (code, body) = post(&server, "/actions/reboot");
    assert_eq!(code, 503, "{body}");
    assert!(error_text(&body).contains("--reboot-command"), "{body}");
    assert_eq!(server.reboots(), 1);
}

#[test]
fn refresh_output_that_breaks_the_contract_is_a_failed_refresh() {
    let server = TestServer::start_with_updates(&["0.2.0"]);
    touch(&server.updater_dir(), "stdout-check-update", "test 0.2.0\n");
    assert_eq!(post(&server, "/actions/refresh-updates").0, 204);
    let s = finished(&server);
    assert_eq!(s["most_recent_command"]["cmd_status"], "Failed");
    assert!(
        s["most_recent_command"]["stderr"]
            .as_str()
            .unwrap()
            .contains("not the JSON"),
        "{s:#}"
    );
    assert_eq!(s["update_state"], "Idle");
}

// ---- apiclient ----

fn assert_ok(out: &std::process::Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "apiclient failed: {stderr}");
    (stdout, stderr)
}

fn assert_fails(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "expected a failure: {stderr}");
    stderr
}

#[test]
fn apiclient_update_check_prints_the_status() {
    let server = TestServer::start_with_updates(&["0.2.0"]);
    let (stdout, _) = assert_ok(&server.apiclient(&["update", "check"]));
    let s: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(s["update_state"], "Available");
    assert_eq!(s["chosen_update"]["version"], "0.2.0");
    assert_eq!(s["most_recent_command"]["cmd_status"], "Success");

    touch(
        &server.updater_dir(),
        "fail-check-update",
        "metadata expired\n",
    );
    let stderr = assert_fails(&server.apiclient(&["update", "check"]));
    assert!(stderr.contains("'refresh' failed"), "{stderr}");
    assert!(stderr.contains("metadata expired"), "{stderr}");
}

#[test]
fn apiclient_update_apply_prints_progress_and_activates() {
    let server = TestServer::start_with_updates(&["0.2.0"]);
    let dir = server.updater_dir();
    touch(&dir, "hold-download", "");
    let mut child = Command::new(testserver::workspace_bin("apiclient"))
        .arg("--socket-path")
        .arg(&server.socket)
        .args(["update", "apply", "--check"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Release the download once apiclient has shown the progress it was held at.
    let mut lines = Vec::new();
    let mut reader = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        lines.push(line.trim_end().to_string());
        if line.contains("root 32.0 of 64.0 MiB (target 2 of 3)")
            && dir.join("hold-download").exists()
        {
            remove(&dir, "hold-download");
        }
        line.clear();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{lines:#?}");
    assert!(
        lines
            .contains(&"Preparing update 0.2.0: root 32.0 of 64.0 MiB (target 2 of 3)".to_string()),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("activated and boots next")),
        "{lines:#?}"
    );
    assert!(out.stdout.is_empty());
    let s = status(&server);
    assert_eq!(s["update_state"], "Ready");
    assert_eq!(server.node().next_boot, "B");
    assert_eq!(server.reboots(), 0);

    // Cancel, then apply again with --reboot.
    let (_, stderr) = assert_ok(&server.apiclient(&["update", "cancel"]));
    assert!(stderr.contains("deactivated"), "{stderr}");
    assert_eq!(status(&server)["update_state"], "Staged");
    assert_eq!(server.node().next_boot, "A");
    assert_ok(&server.apiclient(&["update", "apply", "--reboot"]));
    assert_eq!(status(&server)["update_state"], "Ready");
    assert_eq!(server.reboots(), 1);
}

#[test]
fn apiclient_update_apply_reports_what_went_wrong() {
    let server = TestServer::start_with_updates(&["0.2.0"]);
    // Nothing checked yet: the server's 409 explains what to do.
    let stderr = assert_fails(&server.apiclient(&["update", "apply"]));
    assert!(stderr.contains("409"), "{stderr}");
    assert!(stderr.contains("apiclient update check"), "{stderr}");
    // Cancel with nothing activated.
    let stderr = assert_fails(&server.apiclient(&["update", "cancel"]));
    assert!(stderr.contains("no update is activated"), "{stderr}");

    // A failed prepare shows the updater's stderr.
    let dir = server.updater_dir();
    touch(
        &dir,
        "fail-update-image",
        "writing BOOT-B\nno space left on device\n",
    );
    let stderr = assert_fails(&server.apiclient(&["update", "apply", "--check"]));
    assert!(
        stderr.contains("writing BOOT-B"),
        "the whole stderr is shown: {stderr}"
    );
    assert!(
        stderr.contains("'prepare' failed (exit status 1): test-updater: no space left on device")
            || stderr.contains("'prepare' failed (exit status 1): no space left on device"),
        "{stderr}"
    );
    assert_eq!(status(&server)["update_state"], "Available");
    remove(&dir, "fail-update-image");

    // Timeout: apiclient gives up, the prepare goes on.
    touch(&dir, "hold-download", "");
    let stderr = assert_fails(&server.apiclient(&["update", "apply", "--timeout", "1"]));
    assert!(stderr.contains("Gave up after 1 s"), "{stderr}");
    assert!(stderr.contains("--timeout"), "{stderr}");
    assert_eq!(
        status(&server)["most_recent_command"]["cmd_status"],
        "Running"
    );
    remove(&dir, "hold-download");
    assert_eq!(finished(&server)["update_state"], "Staged");

    // Nothing offered: apply --check stops quietly.
    let empty = TestServer::start_with_updates(&[]);
    let (_, stderr) = assert_ok(&empty.apiclient(&["update", "apply", "--check"]));
    assert!(stderr.contains("No update is available"), "{stderr}");
    assert!(!empty
        .updater_calls()
        .iter()
        .any(|c| c.contains("update-image")));
}

#[test]
fn apiclient_reboot() {
    let server = TestServer::start();
    assert_ok(&server.apiclient(&["reboot"]));
    assert_eq!(server.reboots(), 1);
}

/// A setting committed just before an update action reaches the rendered files before the
/// updater runs: the updater reads its repository URLs from them, so running it on the old
/// files would check the wrong repository (this raced in the VM test under load).
#[test]
fn update_actions_wait_for_earlier_applies_to_finish() {
    build_test_updater();
    let defaults = storewolf::load_defaults(&[]).expect("shared defaults");
    let dir = tempfile::tempdir().unwrap();
    let rendered = dir.path().join("rendered");
    // A renderer that takes its time and marks the file only for the key the test sets.
    let apply = dir.path().join("slow-apply");
    std::fs::write(
        &apply,
        format!(
            "#!/bin/sh\ninput=$(cat)\nsleep 2\ncase \"$input\" in *settings.motd*) touch {};; esac\n",
            rendered.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&apply, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut server = TestServer::start_with(&defaults, true, Some(apply));
    // An updater that notes whether the render had finished when it was started.
    let seen = dir.path().join("seen");
    let wrapper = dir.path().join("updater");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \"$*\" in *check-update*)\n  if [ -e {r} ]; then echo rendered >> {s}; else echo stale >> {s}; fi;;\nesac\nexec {u} \"$@\"\n",
            r = rendered.display(),
            s = seen.display(),
            u = server.updater_command,
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    server.kill();
    server.updater_command = wrapper.display().to_string();
    server.spawn();

    let (code, body) = server.raw(
        "PATCH",
        "/settings?tx=race",
        Some(r#"{"motd": "a new repository"}"#),
    );
    assert_eq!(code, 204, "{body}");
    let (code, body) = server.raw("POST", "/tx/commit_and_apply?tx=race", None);
    assert_eq!(code, 200, "{body}");
    act(&server, "/actions/refresh-updates");
    let seen = std::fs::read_to_string(&seen).unwrap();
    assert_eq!(
        seen.trim(),
        "rendered",
        "the updater ran before the committed setting was rendered: {seen}"
    );
}

fn pause_until(server: &TestServer) -> String {
    let v = server.json(
        "GET",
        &format!("/settings?keys={}", constants::UPDATES_PAUSE_UNTIL_KEY),
        None,
    );
    v["updates"]["pause-until"]
        .as_str()
        .unwrap_or_else(|| panic!("no pause-until in {v}"))
        .to_string()
}

#[test]
fn apiclient_update_pause_and_resume_set_the_daemon_pause() {
    let server = TestServer::start();
    assert_eq!(pause_until(&server), constants::UPDATES_PAUSE_NONE);

    let before = jiff::Timestamp::now();
    let (_, stderr) = assert_ok(&server.apiclient(&["update", "pause", "--for", "6h"]));
    let until: jiff::Timestamp = pause_until(&server).parse().unwrap();
    let six_hours = jiff::SignedDuration::from_hours(6);
    assert!(
        until >= before + six_hours - jiff::SignedDuration::from_secs(1)
            && until <= jiff::Timestamp::now() + six_hours + jiff::SignedDuration::from_secs(1),
        "a six-hour pause from {before} ends at {until}"
    );
    assert!(
        stderr.contains(&format!("paused until {until}")),
        "{stderr}"
    );

    assert_ok(&server.apiclient(&["update", "pause"]));
    assert_eq!(pause_until(&server), constants::UPDATES_PAUSE_INDEFINITE);

    // Too long a pause is refused before anything is written.
    let stderr = assert_fails(&server.apiclient(&["update", "pause", "--for", "400d"]));
    assert!(stderr.contains("without --for"), "{stderr}");
    assert_eq!(pause_until(&server), constants::UPDATES_PAUSE_INDEFINITE);

    let (_, stderr) = assert_ok(&server.apiclient(&["update", "resume"]));
    assert!(stderr.contains("resumed"), "{stderr}");
    assert_eq!(pause_until(&server), constants::UPDATES_PAUSE_NONE);
}
