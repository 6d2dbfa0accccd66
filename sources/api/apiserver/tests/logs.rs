//! `GET /logs` and `apiclient logs` against a real journal: journal files written by
//! systemd-journal-remote from the journal export format into the server's `--journal-dir`,
//! read by the real journalctl. Without systemd-journal-remote the tests are skipped with a
//! notice, and fail under `CI=true`.

use api_types::logs::LogEntry;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testserver::journal::{write_journal, Export};
use testserver::TestServer;

const BOOT: &str = "0123456789abcdef0123456789abcdef";
const OLD_BOOT: &str = "fedcba9876543210fedcba9876543210";
/// 2026-12-07T06:53:05Z, in microseconds.
const T0: u64 = 1_796_626_385_000_000;

/// A server whose journal holds a previous boot (one entry) and this boot (five entries).
fn server_with_journal() -> Option<TestServer> {
    if !hosttools::require_tool(hosttools::JOURNAL_REMOTE) || !hosttools::require_tool("journalctl")
    {
        return None;
    }
    let server = TestServer::start();
    write_journal(
        &server.journal_dir,
        "old",
        &[Export {
            micros: T0 - 3_600_000_000,
            boot: OLD_BOOT,
            fields: &[
                ("SYSLOG_IDENTIFIER", "old"),
                ("PRIORITY", "6"),
                ("MESSAGE", "previous boot"),
            ],
            binary_message: None,
        }],
    );
    write_journal(
        &server.journal_dir,
        "now",
        &[
            Export {
                micros: T0 + 123_456,
                boot: BOOT,
                fields: &[
                    ("_SYSTEMD_UNIT", "apiserver.service"),
                    ("SYSLOG_IDENTIFIER", "apiserver"),
                    ("_PID", "123"),
                    ("PRIORITY", "6"),
                    ("MESSAGE", "API ready on /run/api.sock"),
                ],
                binary_message: None,
            },
            Export {
                micros: T0 + 1_000_000,
                boot: BOOT,
                fields: &[("SYSLOG_IDENTIFIER", "kernel"), ("PRIORITY", "3")],
                binary_message: Some(b"bad\xffbyte"),
            },
            Export {
                micros: T0 + 2_000_000,
                boot: BOOT,
                fields: &[
                    ("_SYSTEMD_UNIT", "containerd.service"),
                    ("SYSLOG_IDENTIFIER", "containerd"),
                    ("_PID", "456"),
                    ("PRIORITY", "4"),
                    ("MESSAGE", "pulling image"),
                ],
                binary_message: None,
            },
            Export {
                micros: T0 + 3_000_000,
                boot: BOOT,
                fields: &[
                    ("_SYSTEMD_UNIT", "apiserver.service"),
                    ("SYSLOG_IDENTIFIER", "apiserver"),
                    ("_PID", "123"),
                    ("PRIORITY", "7"),
                    ("MESSAGE", "GET /settings answered 200"),
                ],
                binary_message: None,
            },
            Export {
                micros: T0 + 4_000_000,
                boot: BOOT,
                fields: &[
                    ("_SYSTEMD_UNIT", "kubelet.socket"),
                    ("PRIORITY", "5"),
                    ("MESSAGE", "listening"),
                ],
                binary_message: None,
            },
        ],
    );
    Some(server)
}

fn entries(server: &TestServer, uri: &str) -> Vec<LogEntry> {
    serde_json::from_value(server.json("GET", uri, None)).unwrap()
}

fn messages(server: &TestServer, uri: &str) -> Vec<String> {
    entries(server, uri)
        .into_iter()
        .map(|e| e.message)
        .collect()
}

#[test]
fn filters_select_entries() {
    let Some(server) = server_with_journal() else {
        return;
    };
    let all = entries(&server, "/logs");
    assert_eq!(all.len(), 6, "{all:?}");
    let first = &all[1];
    assert_eq!(first.timestamp, "2026-12-07T06:53:05.123456Z");
    assert_eq!(first.boot_id, BOOT);
    assert_eq!(first.unit.as_deref(), Some("apiserver.service"));
    assert_eq!(first.identifier.as_deref(), Some("apiserver"));
    assert_eq!((first.pid, first.priority), (Some(123), Some(6)));
    // A message that is not UTF-8 arrives, lossily.
    assert_eq!(all[2].message, "bad\u{FFFD}byte");
    assert_eq!(all[2].unit, None);

    assert_eq!(
        messages(&server, "/logs?unit=apiserver"),
        ["API ready on /run/api.sock", "GET /settings answered 200"]
    );
    assert_eq!(
        messages(&server, "/logs?unit=containerd.service,kubelet.socket"),
        ["pulling image", "listening"]
    );
    assert_eq!(
        messages(&server, "/logs?priority=warning"),
        ["bad\u{FFFD}byte", "pulling image"]
    );
    assert_eq!(messages(&server, "/logs?priority=3"), ["bad\u{FFFD}byte"]);
    assert_eq!(
        messages(
            &server,
            "/logs?since=2026-12-07T06:53:07Z&until=2026-12-07T07:53:08%2B01:00"
        ),
        ["pulling image", "GET /settings answered 200"]
    );
    assert_eq!(
        messages(&server, "/logs?since=-1m"),
        Vec::<String>::new(),
        "the journal's entries are from 2026-12-07, before the last minute"
    );
    assert_eq!(
        messages(&server, "/logs?grep=answered%20[0-9]%2B"),
        ["GET /settings answered 200"]
    );
    assert_eq!(
        messages(&server, "/logs?grep=no-such-message"),
        Vec::<String>::new()
    );
    assert_eq!(
        messages(&server, "/logs?lines=2"),
        ["GET /settings answered 200", "listening"]
    );
    assert_eq!(messages(&server, "/logs?boot=-1"), ["previous boot"]);
    assert_eq!(
        messages(&server, &format!("/logs?boot={OLD_BOOT}")),
        ["previous boot"]
    );
    assert_eq!(messages(&server, "/logs?boot=0").len(), 5);
    assert_eq!(
        messages(&server, "/logs?boot=0&unit=apiserver&priority=info&lines=1"),
        ["API ready on /run/api.sock"]
    );
    let (status, body) = server.raw("GET", "/logs?boot=-2", None);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("boot"), "{body}");
}

#[test]
fn bad_parameters_are_refused_by_name() {
    let Some(server) = server_with_journal() else {
        return;
    };
    for (query, name) in [
        ("unit=a/b", "unit"),
        ("unit=-x", "unit"),
        ("priority=loud", "priority"),
        ("priority=8", "priority"),
        ("since=yesterday", "since"),
        ("until=2026-02-30T00:00:00Z", "until"),
        ("boot=1", "boot"),
        ("boot=xyz", "boot"),
        ("grep=", "grep"),
        ("grep=(", "grep"),
        ("lines=0", "lines"),
        ("lines=10001", "lines"),
        ("follow=yes", "follow"),
    ] {
        let (status, body) = server.raw("GET", &format!("/logs?{query}"), None);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(&format!("?{name}=")), "{query}: {body}");
    }
    let (status, body) = server.raw("GET", "/logs?color=red", None);
    assert_eq!(status, 400, "{body}");
}

#[test]
fn a_journalctl_that_cannot_run_is_a_503() {
    if !hosttools::require_tool("journalctl") {
        return;
    }
    let mut server = TestServer::start();
    server.kill();
    let mut cmd = Command::new(testserver::workspace_bin("apiserver"));
    let mut child = cmd
        .arg("--datastore-path")
        .arg(&server.store)
        .arg("--socket-path")
        .arg(&server.socket)
        .arg("--os-release")
        .arg(server.dir.path().join("os-release"))
        .arg("--journal-dir")
        .arg(&server.journal_dir)
        .arg("--journalctl")
        .arg("/nonexistent/journalctl")
        .arg("--log-level=error")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let answer = loop {
        match server.try_raw("GET", "/logs", None) {
            Ok(answer) => break answer,
            Err(_) if start.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("the server did not answer: {e}"),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answer.0, 503, "{}", answer.1);
    assert!(answer.1.contains("--journalctl"), "{}", answer.1);
}

/// The PIDs of journalctl processes whose parent is `parent`.
fn journalctl_children(parent: i32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..."
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if comm.ends_with("(journalctl") && ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn follow_streams_new_entries_and_stops_journalctl_on_disconnect() {
    let Some(server) = server_with_journal() else {
        return;
    };
    let mut stream = UnixStream::connect(&server.socket).unwrap();
    stream
        .write_all(b"GET /logs?follow=true&lines=1&unit=apiserver HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/x-ndjson"), "{head}");
    // Chunked: a size line, then the data (one entry per chunk or more).
    let mut read_entry = || -> LogEntry {
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim();
            if line.starts_with('{') {
                return serde_json::from_str(line).unwrap();
            }
        }
    };
    assert_eq!(read_entry().message, "GET /settings answered 200");
    let children = journalctl_children(server.pid());
    assert_eq!(children.len(), 1, "{children:?}");

    // An entry written later arrives on the open stream.
    write_journal(
        &server.journal_dir,
        "now",
        &[Export {
            micros: T0 + 10_000_000,
            boot: BOOT,
            fields: &[
                ("_SYSTEMD_UNIT", "apiserver.service"),
                ("SYSLOG_IDENTIFIER", "apiserver"),
                ("MESSAGE", "written later"),
            ],
            binary_message: None,
        }],
    );
    assert_eq!(read_entry().message, "written later");

    // The client goes away: the server's journalctl goes too.
    drop(reader);
    drop(stream);
    let start = Instant::now();
    while Path::new(&format!("/proc/{}", children[0])).exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "journalctl {} still runs after the client left",
            children[0]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn apiclient_logs_prints_text_and_json() {
    let Some(server) = server_with_journal() else {
        return;
    };
    let out = server.apiclient(&["logs", "-u", "apiserver", "-u", "kubelet.socket", "-n", "5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "2026-12-07T06:53:05.123456Z apiserver[123]: API ready on /run/api.sock\n\
         2026-12-07T06:53:08.000000Z apiserver[123]: GET /settings answered 200\n\
         2026-12-07T06:53:09.000000Z kubelet.socket: listening\n"
    );
    let out = server.apiclient(&["logs", "-p", "err", "--json", "-b", "0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let entry: LogEntry = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(entry.message, "bad\u{FFFD}byte");
    assert_eq!(entry.identifier.as_deref(), Some("kernel"));
    let out = server.apiclient(&["logs", "--since", "-5m", "-g", "anything"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let out = server.apiclient(&["logs", "-p", "loud"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("400") && err.contains("?priority="), "{err}");
}

#[test]
fn apiclient_follows() {
    let Some(server) = server_with_journal() else {
        return;
    };
    let mut child = Command::new(testserver::workspace_bin("apiclient"))
        .arg("--socket-path")
        .arg(&server.socket)
        .args(["logs", "-f", "-n", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(
        line,
        "2026-12-07T06:53:09.000000Z kubelet.socket: listening\n"
    );
    write_journal(
        &server.journal_dir,
        "now",
        &[Export {
            micros: T0 + 20_000_000,
            boot: BOOT,
            fields: &[
                ("SYSLOG_IDENTIFIER", "late"),
                ("_PID", "9"),
                ("MESSAGE", "still here"),
            ],
            binary_message: None,
        }],
    );
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "2026-12-07T06:53:25.000000Z late[9]: still here\n");
    let _ = child.kill();
    let _ = child.wait();
}
