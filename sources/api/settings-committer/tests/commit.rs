//! settings-committer against the real API server, run as the boot unit runs it.

use std::path::Path;
use std::process::{Command, Output};
use testserver::TestServer;

fn committer(socket: &Path, extra: &[&str]) -> Output {
    Command::new(testserver::workspace_bin("settings-committer"))
        .arg("--socket-path")
        .arg(socket)
        .args(extra)
        .output()
        .expect("run settings-committer")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn commits_the_launch_transaction_then_finds_nothing_to_commit() {
    let server = TestServer::start_with(&models::shared_defaults(), false, None);
    assert_eq!(server.json("GET", "/settings", None), serde_json::json!({}));
    assert_eq!(
        server.json("GET", &format!("/tx?tx={}", constants::LAUNCH_TX), None)["motd"],
        "Welcome to Ballast!"
    );

    let first = committer(&server.socket, &[]);
    assert!(first.status.success(), "{first:?}");
    assert!(
        stderr(&first).contains(&format!("committed transaction '{}'", constants::LAUNCH_TX)),
        "{first:?}"
    );
    assert_eq!(
        server.json("GET", "/settings", None)["motd"],
        "Welcome to Ballast!"
    );
    assert_eq!(
        server.json("GET", &format!("/tx?tx={}", constants::LAUNCH_TX), None),
        serde_json::json!({})
    );

    let second = committer(&server.socket, &[]);
    assert!(second.status.success(), "{second:?}");
    assert!(stderr(&second).contains("nothing to commit"), "{second:?}");
}

#[test]
fn empty_or_unknown_transaction_is_not_an_error() {
    let server = TestServer::start();
    for tx in [constants::LAUNCH_TX, "never-used"] {
        let output = committer(&server.socket, &["--tx", tx]);
        assert!(output.status.success(), "{output:?}");
        assert!(stderr(&output).contains("nothing to commit"), "{output:?}");
    }
}

#[test]
fn commits_only_the_named_transaction() {
    let server = TestServer::start();
    server.raw("PATCH", "/settings?tx=mine", Some(r#"{"motd": "mine"}"#));
    server.raw("PATCH", "/settings?tx=other", Some(r#"{"motd": "other"}"#));
    let output = committer(&server.socket, &["--tx", "mine"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(server.json("GET", "/settings", None)["motd"], "mine");
    assert_eq!(
        server.json("GET", "/tx/list", None),
        serde_json::json!(["other"])
    );
}

#[test]
fn refusal_fails_with_the_server_message() {
    let server = TestServer::start();
    let output = committer(&server.socket, &["--tx", "bad name!"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = stderr(&output);
    assert!(text.starts_with("settings-committer: "), "{text}");
    assert!(text.contains("status 400"), "{text}");
}

#[test]
fn missing_api_server_fails_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("absent.sock");
    let output = committer(&socket, &[]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(stderr(&output).contains("absent.sock"), "{output:?}");
}

/// The boot race of issue 14: the API answers while the launch transaction is still pending, a
/// user sets a value, and only then does settings-committer commit the launch transaction. The
/// user's value must stay; defaults, user data and generated values for the keys the user did
/// not set must still land.
#[test]
fn a_user_set_during_boot_survives_the_launch_commit() {
    let server = TestServer::start_with(&models::shared_defaults(), false, None);
    // What early-boot-config (user data) and sundog (a generated value) stage.
    let (status, body) = server.raw(
        "PATCH",
        "/settings?tx=ballast-launch",
        Some(r#"{"ntp": {"time-servers": ["user-data.example"]}}"#),
    );
    assert_eq!(status, 204, "{body}");
    let (status, body) = server.raw(
        "PATCH",
        "/settings?tx=ballast-launch",
        Some(r#"{"network": {"hostname": "generated-name"}}"#),
    );
    assert_eq!(status, 204, "{body}");

    // The user, as soon as the API answers: two settings, one of them also in user data.
    let set = server.apiclient(&[
        "set",
        "motd=hello from the VM test",
        "ntp.time-servers=[\"user.example\"]",
    ]);
    assert!(set.status.success(), "{set:?}");

    let output = committer(&server.socket, &[]);
    assert!(output.status.success(), "{output:?}");
    let settings = server.json("GET", "/settings", None);
    assert_eq!(settings["motd"], "hello from the VM test", "{settings}");
    assert_eq!(
        settings["ntp"]["time-servers"],
        serde_json::json!(["user.example"]),
        "{settings}"
    );
    // Keys the user did not set: default, generated value.
    assert_eq!(settings["timezone"], "Etc/UTC", "{settings}");
    assert_eq!(
        settings["network"]["hostname"], "generated-name",
        "{settings}"
    );
    assert_eq!(
        server.json("GET", "/tx/list", None),
        serde_json::json!([]),
        "the launch transaction is gone"
    );
}
