//! What `cargo xtask` shows while it works: one line per step, a spinner with the elapsed time
//! (and the package download count and bytes) while a long step runs in a terminal, and plain
//! lines, rate-limited, when stderr is not a terminal (CI logs, pipes).
//!
//! The build libraries (buildsys, debian, imagebuilder) report through `tracing`; [`init`]
//! installs a subscriber that prints their info lines and turns the download progress events
//! of `debian::fetch` into the step's message. `RUST_LOG` adds the full log as well.

use indicatif::{ProgressBar, ProgressStyle};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The spinner of the step running now, if any (lines are printed above it).
static CURRENT: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// When a plain progress line was last printed (without a terminal they are rate-limited).
static LAST_PLAIN: Mutex<Option<Instant>> = Mutex::new(None);

/// How often a plain progress line may repeat without a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

fn terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Prints a line, above the spinner when there is one.
pub fn line(text: &str) {
    let current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    match current.as_ref() {
        Some(bar) => bar.println(format!("xtask: {text}")),
        None => eprintln!("xtask: {text}"),
    }
}

/// Updates the running step's message (progress inside the step): the spinner's text in a
/// terminal, else a plain line at most every few seconds, and always when `last` is set.
pub fn status(text: &str, last: bool) {
    let current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(bar) = current.as_ref() {
        bar.set_message(text.to_string());
        return;
    }
    drop(current);
    let mut printed = LAST_PLAIN.lock().unwrap_or_else(|e| e.into_inner());
    if last || printed.is_none_or(|at| at.elapsed() >= PLAIN_EVERY) {
        eprintln!("xtask:   {text}");
        *printed = Some(Instant::now());
    }
}

/// A step of a command, from [`step`] until [`Step::done`] (or drop).
pub struct Step {
    name: String,
    started: Instant,
    spinner: bool,
}

/// Starts a step: prints its name, and in a terminal shows a spinner with the elapsed time
/// below the lines that follow. `spinner: false` for steps whose own tool shows progress (cargo).
pub fn step(name: &str, spinner: bool) -> Step {
    eprintln!("xtask: {name}");
    let spinner = spinner && terminal();
    if spinner {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("  {spinner} {elapsed:>4} {wide_msg}")
                .expect("a valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
    }
    Step {
        name: name.to_string(),
        started: Instant::now(),
        spinner,
    }
}

impl Step {
    /// Ends the step, printing how long it took.
    pub fn done(self) {
        let seconds = self.started.elapsed().as_secs_f64();
        let name = self.name.clone();
        drop(self);
        eprintln!("xtask:   ({name}: {seconds:.1} s)");
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if self.spinner {
            if let Some(bar) = CURRENT.lock().unwrap_or_else(|e| e.into_inner()).take() {
                bar.finish_and_clear();
            }
        }
        *LAST_PLAIN.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// `n` bytes in MiB, for messages.
fn mib(n: u64) -> f64 {
    n as f64 / 1_048_576.0
}

/// The fields of one event.
#[derive(Default)]
struct Fields {
    message: String,
    numbers: Vec<(&'static str, u64)>,
    others: String,
}

impl Fields {
    fn number(&self, name: &str) -> Option<u64> {
        self.numbers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.numbers.push((field.name(), value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.numbers
            .push((field.name(), u64::try_from(value).unwrap_or(0)));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            let _ = write!(self.others, " {}={value:?}", field.name());
        }
    }
}

/// The build libraries whose info lines are shown.
const SHOWN: &[&str] = &["buildsys", "debian", "imagebuilder"];

fn shown(meta: &Metadata<'_>) -> bool {
    shown_target(meta.target(), *meta.level())
}

fn shown_target(target: &str, level: Level) -> bool {
    target == debian::PROGRESS_TARGET
        || (level <= Level::INFO && SHOWN.contains(&target.split("::").next().unwrap_or("")))
}

/// Renders the build libraries' events as progress.
struct ProgressLayer;

impl<S: Subscriber> Layer<S> for ProgressLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if event.metadata().target() == debian::PROGRESS_TARGET {
            if let (Some(done), Some(total), Some(bytes), Some(bytes_total)) = (
                fields.number("packages_done"),
                fields.number("packages_total"),
                fields.number("bytes_done"),
                fields.number("bytes_total"),
            ) {
                status(
                    &format!(
                        "Debian packages: {done}/{total} ready, {:.1} of {:.1} MiB",
                        mib(bytes),
                        mib(bytes_total)
                    ),
                    done == total,
                );
            }
            return;
        }
        let numbers: String = fields
            .numbers
            .iter()
            .map(|(name, value)| match *name {
                "bytes" => format!(" {:.1} MiB", mib(*value)),
                "ms" => format!(" (after {:.1} s)", *value as f64 / 1000.0),
                _ => format!(" {name}={value}"),
            })
            .collect();
        let level = match *event.metadata().level() {
            Level::ERROR => "error: ",
            Level::WARN => "warning: ",
            _ => "",
        };
        line(&format!(
            "  {level}{}{numbers}{}",
            fields.message, fields.others
        ));
    }
}

/// Installs the progress display (and, with `RUST_LOG` set, the full log on stderr).
pub fn init() {
    let full_log = std::env::var_os("RUST_LOG").map(|_| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(tracing_subscriber::EnvFilter::from_default_env())
    });
    let _ = tracing_subscriber::registry()
        .with(ProgressLayer.with_filter(tracing_subscriber::filter::filter_fn(shown)))
        .with(full_log)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_build_library_info_and_download_progress_are_shown() {
        assert!(shown_target("buildsys::stage", Level::INFO));
        assert!(shown_target("imagebuilder", Level::WARN));
        assert!(!shown_target("buildsys::stage", Level::DEBUG));
        assert!(!shown_target("hyper::client", Level::INFO));
        assert!(!shown_target("debianish", Level::INFO));
        assert!(shown_target(debian::PROGRESS_TARGET, Level::DEBUG));
    }

    #[test]
    fn plain_status_lines_are_rate_limited_but_the_last_one_shows() {
        *LAST_PLAIN.lock().unwrap() = None;
        status("first", false);
        let first = LAST_PLAIN.lock().unwrap().expect("printed");
        status("second", false);
        assert_eq!(LAST_PLAIN.lock().unwrap().unwrap(), first);
        status("last", true);
        assert!(LAST_PLAIN.lock().unwrap().unwrap() >= first);
    }
}
