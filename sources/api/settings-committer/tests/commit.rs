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
        server.json("GET", "/tx?tx=ballast-launch", None)["motd"],
        "Welcome to Ballast!"
    );

    let first = committer(&server.socket, &[]);
    assert!(first.status.success(), "{first:?}");
    assert!(
        stderr(&first).contains("committed transaction 'ballast-launch'"),
        "{first:?}"
    );
    assert_eq!(
        server.json("GET", "/settings", None)["motd"],
        "Welcome to Ballast!"
    );
    assert_eq!(
        server.json("GET", "/tx?tx=ballast-launch", None),
        serde_json::json!({})
    );

    let second = committer(&server.socket, &[]);
    assert!(second.status.success(), "{second:?}");
    assert!(stderr(&second).contains("nothing to commit"), "{second:?}");
}

#[test]
fn empty_or_unknown_transaction_is_not_an_error() {
    let server = TestServer::start();
    for tx in ["ballast-launch", "never-used"] {
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
