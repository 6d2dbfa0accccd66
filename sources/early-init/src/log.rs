//! Progress and error lines.
//!
//! Progress lines go to the console (standard output, which the kernel connects to
//! `/dev/console` for PID 1) so that they are visible even with `quiet`, and a copy goes to
//! `/dev/kmsg` so that it ends up in the journal. That copy uses the debug level, which the kernel
//! does not echo to the console at the default log level, so lines are not printed twice; it may
//! be dropped by the kernel's rate limit for `/dev/kmsg` writers, which is harmless.
//!
//! Error lines use the error level and a freshly opened `/dev/kmsg` (the rate limit is per open
//! file, so a fresh one always has budget). When the kernel's console log level shows error
//! messages, the kernel's echo is the console copy; otherwise, or when there is no `/dev/kmsg`,
//! the line is also written to the console directly. Before devtmpfs is mounted there is no
//! `/dev/kmsg`; it is opened as soon as it exists.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::time::Instant;

const PREFIX: &str = "ballast-init";

/// Writes the init's messages.
pub struct Log {
    kmsg: Option<File>,
    debug: bool,
    started: Instant,
}

impl Default for Log {
    fn default() -> Self {
        Self::new()
    }
}

impl Log {
    pub fn new() -> Self {
        Log {
            kmsg: None,
            debug: false,
            started: Instant::now(),
        }
    }

    /// Shows [`Log::debug`] lines from now on.
    pub fn set_debug(&mut self, debug: bool) {
        self.debug = debug;
    }

    /// Time since the init started.
    pub fn elapsed_ms(&self) -> u128 {
        self.started.elapsed().as_millis()
    }

    fn console(line: &str) {
        let mut out = std::io::stdout();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }

    fn emit(&mut self, text: &str) {
        let line = format!("{PREFIX}: {text}\n");
        Self::console(&line);
        if self.kmsg.is_none() {
            self.kmsg = open_kmsg();
        }
        if let Some(kmsg) = &mut self.kmsg {
            // One write per record; the kernel parses the <level> prefix.
            let _ = kmsg.write_all(format!("<7>{line}").as_bytes());
        }
    }

    /// A progress line.
    pub fn info(&mut self, text: impl AsRef<str>) {
        self.emit(text.as_ref());
    }

    /// A line shown only with `ballast.debug`.
    pub fn debug(&mut self, text: impl AsRef<str>) {
        if self.debug {
            self.emit(text.as_ref());
        }
    }

    /// An error line.
    pub fn error(&mut self, text: impl AsRef<str>) {
        let line = format!("{PREFIX}: {}\n", text.as_ref());
        let logged = open_kmsg()
            .map(|mut kmsg| kmsg.write_all(format!("<3>{line}").as_bytes()).is_ok())
            .unwrap_or(false);
        if !(logged && console_shows(3)) {
            Self::console(&line);
        }
    }
}

fn open_kmsg() -> Option<File> {
    OpenOptions::new().write(true).open("/dev/kmsg").ok()
}

/// Whether the kernel echoes messages of `level` to the console: the first field of
/// /proc/sys/kernel/printk is the console log level, and lower levels are more severe.
fn console_shows(level: u8) -> bool {
    std::fs::read_to_string("/proc/sys/kernel/printk")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u8>().ok())
        .is_some_and(|console_level| level < console_level)
}
