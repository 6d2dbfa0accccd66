//! Log shipping on the host, with the real programs of Debian's systemd-journal-remote
//! package: [`JournalReceiver`] (systemd-journal-remote) receives what systemd-journal-upload
//! sends from a fixture journal file, first with the URL on the command line, then with the
//! URL read from the configuration file rendered from `settings.logs.remote` by the shipped
//! template, as on a node.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use testserver::journal::{field, write_journal, Export, JournalReceiver};

const BOOT: &str = "0123456789abcdef0123456789abcdef";

/// The tools these tests run; `false` (skip) when one is missing outside CI.
fn tools_present() -> bool {
    [
        hosttools::JOURNAL_REMOTE,
        hosttools::JOURNAL_UPLOAD,
        "journalctl",
    ]
    .iter()
    .all(|t| hosttools::require_tool(t))
}

/// A journal file holding two entries, the second tagged with `marker`.
fn fixture(dir: &Path, marker: &str) -> PathBuf {
    write_journal(
        dir,
        "fixture",
        &[
            Export {
                micros: 1_700_000_000_000_000,
                boot: BOOT,
                fields: &[
                    ("MESSAGE", "first entry"),
                    ("_SYSTEMD_UNIT", "apiserver.service"),
                ],
                binary_message: None,
            },
            Export {
                micros: 1_700_000_001_000_000,
                boot: BOOT,
                fields: &[
                    ("MESSAGE", marker),
                    ("_SYSTEMD_UNIT", "apiserver.service"),
                    ("PRIORITY", "6"),
                ],
                binary_message: None,
            },
        ],
    );
    dir.join("fixture.journal")
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Both fixture entries arrived, fields intact.
fn assert_received(receiver: &JournalReceiver, marker: &str) {
    let entry = receiver
        .wait_for(Duration::from_secs(20), |e| {
            field(e, "MESSAGE") == Some(marker)
        })
        .unwrap_or_else(|| {
            panic!(
                "the receiver never got {marker:?}; it holds {:?}; its log: {}",
                receiver.entries(),
                receiver.log()
            )
        });
    assert_eq!(field(&entry, "_SYSTEMD_UNIT"), Some("apiserver.service"));
    assert_eq!(field(&entry, "_BOOT_ID"), Some(BOOT));
    let all = receiver.entries();
    assert!(
        all.iter()
            .any(|e| field(e, "MESSAGE") == Some("first entry")),
        "{all:?}"
    );
}

#[test]
fn the_receiver_gets_what_the_uploader_sends_by_url() {
    if !tools_present() {
        return;
    }
    let receiver = JournalReceiver::start();
    assert!(
        receiver.entries().is_empty(),
        "a new receiver holds nothing"
    );
    let dir = tempfile::tempdir().unwrap();
    let journal = fixture(dir.path(), "shipped by --url");
    let out = Command::new(hosttools::JOURNAL_UPLOAD)
        .arg(format!("--file={}", journal.display()))
        // Send what the file holds and exit, instead of waiting for more.
        .arg("--follow=no")
        .arg(format!("--url={}", receiver.url()))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", hosttools::JOURNAL_UPLOAD));
    assert_success("systemd-journal-upload --url", &out);
    assert_received(&receiver, "shipped by --url");
}

#[test]
fn an_uploader_to_a_closed_port_fails() {
    if !tools_present() {
        return;
    }
    // A port nobody listens on: the one a stopped receiver had.
    let url = {
        let receiver = JournalReceiver::start();
        receiver.url()
    };
    let dir = tempfile::tempdir().unwrap();
    let journal = fixture(dir.path(), "never arrives");
    let out = Command::new(hosttools::JOURNAL_UPLOAD)
        .arg(format!("--file={}", journal.display()))
        .arg("--follow=no")
        .arg(format!("--url={url}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an upload to {url} with no receiver should fail"
    );
}

/// The shipped template, rendered with `settings.logs.remote.url` set to the receiver, is
/// what systemd-journal-upload reads from /etc/systemd/journal-upload.conf on a node. Here it
/// is bound over the host's file in a private mount namespace, and the uploader gets no URL on
/// its command line: entries arrive only if it took the URL from the rendered file.
#[test]
fn the_uploader_reads_the_url_from_the_rendered_file() {
    if !tools_present() || !hosttools::require_tool("unshare") || !hosttools::require_tool("mount")
    {
        return;
    }
    if !Path::new(constants::JOURNAL_UPLOAD_CONF).is_file() {
        eprintln!(
            "NOTICE: {} is missing, so there is nothing to bind the rendered file over; skipping",
            constants::JOURNAL_UPLOAD_CONF
        );
        return;
    }
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("NOTICE: binding over /etc needs root (unshare --mount); skipping");
        return;
    }
    let receiver = JournalReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let settings = serde_json::json!({"logs": {"remote": {"url": receiver.url()}}});
    models::parse_settings(&settings).expect("the receiver's URL is a valid setting");
    let rendered = dir.path().join("journal-upload.conf");
    std::fs::write(&rendered, render_template(&settings)).unwrap();
    let journal = fixture(dir.path(), "shipped by the rendered file");
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$1\" \"$2\" && \"$3\" --follow=no --file=\"$4\"")
        .arg("sh")
        .arg(&rendered)
        .arg(constants::JOURNAL_UPLOAD_CONF)
        .arg(hosttools::JOURNAL_UPLOAD)
        .arg(&journal)
        .stdin(Stdio::null())
        .output()
        .expect("run unshare");
    assert_success("systemd-journal-upload with the rendered file", &out);
    assert_received(&receiver, "shipped by the rendered file");
}

/// The `journal-upload` package's template, rendered as thar-be-settings renders it.
fn render_template(settings: &serde_json::Value) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packages/journal-upload/files/usr/share/templates/journal-upload-conf");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    schnauzer::render_template(
        &path.display().to_string(),
        &text,
        &serde_json::json!({ "settings": settings }),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}
