//! The logging setup shared by every binary of a Ballast node.
//!
//! # Background
//!
//! Node programs log with `tracing` to stderr. Under systemd, stderr is the journal, which
//! stores each line as it comes: colour escape codes there are noise (a VM test checks the
//! journal has none), and some programs leave out timestamps because the journal stamps every
//! line itself. The updater's stderr is also kept in the update status the API serves. Each
//! `main.rs` used to build its own subscriber for this; now each calls this crate, so the rules
//! are written once:
//!
//! * everything goes to stderr, so stdout carries only a command's output;
//! * ANSI colour only when stderr is a terminal;
//! * the level comes from the program's `--log-level` argument ([`LevelFilter`] parses
//!   `off`, `error`, `warn`, `info`, `debug`, `trace`), or from filter directives
//!   (`updog=debug,tough=info`) for a program that takes those.
//!
//! What differs between programs on purpose is a parameter: whether lines carry a timestamp,
//! whether they name the module that logged, and whether only the program's own crate logs.
//!
//! # Usage
//!
//! ```no_run
//! // In main(), once, before the first log line:
//! logging::init(logging::LevelFilter::INFO);
//!
//! // A boot-time helper whose lines go to the journal, which adds its own timestamps:
//! logging::Logging::new(logging::LevelFilter::INFO).without_time().init();
//!
//! // A command-line tool that shows only its own crate's messages, without module names:
//! logging::Logging::new(logging::LevelFilter::WARN)
//!     .only_crate("apiclient")
//!     .without_time()
//!     .without_target()
//!     .init();
//! ```
//!
//! # Current limitations
//!
//! * Only stderr is supported; there is no native journal protocol (no priorities or fields).
//! * A second [`Logging::init`] in one process is ignored (the first setup stays), so a library
//!   that sets up logging for a program it hosts cannot change a setup the program made.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

pub use tracing_subscriber::filter::LevelFilter;

/// Which events are written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Filter {
    /// Everything at or above the level.
    Level(LevelFilter),
    /// Only the crate's own events at or above the level.
    Crate(String, LevelFilter),
    /// `tracing_subscriber` filter directives (`info`, `updog=debug,tough=warn`).
    Directives(String),
}

/// A logging setup; [`Logging::init`] installs it for the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    filter: Filter,
    time: bool,
    target: bool,
}

/// Installs the default setup at `level`: stderr, timestamps and module names, colour only on
/// a terminal.
pub fn init(level: LevelFilter) {
    Logging::new(level).init();
}

impl Logging {
    /// Events at `level` and above, from any crate, with timestamps and module names.
    pub fn new(level: LevelFilter) -> Logging {
        Logging {
            filter: Filter::Level(level),
            time: true,
            target: true,
        }
    }

    /// Events selected by filter directives, as in `RUST_LOG` (`info`, `updog=debug`).
    /// Directives that do not parse fall back to `info`, so a typo in a unit file does not
    /// silence a program.
    pub fn directives(directives: &str) -> Logging {
        Logging {
            filter: Filter::Directives(directives.to_string()),
            time: true,
            target: true,
        }
    }

    /// Keeps only the events of `crate_name` (its library and binary), at the level given to
    /// [`Logging::new`]; other crates' events are dropped.
    pub fn only_crate(mut self, crate_name: &str) -> Logging {
        let level = match self.filter {
            Filter::Level(level) | Filter::Crate(_, level) => level,
            Filter::Directives(_) => LevelFilter::INFO,
        };
        self.filter = Filter::Crate(crate_name.replace('-', "_"), level);
        self
    }

    /// Leaves out timestamps, for programs whose lines the journal stamps.
    pub fn without_time(mut self) -> Logging {
        self.time = false;
        self
    }

    /// Leaves out the name of the module that logged.
    pub fn without_target(mut self) -> Logging {
        self.target = false;
        self
    }

    /// Installs this setup for the process, writing to stderr with colour only when stderr is
    /// a terminal. A second call in the same process is ignored.
    pub fn init(self) {
        let ansi = std::io::stderr().is_terminal();
        let _ = tracing::subscriber::set_global_default(self.subscriber(std::io::stderr, ansi));
    }

    /// The subscriber this setup describes, writing to `writer`, with colour codes iff `ansi`.
    fn subscriber<W>(&self, writer: W, ansi: bool) -> impl Subscriber + Send + Sync
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        let builder = tracing_subscriber::fmt()
            .with_env_filter(self.env_filter())
            .with_writer(writer)
            .with_ansi(ansi)
            .with_target(self.target);
        // The two builders have different types, so each finishes on its own branch.
        if self.time {
            Box::new(builder.finish()) as Box<dyn Subscriber + Send + Sync>
        } else {
            Box::new(builder.without_time().finish())
        }
    }

    fn env_filter(&self) -> EnvFilter {
        match &self.filter {
            Filter::Level(level) => EnvFilter::default().add_directive((*level).into()),
            Filter::Crate(name, level) => EnvFilter::new(format!("{name}={level}")),
            Filter::Directives(directives) => {
                EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer that keeps everything written, for looking at the lines afterwards.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Capture {
        type Writer = Capture;
        fn make_writer(&'w self) -> Capture {
            self.clone()
        }
    }

    /// What `logging` writes when the events of `log` happen under it.
    fn output(logging: &Logging, ansi: bool, log: impl FnOnce()) -> String {
        let capture = Capture::default();
        let subscriber = logging.subscriber(capture.clone(), ansi);
        tracing::subscriber::with_default(subscriber, log);
        let bytes = capture.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn no_escape_codes_off_a_terminal() {
        let logging = Logging::new(LevelFilter::INFO);
        let plain = output(&logging, false, || tracing::info!(answer = 42, "hello"));
        assert!(
            plain.contains("hello") && plain.contains("answer=42"),
            "{plain}"
        );
        assert!(!plain.contains('\u{1b}'), "{plain:?}");
        let coloured = output(&logging, true, || tracing::info!("hello"));
        assert!(coloured.contains('\u{1b}'), "{coloured:?}");
    }

    #[test]
    fn level_filters() {
        let logging = Logging::new(LevelFilter::WARN);
        let text = output(&logging, false, || {
            tracing::info!("quiet");
            tracing::warn!("loud");
        });
        assert!(!text.contains("quiet") && text.contains("loud"), "{text}");
        let off = output(&Logging::new(LevelFilter::OFF), false, || {
            tracing::error!("x")
        });
        assert!(off.is_empty(), "{off}");
    }

    #[test]
    fn time_and_target_are_optional() {
        let full = output(&Logging::new(LevelFilter::INFO), false, || {
            tracing::info!("line")
        });
        // A timestamp starts with the year; the target names this module.
        assert!(full.starts_with("20"), "{full}");
        assert!(full.contains("logging::tests"), "{full}");
        let bare = Logging::new(LevelFilter::INFO)
            .without_time()
            .without_target();
        let text = output(&bare, false, || tracing::info!("line"));
        assert_eq!(text.trim(), "INFO line");
    }

    #[test]
    fn only_crate_drops_other_crates() {
        let logging = Logging::new(LevelFilter::DEBUG).only_crate("logging");
        let ours = output(&logging, false, || tracing::debug!("ours"));
        assert!(ours.contains("ours"), "{ours}");
        let other = Logging::new(LevelFilter::DEBUG).only_crate("some-other-crate");
        let theirs = output(&other, false, || tracing::error!("ours"));
        assert!(theirs.is_empty(), "{theirs}");
    }

    #[test]
    fn directives_and_their_fallback() {
        let logging = Logging::directives("logging=debug");
        let text = output(&logging, false, || tracing::debug!("detail"));
        assert!(text.contains("detail"), "{text}");
        let broken = Logging::directives("logging=loudest");
        let text = output(&broken, false, || {
            tracing::debug!("detail");
            tracing::info!("summary");
        });
        assert!(
            !text.contains("detail") && text.contains("summary"),
            "{text}"
        );
    }
}
