//! Journal files for tests of `GET /logs`, `GET /units` and `GET /status`: entries in the
//! journal export format, written into a real journal file by systemd-journal-remote
//! ([`hosttools::JOURNAL_REMOTE`]), which the server's journalctl then reads.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// One entry in the journal export format: text fields, then a binary MESSAGE when given.
pub struct Export<'a> {
    pub micros: u64,
    pub boot: &'a str,
    pub fields: &'a [(&'a str, &'a str)],
    pub binary_message: Option<&'a [u8]>,
}

/// The entries in the journal export format.
pub fn export(entries: &[Export]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        writeln!(out, "__REALTIME_TIMESTAMP={}", e.micros).unwrap();
        writeln!(out, "__MONOTONIC_TIMESTAMP={}", 1000 + i).unwrap();
        writeln!(out, "_BOOT_ID={}", e.boot).unwrap();
        for (k, v) in e.fields {
            writeln!(out, "{k}={v}").unwrap();
        }
        if let Some(bytes) = e.binary_message {
            // A field that is not text: its name, a newline, its size (64-bit little endian),
            // the bytes and a newline.
            out.extend_from_slice(b"MESSAGE\n");
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
            out.push(b'\n');
        }
        out.push(b'\n');
    }
    out
}

/// Writes `entries` into journal file `name`.journal in `dir`, appending when it exists (a
/// following journalctl sees entries appended to a file it reads; it was not seen to pick up
/// a file added to its directory).
pub fn write_journal(dir: &Path, name: &str, entries: &[Export]) {
    let mut child = Command::new(hosttools::JOURNAL_REMOTE)
        .arg(format!(
            "--output={}",
            dir.join(format!("{name}.journal")).display()
        ))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run systemd-journal-remote");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&export(entries))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "systemd-journal-remote failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
