//! sundog against the real API server, run as the boot unit runs it: defaults seeded into the
//! uncommitted launch transaction, generators declared in metadata.

use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use testserver::TestServer;

/// Writes an executable shell script and returns its path.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A server whose store is seeded with exactly `defaults_toml` (left pending in ballast-launch).
fn server_with(defaults_toml: &str) -> TestServer {
    let defaults = models::Defaults::from_toml_str(defaults_toml)
        .unwrap_or_else(|e| panic!("test defaults: {e}\n{defaults_toml}"));
    TestServer::start_with(&defaults, false, None)
}

fn sundog(server: &TestServer, args: &[&str], path_env: Option<&str>) -> Output {
    let mut command = Command::new(testserver::workspace_bin("sundog"));
    command.arg("--socket-path").arg(&server.socket).args(args);
    if let Some(path) = path_env {
        command.env("PATH", path);
    }
    command.output().expect("run sundog")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The final summary line sundog prints.
fn summary(output: &Output) -> String {
    stderr(output)
        .lines()
        .rfind(|l| l.starts_with("sundog: "))
        .unwrap_or_else(|| panic!("no summary line in {}", stderr(output)))
        .to_string()
}

fn launch_tx(server: &TestServer) -> Value {
    server.json("GET", &format!("/tx?tx={}", constants::LAUNCH_TX), None)
}

#[test]
fn generates_missing_values_from_json_and_plain_output() {
    let dir = tempfile::tempdir().unwrap();
    let json_gen = script(dir.path(), "gen-json", r#"echo '"node-1"'"#);
    let plain_gen = script(dir.path(), "gen-plain", "echo '  America/New_York  '");
    let number_gen = script(dir.path(), "gen-number", "echo 1234");
    let server = server_with(&format!(
        r#"
        [settings]
        motd = "hello"
        [metadata.settings.network.hostname]
        setting-generator = "{}"
        [metadata.settings.timezone]
        setting-generator = {{ command = "{}", timeout-seconds = 5 }}
        [metadata.settings.updates.seed]
        setting-generator = {{ command = "{}", strength = "weak" }}
        "#,
        json_gen.display(),
        plain_gen.display(),
        number_gen.display()
    ));

    let output = sundog(&server, &["--jobs", "1"], None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        summary(&output),
        "sundog: generated settings.network.hostname, generated settings.timezone, generated settings.updates.seed"
    );
    let tx = launch_tx(&server);
    assert_eq!(tx["network"]["hostname"], "node-1");
    assert_eq!(tx["timezone"], "America/New_York");
    assert_eq!(tx["updates"]["seed"], 1234);
    assert_eq!(tx["motd"], "hello");
    assert_eq!(server.json("GET", "/settings", None), json!({}));

    server.json(
        "POST",
        &format!("/tx/commit?tx={}", constants::LAUNCH_TX),
        None,
    );
    let live = server.json("GET", "/settings", None);
    assert_eq!(live["network"]["hostname"], "node-1");
    assert_eq!(live["updates"]["seed"], 1234);
}

#[test]
fn failing_generators_leave_their_key_unset_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let failing = script(
        dir.path(),
        "gen-fail",
        "echo 'partial' ; echo 'metadata service said no' >&2; exit 3",
    );
    let refused = script(dir.path(), "gen-refused", r#"printf '%s\n' '"1\n2"'"#);
    let silent = script(dir.path(), "gen-silent", "exit 0");
    // Prints a number for a string setting: stored as the string "1".
    let good = script(dir.path(), "gen-good", "echo 1");
    let server = server_with(&format!(
        r#"
        [settings]
        motd = "hello"
        [metadata.settings.kernel.sysctl."vm.failing"]
        setting-generator = "{}"
        [metadata.settings.kernel.sysctl."vm.refused"]
        setting-generator = "{}"
        [metadata.settings.kernel.sysctl."vm.silent"]
        setting-generator = "{}"
        [metadata.settings.kernel.sysctl."vm.missing"]
        setting-generator = "/nonexistent/generator --flag"
        [metadata.settings.kernel.sysctl."vm.badmeta"]
        setting-generator = {{ command = "{}", timeout = 3 }}
        [metadata.settings.kernel.sysctl."vm.good"]
        setting-generator = "{}"
        "#,
        failing.display(),
        refused.display(),
        silent.display(),
        good.display(),
        good.display()
    ));

    let output = sundog(&server, &[], None);
    assert!(output.status.success(), "{}", stderr(&output));
    let line = summary(&output);
    for expected in [
        r#"failed settings.kernel.sysctl."vm.failing" ("#,
        "exited with status 3; stderr: metadata service said no",
        r#"failed settings.kernel.sysctl."vm.refused" (the API server refused the value"#,
        "status 400",
        "line break",
        r#"failed settings.kernel.sysctl."vm.silent" ("#,
        "printed nothing on stdout",
        "'/nonexistent/generator --flag' could not be started: ",
        "unknown field `timeout`",
        r#"generated settings.kernel.sysctl."vm.good""#,
    ] {
        assert!(line.contains(expected), "missing {expected:?} in {line}");
    }
    // The failures are logged at error level too.
    assert!(stderr(&output).contains("ERROR"), "{}", stderr(&output));

    let sysctl = &launch_tx(&server)["kernel"]["sysctl"];
    assert_eq!(
        sysctl,
        &json!({"vm.good": "1"}),
        "only the good value lands"
    );
}

#[test]
fn timeout_kills_the_generator_and_what_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let slow = script(
        dir.path(),
        "gen-slow",
        &format!(
            "sleep 60 &\necho $! > {}\necho 'working on it' >&2\nwait",
            pid_file.display()
        ),
    );
    let server = server_with(&format!(
        r#"
        [settings]
        motd = "hello"
        [metadata.settings.network.hostname]
        setting-generator = {{ command = "{}", timeout-seconds = 1 }}
        "#,
        slow.display()
    ));

    let start = Instant::now();
    let output = sundog(&server, &[], None);
    let elapsed = start.elapsed();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    let line = summary(&output);
    assert!(
        line.contains("failed settings.network.hostname (")
            && line.contains("timed out after 1 s and was killed"),
        "{line}"
    );
    assert!(launch_tx(&server).get("network").is_none());

    // The background `sleep` was in the generator's process group and died with it.
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = std::fs::read_to_string(&stat)
            .ok()
            .and_then(|s| s.rsplit(')').next().map(|r| r.trim().to_string()));
        match state {
            None => break,
            Some(rest) if rest.starts_with('Z') => break,
            Some(rest) => {
                assert!(
                    Instant::now() < deadline,
                    "generator's child still running: {rest}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn declared_default_is_used_when_the_generator_fails() {
    let dir = tempfile::tempdir().unwrap();
    let failing = script(dir.path(), "gen-fail", "echo 'no network' >&2; exit 1");
    let refused = script(dir.path(), "gen-refused", "echo Bad_Host");
    let server = server_with(&format!(
        r#"
        [settings]
        motd = "hello"
        [metadata.settings.timezone]
        setting-generator = {{ command = "{}", default = "Etc/UTC" }}
        [metadata.settings.network.hostname]
        setting-generator = {{ command = "{}", default = "localhost" }}
        [metadata.settings.kernel.sysctl."vm.x"]
        setting-generator = {{ command = "{}", default = "bad\nvalue" }}
        "#,
        failing.display(),
        refused.display(),
        failing.display()
    ));

    let output = sundog(&server, &[], None);
    assert!(output.status.success(), "{}", stderr(&output));
    let line = summary(&output);
    assert!(
        line.contains("used default for settings.network.hostname (the API server refused the value \"Bad_Host\""),
        "{line}"
    );
    assert!(
        line.contains("used default for settings.timezone (")
            && line.contains("stderr: no network"),
        "{line}"
    );
    assert!(
        line.contains(r#"failed settings.kernel.sysctl."vm.x" ("#)
            && line.contains("the default \"bad\\nvalue\" was refused too"),
        "{line}"
    );
    let tx = launch_tx(&server);
    assert_eq!(tx["timezone"], "Etc/UTC");
    assert_eq!(tx["network"]["hostname"], "localhost");
    assert!(tx["kernel"].get("sysctl").is_none(), "{tx}");
}

#[test]
fn keys_that_have_a_value_are_not_regenerated() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs.log");
    let counting = |name: &str, value: &str| {
        script(
            dir.path(),
            name,
            &format!("echo {name} >> {}\necho {value}", runs.display()),
        )
    };
    let motd_gen = counting("gen-motd", "generated-motd");
    let tz_gen = counting("gen-tz", "Europe/Paris");
    let server = server_with(&format!(
        r#"
        [settings]
        motd = "from defaults"
        [metadata.settings.motd]
        setting-generator = "{}"
        [metadata.settings.timezone]
        setting-generator = "{}"
        "#,
        motd_gen.display(),
        tz_gen.display()
    ));
    let ran = || std::fs::read_to_string(&runs).unwrap_or_default();

    // motd is pending in the launch transaction (a default, or user data): kept.
    let first = sundog(&server, &[], None);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(
        summary(&first),
        "sundog: kept settings.motd (already set), generated settings.timezone"
    );
    assert_eq!(ran(), "gen-tz\n");
    assert_eq!(launch_tx(&server)["motd"], "from defaults");

    // Once committed, the generated value is live and is not generated again on the next boot.
    server.json(
        "POST",
        &format!("/tx/commit?tx={}", constants::LAUNCH_TX),
        None,
    );
    let second = sundog(&server, &[], None);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(
        summary(&second),
        "sundog: kept settings.motd (already set), kept settings.timezone (already set)"
    );
    assert_eq!(ran(), "gen-tz\n");
    assert_eq!(launch_tx(&server), json!({}));
    assert_eq!(
        server.json("GET", "/settings", None)["timezone"],
        "Europe/Paris"
    );
}

#[test]
fn shipped_bork_generator_fills_the_update_seed() {
    let server = TestServer::start_with(&models::shared_defaults(), false, None);
    let bork = testserver::workspace_bin("bork");
    let path = format!(
        "{}:{}",
        bork.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = sundog(&server, &[], Some(&path));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(summary(&output), "sundog: generated settings.updates.seed");
    let seed = launch_tx(&server)["updates"]["seed"]
        .as_u64()
        .expect("seed is a number");
    assert!(seed <= u64::from(models::MAX_UPDATE_SEED));
}

#[test]
fn no_generators_is_a_quiet_success() {
    let server = server_with("[settings]\nmotd = \"hello\"\n");
    let output = sundog(&server, &[], None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(summary(&output), "sundog: no setting generators declared");
}

#[test]
fn missing_api_server_fails_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(testserver::workspace_bin("sundog"))
        .arg("--socket-path")
        .arg(dir.path().join("absent.sock"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = stderr(&output);
    assert!(
        text.starts_with("sundog: Cannot reach the API server") && text.contains("absent.sock"),
        "{text}"
    );
}
