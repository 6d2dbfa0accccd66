//! End-to-end tests of the API server process, driven by the real apiclient binary and by raw
//! requests for the error paths.

use serde_json::{json, Value};
use testserver::TestServer;

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "apiclient failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn get_os_and_set_a_setting_with_apiclient() {
    let server = TestServer::start();
    let os: Value = serde_json::from_str(&stdout(&server.apiclient(&["get", "os"]))).unwrap();
    assert_eq!(os["os"]["variant_id"], "test");
    assert_eq!(os["os"]["version_id"], "0.1.0");

    stdout(&server.apiclient(&["set", "motd=hello from the test"]));
    let got: Value =
        serde_json::from_str(&stdout(&server.apiclient(&["get", "settings.motd"]))).unwrap();
    assert_eq!(got["settings"]["motd"], "hello from the test");

    // The renderer was handed exactly the changed key.
    let applies = server.applies(1);
    assert_eq!(applies.len(), 1, "{applies:?}");
    assert_eq!(applies[0], "|[\"settings.motd\"]");

    // History records the change with old and new values.
    let history = server.json("GET", "/history", None);
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["changes"][0]["key"], "settings.motd");
    assert_eq!(last["changes"][0]["new"], "\"hello from the test\"");
    assert!(last["transaction"]
        .as_str()
        .unwrap()
        .starts_with("apiclient-set-"));
}

#[test]
fn keypair_values_take_the_type_the_model_wants() {
    let server = TestServer::start();
    stdout(&server.apiclient(&[
        "set",
        "motd=42",
        "settings.updates.seed=7",
        "updates.ignore-waves=true",
        "kernel.sysctl.\"net.ipv4.ip_forward\"=1",
        "ntp.time-servers=[\"a.example\", \"b.example\"]",
    ]));
    let s = server.json("GET", "/settings", None);
    assert_eq!(s["ntp"]["time-servers"], json!(["a.example", "b.example"]));
    // A motd that looks like a list stays the text it is.
    stdout(&server.apiclient(&["set", "motd=[not a list]"]));
    assert_eq!(
        server.json("GET", "/settings", None)["motd"],
        "[not a list]"
    );
    stdout(&server.apiclient(&["set", "motd=42"]));
    let s = server.json("GET", "/settings", None);
    assert_eq!(s["motd"], "42");
    assert_eq!(s["updates"]["seed"], 7);
    assert_eq!(s["updates"]["ignore-waves"], true);
    assert_eq!(s["kernel"]["sysctl"]["net.ipv4.ip_forward"], "1");
}

#[test]
fn set_json_apply_history_and_undo() {
    let server = TestServer::start();
    let before = server.json("GET", "/settings?keys=settings.motd", None);
    stdout(&server.apiclient(&[
        "set",
        "-j",
        r#"{"motd":"from json","ntp":{"time-servers":["ntp.example.com"]}}"#,
    ]));
    let toml = server.dir.path().join("in.toml");
    std::fs::write(&toml, "[settings.network]\nhostname = \"node-1\"\n").unwrap();
    stdout(&server.apiclient(&["apply", toml.to_str().unwrap()]));
    let s = server.json("GET", "/settings", None);
    assert_eq!(s["motd"], "from json");
    assert_eq!(s["ntp"]["time-servers"], json!(["ntp.example.com"]));
    assert_eq!(s["network"]["hostname"], "node-1");

    // Undo the apply, then the set -j: motd goes back to the seeded default.
    stdout(&server.apiclient(&["undo"]));
    let s = server.json("GET", "/settings", None);
    assert!(s["network"].get("hostname").is_none(), "{s}");
    stdout(&server.apiclient(&["undo"]));
    let after = server.json("GET", "/settings?keys=settings.motd", None);
    assert_eq!(before, after);
    let history = server.json("GET", "/history", None);
    let txs: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["transaction"].as_str().unwrap())
        .collect();
    assert!(
        txs.iter().filter(|t| t.starts_with("undo-")).count() == 2,
        "{txs:?}"
    );
}

#[test]
fn transactions_list_show_delete_and_empty_commit() {
    let server = TestServer::start();
    let (status, _) = server.raw("PATCH", "/settings?tx=mine", Some(r#"{"motd":"pending"}"#));
    assert_eq!(status, 204);
    assert_eq!(server.json("GET", "/tx/list", None), json!(["mine"]));
    assert_eq!(
        server.json("GET", "/tx?tx=mine", None),
        json!({"motd": "pending"})
    );
    // Not live yet.
    assert_ne!(server.json("GET", "/settings", None)["motd"], "pending");
    assert_eq!(
        server.json("DELETE", "/tx?tx=mine", None),
        json!(["settings.motd"])
    );
    let (status, body) = server.raw("POST", "/tx/commit?tx=mine", None);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("no pending settings"), "{body}");

    server.raw("PATCH", "/settings?tx=two", Some(r#"{"motd":"committed"}"#));
    assert_eq!(
        server.json("POST", "/tx/commit?tx=two", None),
        json!(["settings.motd"])
    );
    assert_eq!(server.json("GET", "/settings", None)["motd"], "committed");
    // Committing the same value again changes nothing and applies nothing.
    server.raw(
        "PATCH",
        "/settings?tx=three",
        Some(r#"{"motd":"committed"}"#),
    );
    assert_eq!(
        server.json("POST", "/tx/commit_and_apply?tx=three", None),
        json!([])
    );
}

#[test]
fn bad_input_is_refused_with_a_json_error_and_nothing_is_written() {
    let server = TestServer::start();
    let settings_before = server.json("GET", "/settings", None);
    let cases: Vec<(&str, String, Option<String>, u16, &str)> = vec![
        (
            "PATCH",
            "/settings".into(),
            Some("{not json".into()),
            400,
            "not valid",
        ),
        (
            "PATCH",
            "/settings".into(),
            Some(r#"{"motd": 5}"#.into()),
            400,
            "settings.motd",
        ),
        (
            "PATCH",
            "/settings".into(),
            Some(r#"{"motd":"ok","network":{"hostname":"Bad_Host"}}"#.into()),
            400,
            "settings.network.hostname",
        ),
        (
            "PATCH",
            "/settings".into(),
            Some(r#"{"no-such-setting": 1}"#.into()),
            400,
            "no-such-setting",
        ),
        (
            "PATCH",
            "/settings".into(),
            Some(r#"{"motd":"two\nlines"}"#.into()),
            400,
            "settings.motd",
        ),
        ("PATCH", "/settings".into(), Some("".into()), 400, "empty"),
        (
            "PATCH",
            "/settings".into(),
            Some("[1,2]".into()),
            400,
            "object",
        ),
        (
            "PATCH",
            "/settings?tx=../../etc".into(),
            Some(r#"{"motd":"x"}"#.into()),
            400,
            "transaction",
        ),
        (
            "PATCH",
            "/settings?tx=".into(),
            Some(r#"{"motd":"x"}"#.into()),
            400,
            "transaction",
        ),
        (
            "PATCH",
            "/settings?bogus=1".into(),
            Some(r#"{"motd":"x"}"#.into()),
            400,
            "query",
        ),
        (
            "PATCH",
            "/settings/keypair".into(),
            Some(r#"{"request_payload":["motd"]}"#.into()),
            400,
            "key=value",
        ),
        (
            "PATCH",
            "/settings/keypair".into(),
            Some(r#"{"request_payload":["network.hostname=-x-"]}"#.into()),
            400,
            "settings.network.hostname",
        ),
        (
            "GET",
            "/settings?keys=settings..motd".into(),
            None,
            400,
            "Invalid key",
        ),
        (
            "GET",
            "/metadata/affected-services".into(),
            None,
            400,
            "keys",
        ),
        ("GET", "/no/such/route".into(), None, 404, "no route"),
        ("DELETE", "/settings".into(), None, 405, "not allowed"),
        (
            "POST",
            "/history/undo?id=999999".into(),
            None,
            404,
            "999999",
        ),
    ];
    for (method, uri, body, want, needle) in cases {
        let (status, text) = server.raw(method, &uri, body.as_deref());
        assert_eq!(status, want, "{method} {uri}: {text}");
        let parsed: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {uri}: body is not JSON ({e}): {text}"));
        let message = parsed["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle) || parsed["key"].as_str() == Some(needle),
            "{method} {uri}: error {text} does not mention {needle}"
        );
    }
    // An oversized body: the server answers 413 as soon as it sees the length, so send it on a
    // plain stream and read the answer even if the rest of the body is not taken.
    let (status, text) = oversized_patch(&server.socket, 2 * 1024 * 1024);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("limit"), "{text}");

    assert_eq!(server.json("GET", "/tx/list", None), json!([]));
    assert_eq!(server.json("GET", "/settings", None), settings_before);
}

fn oversized_patch(socket: &std::path::Path, size: usize) -> (u16, String) {
    use std::io::{Read, Write};
    let body = format!("{{\"motd\":\"{}\"}}", "a".repeat(size));
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    let head = format!(
        "PATCH /settings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(body.as_bytes());
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let text = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, text)
}

#[test]
fn metadata_services_and_configuration_files() {
    let server = TestServer::start();
    let affected = server.json(
        "GET",
        "/metadata/affected-services?keys=settings.motd,settings.ntp.time-servers",
        None,
    );
    assert!(
        !affected["settings.motd"].as_array().unwrap().is_empty(),
        "{affected}"
    );
    assert!(
        !affected["settings.ntp.time-servers"]
            .as_array()
            .unwrap()
            .is_empty(),
        "a key inherits its parent's services: {affected}"
    );
    let services = server.json("GET", "/services", None);
    let files = server.json("GET", "/configuration-files", None);
    for (name, service) in services.as_object().unwrap() {
        for file in service["configuration-files"].as_array().unwrap() {
            let file = file.as_str().unwrap();
            assert!(
                files[file]["path"].is_string(),
                "service {name} names configuration file {file}, which is not declared"
            );
        }
    }
    let one = services.as_object().unwrap().keys().next().unwrap().clone();
    let filtered = server.json("GET", &format!("/services?names={one}"), None);
    assert_eq!(filtered.as_object().unwrap().len(), 1);
    let generators = server.json("GET", "/metadata/setting-generators", None);
    assert!(generators.is_object());
    let model = server.json("GET", "/", None);
    for root in ["settings", "services", "configuration-files", "os"] {
        assert!(model.get(root).is_some(), "GET / lacks {root}: {model}");
    }
    let only_os = server.json("GET", "/?prefix=os", None);
    assert_eq!(only_os.as_object().unwrap().len(), 1, "{only_os}");
}

#[test]
fn apiclient_errors_are_one_line_and_nonzero() {
    let server = TestServer::start();
    let out = server.apiclient(&["set", "network.hostname=Not_Valid"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("settings.network.hostname"), "{err}");
    // Nothing left pending by the failed set.
    assert_eq!(server.json("GET", "/tx/list", None), json!([]));

    let out = std::process::Command::new(testserver::workspace_bin("apiclient"))
        .args(["--socket-path", "/nonexistent/api.sock", "get"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/api.sock"), "{err}");
}

#[test]
fn concurrent_writers_are_serialized_and_readers_never_see_half_a_commit() {
    let server = std::sync::Arc::new(TestServer::start());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (server, stop) = (server.clone(), stop.clone());
        readers.push(std::thread::spawn(move || {
            let mut seen = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let s = server.json("GET", "/settings", None);
                let motd = s["motd"].as_str().unwrap_or_default().to_string();
                if let Some(n) = motd.strip_prefix("gen-") {
                    let host = s["network"]["hostname"].as_str().unwrap_or_default();
                    assert_eq!(host, format!("host-{n}"), "half a commit is visible: {s}");
                    seen += 1;
                }
            }
            seen
        }));
    }
    let mut writers = Vec::new();
    for w in 0..4 {
        let server = server.clone();
        writers.push(std::thread::spawn(move || {
            for i in 0..15 {
                let n = format!("{w}x{i}");
                let tx = format!("w{w}-{i}");
                let body = format!(r#"{{"motd":"gen-{n}","network":{{"hostname":"host-{n}"}}}}"#);
                let (status, text) =
                    server.raw("PATCH", &format!("/settings?tx={tx}"), Some(&body));
                assert_eq!(status, 204, "{text}");
                let (status, text) =
                    server.raw("POST", &format!("/tx/commit_and_apply?tx={tx}"), None);
                assert_eq!(status, 200, "{text}");
            }
        }));
    }
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(seen > 0, "readers never saw a committed generation");
    let history = server.json("GET", "/history", None);
    let ids: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(ids.len() >= 60, "{} commits recorded", ids.len());
}

#[test]
fn the_launch_transaction_yields_to_commits_made_after_it_was_staged() {
    let server = TestServer::start();
    let patch = |tx: &str, body: &str| {
        let (status, answer) = server.raw("PATCH", &format!("/settings?tx={tx}"), Some(body));
        assert_eq!(status, 204, "{answer}");
    };
    patch(
        constants::LAUNCH_TX,
        r#"{"motd": "boot value", "timezone": "Europe/Paris"}"#,
    );
    patch("user", r#"{"motd": "user value"}"#);
    assert_eq!(
        server.json("POST", "/tx/commit?tx=user", None),
        json!(["settings.motd"])
    );
    // motd was staged in the launch transaction before the user's commit: only the other key
    // changes, and the renderer is told exactly that.
    assert_eq!(
        server.json("POST", "/tx/commit_and_apply?tx=ballast-launch", None),
        json!(["settings.timezone"])
    );
    let settings = server.json("GET", "/settings", None);
    assert_eq!(settings["motd"], "user value");
    assert_eq!(settings["timezone"], "Europe/Paris");
    assert_eq!(server.applies(1), ["|[\"settings.timezone\"]"]);
    assert_eq!(server.json("GET", "/tx/list", None), json!([]));

    // Any other transaction commits every key: the last commit wins.
    patch("early", r#"{"motd": "early"}"#);
    patch("late", r#"{"motd": "late"}"#);
    server.json("POST", "/tx/commit?tx=late", None);
    assert_eq!(
        server.json("POST", "/tx/commit?tx=early", None),
        json!(["settings.motd"])
    );
    assert_eq!(server.json("GET", "/settings", None)["motd"], "early");
}
