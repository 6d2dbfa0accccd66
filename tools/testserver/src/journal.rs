//! Journal files for tests of `GET /logs`, `GET /units` and `GET /status`: entries in the
//! journal export format, written into a real journal file by systemd-journal-remote
//! ([`hosttools::JOURNAL_REMOTE`]), which the server's journalctl then reads.
//!
//! [`JournalReceiver`] runs the same program as a network receiver, for the tests of log
//! shipping (`settings.logs.remote`): what a `systemd-journal-upload` sends to it is read back
//! with journalctl.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A real `systemd-journal-remote` receiver ([`hosttools::JOURNAL_REMOTE`]) listening for plain
/// HTTP uploads on a free port of a host address, writing what it receives into journal files
/// in its own temporary directory. Tests point `systemd-journal-upload` (on the host, or a
/// node's through a guest forward) at [`JournalReceiver::url`] and read the entries back with
/// [`JournalReceiver::entries`]. The receiver is killed when the value is dropped.
pub struct JournalReceiver {
    child: Child,
    address: SocketAddr,
    dir: tempfile::TempDir,
}

/// How long [`JournalReceiver::start_on`] waits for the receiver to accept connections.
const RECEIVER_START_TIMEOUT: Duration = Duration::from_secs(10);

impl JournalReceiver {
    /// Starts a receiver on a free port of 127.0.0.1.
    pub fn start() -> Self {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Starts a receiver on a free port of `ip`. Panics, with the receiver's output, when it
    /// does not come up.
    pub fn start_on(ip: IpAddr) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory for the receiver");
        let mut last_error = String::new();
        // The port is found free and then given to the receiver; another program may take it
        // in between, so a receiver that exits at once is tried again on a new port.
        for _ in 0..5 {
            let address = {
                let probe = TcpListener::bind((ip, 0)).expect("bind a free port");
                probe.local_addr().expect("address of the bound port")
            };
            let stderr = dir.path().join("receiver.log");
            let log = std::fs::File::create(&stderr).expect("create the receiver's log");
            let mut child = Command::new(hosttools::JOURNAL_REMOTE)
                .arg(format!("--listen-http={address}"))
                // A trailing slash: a directory, in which it makes one file per sending host.
                .arg(format!("--output={}/", dir.path().display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", hosttools::JOURNAL_REMOTE));
            let deadline = Instant::now() + RECEIVER_START_TIMEOUT;
            loop {
                if let Some(status) = child.try_wait().expect("poll the receiver") {
                    last_error = format!(
                        "systemd-journal-remote on {address} exited ({status}): {}",
                        std::fs::read_to_string(&stderr).unwrap_or_default()
                    );
                    break;
                }
                if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                    return JournalReceiver {
                        child,
                        address,
                        dir,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "systemd-journal-remote on {address} did not accept connections within \
                         {} s: {}",
                        RECEIVER_START_TIMEOUT.as_secs(),
                        std::fs::read_to_string(&stderr).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("the journal receiver did not start: {last_error}");
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The URL an uploader is given: `http://ADDRESS:PORT` (the uploader adds `/upload`).
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The directory of the received journal files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every entry received so far, read by the host's `journalctl --directory -o json`: one
    /// JSON object per entry, fields as journalctl shows them (a binary field is an array of
    /// numbers). Empty while nothing has arrived.
    pub fn entries(&self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let has_journal = std::fs::read_dir(self.dir.path())
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "journal"))
            })
            .unwrap_or(false);
        if !has_journal {
            return Vec::new();
        }
        let out = Command::new("journalctl")
            .arg(format!("--directory={}", self.dir.path().display()))
            .args(["--output=json", "--no-pager"])
            .stdin(Stdio::null())
            .output()
            .expect("run journalctl");
        assert!(
            out.status.success(),
            "journalctl cannot read {}: {}",
            self.dir.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    /// Polls [`JournalReceiver::entries`] every half second until `found` holds for one of
    /// them, and returns that entry; `None` after `timeout`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        found: impl Fn(&serde_json::Map<String, serde_json::Value>) -> bool,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(entry) = self.entries().into_iter().find(|e| found(e)) {
                return Some(entry);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// What the receiver logged (its errors, such as a refused upload).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("receiver.log")).unwrap_or_default()
    }
}

impl Drop for JournalReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A text field of a journal entry as `journalctl -o json` shows it (a string), or `None`
/// when it is absent or binary.
pub fn field<'a>(
    entry: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Option<&'a str> {
    entry.get(name).and_then(serde_json::Value::as_str)
}
