//! `GET /support-bundle` and `apiclient support-bundle` against a real server: the archive is
//! opened with the real `tar`, holds every part and a manifest, holds none of the secret values
//! set beforehand (the whole unpacked bundle is searched), records a part it cannot read in
//! the manifest with its error, and is in the audit trail; apiclient writes the file and
//! refuses to overwrite it without `--force`. Encrypted to an age recipient (X25519 and
//! post-quantum hybrid), the file opens with the identity alone and holds the same parts; a
//! bad recipient is a 400 that names the problem.
//!
//! The server reads `/proc` through `--support-root`, a directory whose `proc` is the host's
//! and which has no `etc/resolv.conf` and no `dev/kmsg`: those two parts must be missing, with
//! their errors in the manifest. The units come from a systemd user manager of the test's
//! own (`testserver::systemd`); where none can run, the units part must be an error that
//! names systemctl. The journal part needs systemd-journal-remote to write a
//! journal; without it that check is skipped with a notice (and fails under `CI=true`).

use api_types::support_bundle::{Manifest, MANIFEST_NAME};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use testserver::journal::{write_journal, Export};
use testserver::TestServer;

const PASSWORD: &str = "hunter2-bundle-secret";
const OLD_PASSWORD: &str = "hunter1-bundle-secret";
/// base64 of "secret-user-data".
const USER_DATA: &str = "c2VjcmV0LXVzZXItZGF0YQ==";
const BOOTSTRAP_DATA: &str = "Ym9vdHN0cmFwLXNlY3JldA==";
const BOOT: &str = "0123456789abcdef0123456789abcdef";
const OLD_BOOT: &str = "fedcba9876543210fedcba9876543210";
/// 2026-12-07T06:53:05Z, in microseconds.
const T0: u64 = 1_796_626_385_000_000;

/// A root for `--support-root`: the host's /proc, an /etc without resolv.conf, an empty /dev.
fn partial_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("dev")).unwrap();
    std::os::unix::fs::symlink("/proc", root.join("proc")).unwrap();
    root
}

/// Two commits of secret settings (so the history has old and new secret values) and one of a
/// plain one.
fn set_secrets(server: &TestServer) {
    for password in [OLD_PASSWORD, PASSWORD] {
        let body = json!({
            "container-registry": {"credentials": [
                {"registry": "r.example", "username": "u", "password": password}
            ]},
            "host-containers": {"admin": {"user-data": USER_DATA, "enabled": false}},
            "motd": "bundle motd"
        });
        let (status, text) = server.raw("PATCH", "/settings?tx=b", Some(&body.to_string()));
        assert_eq!(status, 204, "{text}");
        let (status, text) = server.raw("POST", "/tx/commit_and_apply?tx=b", None);
        assert_eq!(status, 200, "{text}");
    }
    let out = server.apiclient(&[
        "set",
        &format!("bootstrap-containers.setup.user-data={BOOTSTRAP_DATA}"),
    ]);
    assert!(out.status.success(), "{out:?}");
}

/// A journal with a previous boot and the current one, when systemd-journal-remote is here.
fn write_boots(server: &TestServer) -> bool {
    if !hosttools::require_tool(hosttools::JOURNAL_REMOTE) || !hosttools::require_tool("journalctl")
    {
        return false;
    }
    let old = [
        ("SYSLOG_IDENTIFIER", "old"),
        ("MESSAGE", "from the boot before"),
    ];
    let now = [("SYSLOG_IDENTIFIER", "now"), ("MESSAGE", "from this boot")];
    write_journal(
        &server.journal_dir,
        "old",
        &[Export {
            micros: T0 - 3_600_000_000,
            boot: OLD_BOOT,
            fields: &old,
            binary_message: None,
        }],
    );
    write_journal(
        &server.journal_dir,
        "now",
        &[Export {
            micros: T0,
            boot: BOOT,
            fields: &now,
            binary_message: None,
        }],
    );
    true
}

/// Every file under `dir`, with its content.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            let content = std::fs::read(&path).unwrap();
            out.push((path, content));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn the_bundle_holds_every_part_and_no_secret() {
    let mut server = TestServer::start();
    let root = partial_root(server.dir.path());
    server.extra_args = vec!["--support-root".into(), root.display().to_string()];
    // A systemd user manager for the units, when this host can run one; else the host's
    // systemctl, which has no systemd to ask here and makes the units part an error.
    let manager = testserver::systemd::UserManager::start();
    match &manager {
        Some(manager) => server.use_manager(manager),
        None => {
            server.kill();
            server.spawn();
        }
    }
    set_secrets(&server);
    let journal = write_boots(&server);

    // apiclient writes the archive and says where and how big.
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("bundle.tar.gz");
    let out = server.apiclient(&["support-bundle", "-o", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let size = std::fs::metadata(&file).unwrap().len();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(said.trim(), format!("{} ({size} bytes)", file.display()));

    // The real tar lists it: one top directory, every part, the manifest.
    let listed = Command::new("tar").arg("-tzf").arg(&file).output().unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let names: Vec<String> = String::from_utf8(listed.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let top = names[0].trim_end_matches('/').to_string();
    assert!(
        top.starts_with("ballast-support-") && top.ends_with('Z'),
        "{names:?}"
    );
    for name in &names {
        assert!(name.starts_with(&format!("{top}/")), "{name} outside {top}");
    }
    let mut expected = vec![
        "status.json",
        "settings.json",
        "history.json",
        "audit.jsonl",
        "mountinfo.txt",
        "disk-usage.txt",
        "net-dev.txt",
        "net-route.txt",
        "net-if_inet6.txt",
        "cmdline.txt",
        "kernel-version.txt",
        MANIFEST_NAME,
    ];
    if journal {
        expected.push("journal.jsonl");
    }
    if manager.is_some() {
        expected.push("units.json");
    }
    for part in &expected {
        assert!(
            names.contains(&format!("{top}/{part}")),
            "{part} is not in {names:?}"
        );
    }
    for missing in ["resolv.conf", "kmsg.txt"] {
        assert!(
            !names.contains(&format!("{top}/{missing}")),
            "{missing} should be left out: {names:?}"
        );
    }

    // Unpacked, no file holds a secret value set before.
    let unpacked = work.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&file)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(status.success());
    let all = files(&unpacked);
    assert!(all.len() >= expected.len(), "{all:?}");
    for (path, content) in &all {
        for secret in [PASSWORD, OLD_PASSWORD, USER_DATA, BOOTSTRAP_DATA] {
            assert!(
                !contains(content, secret),
                "{secret} is in {}",
                path.display()
            );
        }
    }
    let dir = unpacked.join(&top);
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();

    // The secrets' places are kept, their values replaced; plain settings are there.
    let settings: Value = serde_json::from_str(&read("settings.json")).unwrap();
    assert_eq!(settings["motd"], "bundle motd");
    assert_eq!(settings["container-registry"]["credentials"], "REDACTED");
    assert_eq!(
        settings["host-containers"]["admin"]["user-data"],
        "REDACTED"
    );
    assert_eq!(
        settings["bootstrap-containers"]["setup"]["user-data"],
        "REDACTED"
    );
    let history = read("history.json");
    assert!(history.contains("settings.container-registry.credentials"));
    assert!(history.contains("REDACTED"));
    assert!(history.contains("bundle motd"));

    // The manifest: every part with its size, the two unreadable ones with their errors.
    let manifest: Manifest = serde_json::from_str(&read(MANIFEST_NAME)).unwrap();
    for part in &manifest.parts {
        match (&part.bytes, &part.error) {
            (Some(bytes), None) => {
                let on_disk = std::fs::metadata(dir.join(&part.name)).unwrap().len();
                assert_eq!(*bytes, on_disk, "{}", part.name);
            }
            (None, Some(error)) => {
                assert!(!dir.join(&part.name).exists(), "{}", part.name);
                assert!(!error.is_empty());
            }
            other => panic!("{}: {other:?}", part.name),
        }
    }
    let error_of = |name: &str| {
        manifest
            .parts
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} not in the manifest"))
            .error
            .clone()
    };
    let resolv = error_of("resolv.conf").expect("resolv.conf cannot be read");
    assert!(
        resolv.contains("etc/resolv.conf") && resolv.contains("No such file"),
        "{resolv}"
    );
    assert!(error_of("kmsg.txt").unwrap().contains("dev/kmsg"));
    assert!(error_of("settings.json").is_none());
    if manager.is_none() {
        let units = error_of("units.json").expect("no systemd to list units");
        assert!(units.contains("systemctl"), "{units}");
    }
    assert!(read("mountinfo.txt").contains(" - "));
    assert!(read("disk-usage.txt").starts_with("type"));

    // The journal part: this boot only.
    if journal {
        let text = read("journal.jsonl");
        assert!(text.contains("from this boot"), "{text}");
        assert!(!text.contains("from the boot before"), "{text}");
        for line in text.lines() {
            serde_json::from_str::<api_types::logs::LogEntry>(line).unwrap();
        }
    }

    // The status part is GET /status's document.
    let status: Value = serde_json::from_str(&read("status.json")).unwrap();
    for key in ["units", "boot", "os", "update"] {
        assert!(status.get(key).is_some(), "{key}: {status}");
    }
    assert_eq!(status["os"]["version_id"], "0.1.0");

    // It is in the audit trail.
    let audit = server.json("GET", "/audit", None);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["method"] == "GET" && e["path"] == "/support-bundle" && e["status"] == 200),
        "{audit}"
    );
}

#[test]
fn apiclient_refuses_to_overwrite_without_force() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("b.tar.gz");
    std::fs::write(&file, "keep me").unwrap();
    let path = file.to_str().unwrap();

    let out = server.apiclient(&["support-bundle", "-o", path]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    // Nothing was left beside it.
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 1);

    let out = server.apiclient(&["support-bundle", "-o", path, "--force"]);
    assert!(out.status.success(), "{out:?}");
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(&bytes[..2], [0x1f, 0x8b]);
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 1);

    // `-o -`: the archive on stdout, the line on stderr.
    let out = server.apiclient(&["support-bundle", "-o", "-"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(&out.stdout[..2], [0x1f, 0x8b]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("bytes to stdout"));

    // The headers, as curl sees them: gzip, with the file name the archive's directory has.
    if hosttools::require_tool("curl") {
        let out = Command::new("curl")
            .args(["-sS", "-D", "-", "-o", "/dev/null", "--unix-socket"])
            .arg(&server.socket)
            .arg("http://localhost/support-bundle")
            .output()
            .unwrap();
        let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-type: application/gzip"), "{head}");
        assert!(
            head.contains("content-disposition: attachment; filename=\"ballast-support-"),
            "{head}"
        );
    }

    // An unknown parameter is refused.
    let (status, text) = server.raw("GET", "/support-bundle?no-such=x", None);
    assert_eq!(status, 400, "{text}");
}

/// Decrypts an age file with `identity`, ungzips and unpacks it in memory: file name (below
/// the top directory) -> content.
fn open_encrypted(
    encrypted: &[u8],
    identity: &dyn age::Identity,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let decryptor = age::Decryptor::new(encrypted).expect("an age file");
    let mut plain = Vec::new();
    decryptor
        .decrypt(std::iter::once(identity))
        .expect("the identity opens it")
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(
        &plain[..2],
        [0x1f, 0x8b],
        "the plaintext is the gzip archive"
    );
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&plain[..]));
    let mut parts = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_path_buf();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        if let Some(name) = path.file_name().filter(|_| path.components().count() == 2) {
            parts.insert(name.to_string_lossy().into_owned(), content);
        }
    }
    parts
}

#[test]
#[allow(deprecated)] // X25519 recipients are what operators hold; both kinds are tested.
fn an_encrypted_bundle_opens_only_with_the_identity_and_holds_every_part() {
    let server = TestServer::start();
    set_secrets(&server);
    let work = tempfile::tempdir().unwrap();
    let classic = age::x25519::Identity::generate();
    let hybrid = age::pq::Identity::generate();
    let recipients = [
        (
            classic.to_public().to_string(),
            &classic as &dyn age::Identity,
        ),
        (
            hybrid.to_public().to_string(),
            &hybrid as &dyn age::Identity,
        ),
    ];
    for (n, (recipient, identity)) in recipients.iter().enumerate() {
        let file = work.path().join(format!("bundle-{n}.tar.gz.age"));
        let out = server.apiclient(&[
            "support-bundle",
            "-o",
            file.to_str().unwrap(),
            "--recipient",
            recipient,
        ]);
        assert!(out.status.success(), "{out:?}");
        let encrypted = std::fs::read(&file).unwrap();
        assert!(
            encrypted.starts_with(api_types::support_bundle::AGE_MAGIC),
            "not an age file"
        );
        for plain in [PASSWORD, "ballast-support-", "settings.json", "bundle motd"] {
            assert!(
                !contains(&encrypted, plain),
                "{plain} readable in the age file"
            );
        }

        let parts = open_encrypted(&encrypted, *identity);
        for name in [
            "status.json",
            "settings.json",
            "history.json",
            "audit.jsonl",
            MANIFEST_NAME,
        ] {
            assert!(
                parts.contains_key(name),
                "{name} missing: {:?}",
                parts.keys()
            );
        }
        let manifest: Manifest = serde_json::from_slice(&parts[MANIFEST_NAME]).unwrap();
        assert!(manifest
            .parts
            .iter()
            .any(|p| p.name == "settings.json" && p.bytes.is_some()));
        let settings = String::from_utf8_lossy(&parts["settings.json"]);
        assert!(settings.contains("bundle motd"), "{settings}");
        for (name, content) in &parts {
            for secret in [PASSWORD, OLD_PASSWORD, USER_DATA, BOOTSTRAP_DATA] {
                assert!(!contains(content, secret), "{secret} in {name}");
            }
        }

        // Another identity does not open it.
        let stranger = age::x25519::Identity::generate();
        let decryptor = age::Decryptor::new(&encrypted[..]).unwrap();
        assert!(decryptor
            .decrypt(std::iter::once(&stranger as &dyn age::Identity))
            .is_err());
    }

    // The answer's headers: not gzip, and the file name says what it is.
    let uri = format!(
        "http://localhost/support-bundle?recipient={}",
        recipients[0].0
    );
    if hosttools::require_tool("curl") {
        let out = Command::new("curl")
            .args(["-sS", "-D", "-", "-o", "/dev/null", "--unix-socket"])
            .arg(&server.socket)
            .arg(&uri)
            .output()
            .unwrap();
        let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(
            head.contains("content-type: application/octet-stream"),
            "{head}"
        );
        assert!(head.contains(".tar.gz.age\""), "{head}");
    }

    // The audit trail says whom the bundle was encrypted to.
    let (status, audit) = server.raw("GET", "/audit", None);
    assert_eq!(status, 200, "{audit}");
    assert!(
        audit.contains(&format!("recipient={}", recipients[0].0)),
        "{audit}"
    );

    // A bad recipient is a 400 that names the problem, and nothing is written.
    let good = &recipients[0].0;
    let mut flipped = good.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'q' { b'p' } else { b'q' };
    let flipped = String::from_utf8(flipped).unwrap();
    for (bad, problem) in [
        ("", "empty"),
        ("ssh-ed25519%20AAAA", "SSH keys"),
        ("age1short", "age1"),
        (flipped.as_str(), "invalid Bech32"),
        ("AGE-SECRET-KEY-1XYZ", "does not start with age1"),
    ] {
        let (status, text) = server.raw("GET", &format!("/support-bundle?recipient={bad}"), None);
        assert_eq!(status, 400, "{bad}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        let message = error["error"].as_str().unwrap();
        assert!(
            message.contains("recipient")
                && message.to_lowercase().contains(&problem.to_lowercase()),
            "{bad}: {message}"
        );
    }
    let file = work.path().join("bad.tar.gz.age");
    let out = server.apiclient(&[
        "support-bundle",
        "-o",
        file.to_str().unwrap(),
        "--recipient",
        &flipped,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not an age recipient"), "{err}");
    assert!(!file.exists());
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 2);
}
