//! Runs the real `apiclient` binary against a small fake API server on a temporary Unix socket
//! and checks the exact requests it sends, its output and its exit codes.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio::process::Command;

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    body: String,
    content_type: Option<String>,
    host: Option<String>,
}

impl Seen {
    /// The `tx` query parameter.
    fn tx(&self) -> &str {
        self.uri
            .split_once("?tx=")
            .map(|(_, tx)| tx)
            .unwrap_or_else(|| panic!("no tx in {}", self.uri))
    }

    fn path(&self) -> &str {
        self.uri.split('?').next().unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// Decides the status and body of the answer to each request.
type Responder = Arc<dyn Fn(&Seen) -> (u16, String) + Send + Sync>;

struct FakeServer {
    _dir: TempDir,
    socket: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeServer {
    /// Answers everything with 204 and no body.
    fn start_ok() -> Self {
        Self::start(|_| (204, String::new()))
    }

    fn start(respond: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("api.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let respond: Responder = Arc::new(respond);

        let seen_by_server = seen.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let seen = seen_by_server.clone();
                let respond = respond.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let seen = seen.clone();
                        let respond = respond.clone();
                        async move {
                            let header = |name| {
                                request
                                    .headers()
                                    .get(name)
                                    .map(|v: &hyper::header::HeaderValue| {
                                        v.to_str().unwrap().to_string()
                                    })
                            };
                            let content_type = header(hyper::header::CONTENT_TYPE);
                            let host = header(hyper::header::HOST);
                            let method = request.method().to_string();
                            let uri = request.uri().to_string();
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let entry = Seen {
                                method,
                                uri,
                                body: String::from_utf8(body.to_vec()).unwrap(),
                                content_type,
                                host,
                            };
                            let (status, body) = respond(&entry);
                            seen.lock().unwrap().push(entry);
                            let response = Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(body)))
                                .unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });

        FakeServer {
            _dir: dir,
            socket,
            seen,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Runs `apiclient -s SOCKET ARGS...`, feeding `stdin` if given.
async fn run(socket: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_apiclient"));
    command
        .arg("--socket-path")
        .arg(socket)
        .args(args)
        .env_remove("APICLIENT_SOCKET")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).await.unwrap();
        drop(pipe);
    }
    child.wait_with_output().await.unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}, stderr: {}",
        output.status.code(),
        stderr(output)
    );
}

/// Checks a transaction name: `apiclient-<purpose>-` and 16 letters or digits.
fn assert_tx_name(tx: &str, purpose: &str) {
    let prefix = format!("apiclient-{purpose}-");
    let random = tx
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{tx} doesn't start with {prefix}"));
    assert_eq!(random.len(), 16, "{tx}");
    assert!(random.chars().all(|c| c.is_ascii_alphanumeric()), "{tx}");
}

#[tokio::test]
async fn set_keypairs_patches_then_commits() {
    let server = FakeServer::start_ok();
    let output = run(
        &server.socket,
        &[
            "set",
            "motd=hello world",
            "settings.ntp.time-servers=[\"a\"]",
        ],
        None,
    )
    .await;
    assert_success(&output);
    assert_eq!(stdout(&output), "");

    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    let tx = seen[0].tx();
    assert_tx_name(tx, "set");

    assert_eq!(seen[0].method, "PATCH");
    assert_eq!(seen[0].uri, format!("/settings/keypair?tx={tx}"));
    assert_eq!(
        seen[0].json(),
        json!({"request_payload": ["settings.motd=hello world", "settings.ntp.time-servers=[\"a\"]"]})
    );
    assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(seen[0].host.as_deref(), Some("localhost"));

    assert_eq!(seen[1].method, "POST");
    assert_eq!(seen[1].uri, format!("/tx/commit_and_apply?tx={tx}"));
    assert_eq!(seen[1].body, "");
    assert_eq!(seen[1].content_type, None);
}

#[tokio::test]
async fn set_json_strips_outer_settings() {
    let server = FakeServer::start_ok();
    for json in [
        r#"{"settings": {"motd": "hi", "kernel": {"lockdown": "none"}}}"#,
        r#"{"motd": "hi", "kernel": {"lockdown": "none"}}"#,
    ] {
        let output = run(&server.socket, &["set", "-j", json], None).await;
        assert_success(&output);
    }

    let seen = server.seen();
    assert_eq!(seen.len(), 4, "{seen:#?}");
    for pair in seen.chunks(2) {
        let tx = pair[0].tx();
        assert_tx_name(tx, "set");
        assert_eq!(pair[0].method, "PATCH");
        assert_eq!(pair[0].uri, format!("/settings?tx={tx}"));
        assert_eq!(
            pair[0].json(),
            json!({"motd": "hi", "kernel": {"lockdown": "none"}})
        );
        assert_eq!(pair[1].method, "POST");
        assert_eq!(pair[1].uri, format!("/tx/commit_and_apply?tx={tx}"));
    }
    // Every invocation uses a fresh transaction.
    assert_ne!(seen[0].tx(), seen[2].tx());
}

#[tokio::test]
async fn apply_patches_files_in_order_then_commits_once() {
    let server = FakeServer::start_ok();
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.toml");
    let second = dir.path().join("second.json");
    std::fs::write(
        &first,
        "[settings]\nmotd = \"one\"\n[settings.ntp]\ntime-servers = [\"a\"]\n",
    )
    .unwrap();
    std::fs::write(&second, r#"{"settings": {"motd": "two"}}"#).unwrap();
    let second_uri = format!("file://{}", second.display());

    let output = run(
        &server.socket,
        &["apply", first.to_str().unwrap(), &second_uri],
        None,
    )
    .await;
    assert_success(&output);
    assert_eq!(stdout(&output), "");

    let seen = server.seen();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    let tx = seen[0].tx();
    assert_tx_name(tx, "apply");
    assert_eq!(seen[0].method, "PATCH");
    assert_eq!(seen[0].uri, format!("/settings?tx={tx}"));
    assert_eq!(
        seen[0].json(),
        json!({"motd": "one", "ntp": {"time-servers": ["a"]}})
    );
    assert_eq!(seen[1].method, "PATCH");
    assert_eq!(seen[1].uri, format!("/settings?tx={tx}"));
    assert_eq!(seen[1].json(), json!({"motd": "two"}));
    assert_eq!(seen[2].method, "POST");
    assert_eq!(seen[2].uri, format!("/tx/commit_and_apply?tx={tx}"));
}

#[tokio::test]
async fn apply_reads_stdin() {
    let server = FakeServer::start_ok();
    for args in [&["apply"][..], &["apply", "-"][..]] {
        let output = run(&server.socket, args, Some("[settings]\nmotd = \"piped\"\n")).await;
        assert_success(&output);
    }
    let seen = server.seen();
    assert_eq!(seen.len(), 4, "{seen:#?}");
    for pair in seen.chunks(2) {
        assert_eq!(pair[0].path(), "/settings");
        assert_eq!(pair[0].json(), json!({"motd": "piped"}));
        assert_eq!(pair[1].path(), "/tx/commit_and_apply");
    }
}

#[tokio::test]
async fn apply_bad_input_sends_nothing() {
    let server = FakeServer::start_ok();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&good, "[settings]\nmotd = \"x\"\n").unwrap();
    std::fs::write(&bad, "motd = \"no settings table\"\n").unwrap();

    let output = run(
        &server.socket,
        &["apply", good.to_str().unwrap(), bad.to_str().unwrap()],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("apiclient: "), "{err}");
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains("'settings'"), "{err}");
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn apply_failure_on_second_document_discards_the_transaction() {
    let server = FakeServer::start(|seen| {
        if seen.method == "PATCH" && seen.body.contains("bogus") {
            (
                400,
                r#"{"error":"unknown setting 'bogus'","key":"settings.bogus"}"#.into(),
            )
        } else {
            (204, String::new())
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.toml");
    let second = dir.path().join("second.toml");
    std::fs::write(&first, "[settings]\nmotd = \"x\"\n").unwrap();
    std::fs::write(&second, "[settings]\nbogus = 1\n").unwrap();

    let output = run(
        &server.socket,
        &["apply", first.to_str().unwrap(), second.to_str().unwrap()],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("second.toml"), "{err}");
    assert!(err.contains("400 Bad Request"), "{err}");
    assert!(err.contains("unknown setting 'bogus'"), "{err}");

    let seen = server.seen();
    let methods: Vec<&str> = seen.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods, ["PATCH", "PATCH", "DELETE"], "{seen:#?}");
    let tx = seen[0].tx();
    assert_eq!(seen[2].uri, format!("/tx?tx={tx}"));
}

#[tokio::test]
async fn set_rejected_by_server_prints_one_line_and_cleans_up() {
    let server = FakeServer::start(|seen| {
        match seen.method.as_str() {
        "PATCH" => (
            400,
            r#"{"error":"invalid value for settings.motd: expected a string","key":"settings.motd"}"#
                .into(),
        ),
        "DELETE" => (200, "[]".into()),
        _ => (204, String::new()),
    }
    });
    let output = run(&server.socket, &["set", "motd=5"], None).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    let err = stderr(&output);
    let seen = server.seen();
    let tx = seen[0].tx();
    assert_eq!(
        err,
        format!(
            "apiclient: PATCH /settings/keypair?tx={tx} failed with status 400 Bad Request: \
             invalid value for settings.motd: expected a string\n"
        )
    );

    let methods: Vec<&str> = seen.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods, ["PATCH", "DELETE"], "{seen:#?}");
    assert_eq!(seen[1].uri, format!("/tx?tx={tx}"));
}

#[tokio::test]
async fn failed_commit_discards_the_transaction() {
    let server = FakeServer::start(|seen| match seen.path() {
        "/tx/commit_and_apply" => (500, "renderer crashed\n".into()),
        _ => (204, String::new()),
    });
    let output = run(&server.socket, &["set", "motd=hi"], None).await;
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("failed with status 500 Internal Server Error: renderer crashed"),
        "{err}"
    );

    let seen = server.seen();
    let paths: Vec<(&str, &str)> = seen.iter().map(|s| (s.method.as_str(), s.path())).collect();
    assert_eq!(
        paths,
        [
            ("PATCH", "/settings/keypair"),
            ("POST", "/tx/commit_and_apply"),
            ("DELETE", "/tx")
        ]
    );
    assert!(seen.iter().all(|s| s.tx() == seen[0].tx()));
}

/// A stand-in for a Bottlerocket API server from before `PATCH /settings/keypair` existed, for
/// the routes `set` uses, with the behaviour Bottlerocket documents for them: `PATCH /settings`
/// deserializes the body into the typed model (a wrong type is a 400 with a text body, and
/// nothing is staged), `POST /tx/commit_and_apply` moves the transaction to live and answers
/// the changed keys (422 when nothing is pending), `DELETE /tx` answers the removed keys, and
/// any other route is actix-web's bare 404. No Bottlerocket server can run here, so this keeps
/// to those observable rules and nothing more. `live` is the committed settings.
fn bottlerocket_without_keypair(live: Arc<Mutex<Value>>) -> impl Fn(&Seen) -> (u16, String) {
    // The types of the few settings the test uses, as the model declares them.
    let model = json!({
        "motd": "string",
        "updates": {"seed": "u64", "ignore-waves": "bool"},
        "kernel": {"sysctl": {"*": "string"}},
        "network": {"hostname": "string"},
    });
    let pending: Mutex<std::collections::BTreeMap<String, Value>> = Mutex::default();
    move |seen| {
        let tx = seen
            .uri
            .split_once("?tx=")
            .map_or("default", |(_, t)| t)
            .to_string();
        match (seen.method.as_str(), seen.path()) {
            ("PATCH", "/settings") => {
                let body: Value = match serde_json::from_str(&seen.body) {
                    Ok(v) => v,
                    Err(e) => return (400, format!("Json deserialize error: {e}")),
                };
                if let Err(e) = fits(&body, &model) {
                    return (400, format!("Json deserialize error: {e}"));
                }
                let mut pending = pending.lock().unwrap();
                let staged = pending.entry(tx).or_insert_with(|| json!({}));
                deep_merge(staged, body);
                (204, String::new())
            }
            ("POST", "/tx/commit_and_apply") => match pending.lock().unwrap().remove(&tx) {
                None => (422, "Attempted to commit with no pending keys".into()),
                Some(staged) => {
                    let keys = leaf_keys(&staged, "settings");
                    deep_merge(&mut live.lock().unwrap(), staged);
                    (200, serde_json::to_string(&keys).unwrap())
                }
            },
            ("DELETE", "/tx") => {
                let removed = pending.lock().unwrap().remove(&tx);
                let keys = removed.map_or_else(Vec::new, |v| leaf_keys(&v, "settings"));
                (200, serde_json::to_string(&keys).unwrap())
            }
            _ => (404, String::new()),
        }
    }
}

/// Checks `value` against the type names in `model`; `"*"` stands for any field name.
fn fits(value: &Value, model: &Value) -> Result<(), String> {
    match (value, model) {
        (Value::Object(fields), Value::Object(types)) => {
            for (name, inner) in fields {
                let ty = types
                    .get(name)
                    .or_else(|| types.get("*"))
                    .ok_or_else(|| format!("unknown field `{name}`"))?;
                fits(inner, ty).map_err(|e| format!("{name}: {e}"))?;
            }
            Ok(())
        }
        (Value::String(_), Value::String(t)) if t == "string" => Ok(()),
        (Value::Bool(_), Value::String(t)) if t == "bool" => Ok(()),
        (Value::Number(n), Value::String(t)) if t == "u64" && n.is_u64() => Ok(()),
        (v, t) => Err(format!("invalid type: {v}, expected {t}")),
    }
}

fn deep_merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                deep_merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

fn leaf_keys(value: &Value, prefix: &str) -> Vec<String> {
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| {
                let name = if k.contains('.') {
                    format!("{prefix}.\"{k}\"")
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_keys(v, &name)
            })
            .collect(),
        _ => vec![prefix.to_string()],
    }
}

#[tokio::test]
async fn set_falls_back_to_a_typed_patch_when_the_keypair_route_is_missing() {
    let live = Arc::new(Mutex::new(json!({"motd": "old"})));
    let server = FakeServer::start(bottlerocket_without_keypair(live.clone()));
    let output = run(
        &server.socket,
        &[
            "set",
            "motd=hello world",
            "updates.seed=42",
            "settings.updates.ignore-waves=true",
            "kernel.sysctl.\"net.ipv4.ip_forward\"=on",
        ],
        None,
    )
    .await;
    assert_success(&output);
    assert_eq!(stdout(&output), "");
    assert_eq!(stderr(&output), "");

    let seen = server.seen();
    let requests: Vec<(&str, &str)> = seen.iter().map(|s| (s.method.as_str(), s.path())).collect();
    assert_eq!(
        requests,
        [
            ("PATCH", "/settings/keypair"),
            ("PATCH", "/settings"),
            ("POST", "/tx/commit_and_apply"),
        ]
    );
    assert!(seen.iter().all(|s| s.tx() == seen[0].tx()), "{seen:#?}");
    assert_eq!(
        seen[1].json(),
        json!({
            "motd": "hello world",
            "updates": {"seed": 42, "ignore-waves": true},
            "kernel": {"sysctl": {"net.ipv4.ip_forward": "on"}},
        })
    );
    assert_eq!(
        *live.lock().unwrap(),
        json!({
            "motd": "hello world",
            "updates": {"seed": 42, "ignore-waves": true},
            "kernel": {"sysctl": {"net.ipv4.ip_forward": "on"}},
        })
    );

    // The fallback types values as Bottlerocket's apiclient did: "42" is a number, which a
    // string setting refuses. The refusal is reported and the transaction cleaned up.
    let output = run(&server.socket, &["set", "motd=42"], None).await;
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.starts_with("apiclient: PATCH /settings?tx="), "{err}");
    assert!(err.contains("400 Bad Request"), "{err}");
    let seen = server.seen();
    let last: Vec<(&str, &str)> = seen[3..]
        .iter()
        .map(|s| (s.method.as_str(), s.path()))
        .collect();
    assert_eq!(
        last,
        [
            ("PATCH", "/settings/keypair"),
            ("PATCH", "/settings"),
            ("DELETE", "/tx")
        ]
    );
    assert_eq!(live.lock().unwrap()["motd"], "hello world");
}

#[tokio::test]
async fn a_failed_apply_after_the_commit_is_not_reported_as_discarded() {
    // The server committed (DELETE finds nothing pending) but applying failed with a 500.
    let server = FakeServer::start(|seen| match seen.path() {
        "/tx/commit_and_apply" => (500, "the apply worker has stopped".into()),
        "/tx" => (200, "[]".into()),
        _ => (204, String::new()),
    });
    let output = run(&server.socket, &["-v", "set", "motd=hi"], None).await;
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(!err.contains("Discarded pending transaction"), "{err}");
    assert!(err.contains("had nothing pending"), "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("apiclient: POST /tx/commit_and_apply"),
        "{err}"
    );
    assert!(last.contains("500 Internal Server Error"), "{err}");
    assert!(last.contains("the settings were committed"), "{err}");

    // When the commit did not happen, the keys are discarded and the log says which.
    let server = FakeServer::start(|seen| match seen.path() {
        "/tx/commit_and_apply" => (500, "cannot write the datastore".into()),
        "/tx" => (200, r#"["settings.motd"]"#.into()),
        _ => (204, String::new()),
    });
    let output = run(&server.socket, &["-v", "set", "motd=hi"], None).await;
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("Discarded pending transaction"), "{err}");
    assert!(err.contains("settings.motd"), "{err}");
    assert!(!err.contains("were committed"), "{err}");
}

#[tokio::test]
async fn missing_socket_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("absent.sock");
    for args in [
        &["get"][..],
        &["set", "motd=x"][..],
        &["raw", "-u", "/"][..],
    ] {
        let output = run(&socket, args, None).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert_eq!(stdout(&output), "");
        let err = stderr(&output);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("apiclient: "), "{err}");
        assert!(err.contains(&socket.display().to_string()), "{err}");
        assert!(err.contains("is the API server running?"), "{err}");
        assert!(err.contains("--socket-path"), "{err}");
    }
}

#[tokio::test]
async fn usage_errors_exit_2_without_requests() {
    let server = FakeServer::start_ok();
    for args in [
        &["set", "motd"][..],
        &["set"][..],
        &["set", "-j", "[1]"][..],
        &["get", "settings", "/tx"][..],
        &["raw"][..],
        &["bogus"][..],
    ] {
        let output = run(&server.socket, args, None).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let output = run(&server.socket, &["set", "motd"], None).await;
    assert!(stderr(&output).contains("expected KEY=VALUE"));
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn raw_prints_the_body() {
    let server = FakeServer::start(|seen| match seen.path() {
        "/tx/list" => (200, r#"["default"]"#.into()),
        "/missing" => (404, "no such thing\n".into()),
        _ => (204, String::new()),
    });

    let output = run(&server.socket, &["raw", "-u", "/tx/list"], None).await;
    assert_success(&output);
    assert_eq!(stdout(&output), "[\"default\"]\n");

    let output = run(
        &server.socket,
        &[
            "raw",
            "-X",
            "post",
            "-u",
            "/settings?tx=t",
            "-d",
            r#"{"motd":"x"}"#,
        ],
        None,
    )
    .await;
    assert_success(&output);
    assert_eq!(stdout(&output), "");

    let output = run(&server.socket, &["raw", "--uri", "/missing"], None).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output), "");
    assert_eq!(
        stderr(&output),
        "no such thing\napiclient: GET /missing failed with status 404 Not Found\n"
    );

    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].body.as_str()),
        ("GET", "")
    );
    assert_eq!(seen[1].method, "POST");
    assert_eq!(seen[1].uri, "/settings?tx=t");
    assert_eq!(seen[1].body, r#"{"motd":"x"}"#);
    assert_eq!(seen[1].content_type.as_deref(), Some("application/json"));
}

#[tokio::test]
async fn undo_posts_and_prints_the_record() {
    let server = FakeServer::start(|seen| {
        let id = seen.uri.split_once("id=").map_or("9", |(_, id)| id);
        let record = json!({
            "id": id.parse::<u64>().unwrap() + 1,
            "time": "2024-05-01T10:00:00Z",
            "transaction": "undo",
            "changes": [{"key": "settings.motd", "old": "\"b\"", "new": "\"a\""}]
        });
        (200, record.to_string())
    });

    let output = run(&server.socket, &["undo"], None).await;
    assert_success(&output);
    let printed: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(printed["id"], 10);
    assert!(
        stdout(&output).contains("\n  \"id\": 10"),
        "pretty JSON expected"
    );

    let output = run(&server.socket, &["undo", "3"], None).await;
    assert_success(&output);
    let printed: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(printed["id"], 4);

    let seen = server.seen();
    let requests: Vec<(&str, &str)> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.uri.as_str()))
        .collect();
    assert_eq!(
        requests,
        [("POST", "/history/undo"), ("POST", "/history/undo?id=3")]
    );
}

#[tokio::test]
async fn get_merges_prefixes_and_filters_the_default_view() {
    let server = FakeServer::start(|seen| {
        let body = match seen.uri.as_str() {
            "/" => json!({
                "settings": {"motd": "hi"},
                "services": {"motd": {}},
                "configuration-files": {"motd": {}},
                "os": {"arch": "x86_64"}
            }),
            "/?prefix=settings.motd" => json!({"settings": {"motd": "hi"}}),
            "/?prefix=settings.ntp" => json!({"settings": {"ntp": {"time-servers": ["a"]}}}),
            "/?prefix=settings.kubernetes.node-labels.%22my.label%22" => {
                json!({"settings": {"kubernetes": {"node-labels": {"my.label": "x"}}}})
            }
            "/tx/list" => json!(["default"]),
            other => return (404, json!({"error": format!("no {other}")}).to_string()),
        };
        (200, body.to_string())
    });

    let output = run(&server.socket, &["get"], None).await;
    assert_success(&output);
    let value: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        value,
        json!({"settings": {"motd": "hi"}, "os": {"arch": "x86_64"}})
    );

    let output = run(
        &server.socket,
        &[
            "get",
            "settings.motd",
            "settings.ntp",
            "settings.kubernetes.node-labels.\"my.label\"",
        ],
        None,
    )
    .await;
    assert_success(&output);
    let value: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        value,
        json!({"settings": {
            "motd": "hi",
            "ntp": {"time-servers": ["a"]},
            "kubernetes": {"node-labels": {"my.label": "x"}}
        }})
    );

    let output = run(&server.socket, &["get", "/tx/list"], None).await;
    assert_success(&output);
    assert_eq!(stdout(&output), "[\n  \"default\"\n]\n");

    let output = run(&server.socket, &["get", "/nope"], None).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "apiclient: GET /nope failed with status 404 Not Found: no /nope\n"
    );
}

#[tokio::test]
async fn history_table_and_json() {
    let history = json!([
        {"id": 1, "time": "2024-05-01T10:00:00Z", "transaction": "apiclient-set-abc",
         "changes": [{"key": "settings.motd", "old": null, "new": "\"hi\""}]}
    ]);
    let body = history.to_string();
    let server = FakeServer::start(move |_| (200, body.clone()));

    let output = run(&server.socket, &["history"], None).await;
    assert_success(&output);
    let table = stdout(&output);
    assert!(table.starts_with("ID"), "{table}");
    // An entry without a caller (recorded before callers were) shows `-` in CALLER.
    assert!(
        table.contains("apiclient-set-abc  -       settings.motd: (unset) -> \"hi\""),
        "{table}"
    );

    let output = run(&server.socket, &["history", "--json"], None).await;
    assert_success(&output);
    let value: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(value, history);

    let seen = server.seen();
    assert!(seen
        .iter()
        .all(|s| s.method == "GET" && s.uri == "/history"));
}

#[tokio::test]
async fn completions_need_no_server() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(
        &dir.path().join("none.sock"),
        &["completions", "fish"],
        None,
    )
    .await;
    assert_success(&output);
    assert!(stdout(&output).contains("apiclient"));
}
