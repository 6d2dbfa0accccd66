//! # Background
//!
//! Some settings cannot have a default in the image because each node needs its own value: the
//! update-wave seed is the shipped example. Their metadata names a *setting generator*, a
//! command whose output becomes the value. sundog runs at boot after early-boot-config (user
//! data) and before settings-committer: for every key that has a generator and still has no
//! value, neither live nor pending in the launch transaction ([`constants::LAUNCH_TX`]), it
//! runs the generator and stores the output in that transaction. A user's value (from user
//! data or set earlier) is therefore never replaced, and a generated value, once committed,
//! is live and is not generated again on later boots.
//!
//! # Library
//!
//! [`run`] does one pass and returns a [`Report`] with one [`Outcome`] per generator key;
//! [`Generator`] parses the metadata and runs one command.
//!
//! Metadata `setting-generator` is either a command string (`"bork seed"`) or a table:
//!
//! ```toml
//! [metadata.settings.network.hostname]
//! setting-generator = { command = "/usr/bin/gen-hostname --short", timeout-seconds = 5, default = "localhost", strength = "strong" }
//! ```
//!
//! * The command is split on whitespace and run without a shell, with stdin closed, in a
//!   process group of its own. After `timeout-seconds` (default 10) the whole group is killed.
//! * Stdout is read as JSON when it parses (`42`, `"text"`, `["a"]`) and the model accepts
//!   that for the key, else as the trimmed text: `1` fills a number setting with 1 and a string
//!   setting with "1". Output that is neither is sent as JSON, and the API's refusal reported.
//! * The value goes into the launch transaction with its own `PATCH /settings?tx=...`, so the
//!   API server validates it and a bad value refuses only its own key.
//! * A failure (cannot start, non-zero exit, timeout, no output, value refused by the API) is
//!   logged at error level with the generator's stderr. The key is then set to `default` when
//!   the metadata declares one, otherwise left unset. Never is a partial value stored.
//!
//! Generators run concurrently, at most `jobs` at a time (4 by default). They are independent
//! by contract (each fills one key from the outside world), and most of their time goes into
//! waiting (starting a process, asking a network service), so running them side by side keeps
//! the boot delay near the slowest one instead of the sum of all; the bound keeps a small
//! machine responsive. The report lists keys in order whatever order they finished in.
//!
//! # Current limitations
//!
//! * `strength` is read and checked but not acted on: a `weak` value is kept once committed,
//!   like a `strong` one. Regenerating weak values needs the datastore to remember who set a
//!   key, which it does not yet.
//! * A generator cannot see values that other generators produce in the same pass.
//! * Generators get sundog's environment; there is no per-generator environment or user.
#![forbid(unsafe_code)]

pub mod error;
pub mod generator;

use error::{ApiAnswerSnafu, ApiSnafu, ApiStatusSnafu};
pub use error::{Error, Result};
pub use generator::{Generator, Strength};
use serde_json::{Map, Value};
use snafu::ResultExt;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// How many generators run at once unless told otherwise.
pub const DEFAULT_JOBS: u16 = 4;

/// What to run against.
#[derive(Debug, Clone)]
pub struct Config {
    /// The API server's socket.
    pub socket_path: PathBuf,
    /// The pending transaction to fill (and to check for values already set).
    pub tx: String,
    /// Most generators running at once (at least 1).
    pub jobs: usize,
}

/// What happened to one key with a generator.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The key already had a value; the generator was not run.
    AlreadySet,
    /// The generator's value was stored.
    Generated(Value),
    /// The generator failed and the declared default was stored instead.
    Defaulted { value: Value, reason: String },
    /// Nothing was stored: the generator failed (or its metadata is unusable) and there was no
    /// usable default.
    Failed { reason: String },
}

/// Outcome of every key with a generator, in key order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub outcomes: BTreeMap<String, Outcome>,
}

impl Report {
    /// True when some key was left unset because of a failure.
    pub fn has_failures(&self) -> bool {
        self.outcomes
            .values()
            .any(|o| matches!(o, Outcome::Failed { .. }))
    }
}

impl fmt::Display for Report {
    /// One line for the console: `sundog: generated a, used default for b (why), failed c
    /// (why), kept d (already set)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.outcomes.is_empty() {
            return write!(f, "sundog: no setting generators declared");
        }
        let parts: Vec<String> = self
            .outcomes
            .iter()
            .map(|(key, outcome)| match outcome {
                Outcome::AlreadySet => format!("kept {key} (already set)"),
                Outcome::Generated(_) => format!("generated {key}"),
                Outcome::Defaulted { reason, .. } => {
                    format!("used default for {key} ({reason})")
                }
                Outcome::Failed { reason } => format!("failed {key} ({reason})"),
            })
            .collect();
        write!(f, "sundog: {}", parts.join(", "))
    }
}

/// Runs every generator whose key has no value yet and stores the results in `config.tx`.
/// Fails only when the API server cannot be asked what to generate; each generator's own
/// failure is an [`Outcome`].
pub async fn run(config: &Config) -> Result<Report> {
    let socket = config.socket_path.as_path();
    let tx_query = apiclient::encode_query_value(&config.tx);
    let generators: BTreeMap<String, Value> =
        get_json(socket, "/metadata/setting-generators").await?;
    let mut report = Report::default();
    if generators.is_empty() {
        return Ok(report);
    }
    let live: Value = get_json(socket, "/settings").await?;
    let pending: Value = get_json(socket, &format!("/tx?tx={tx_query}")).await?;

    let semaphore = Arc::new(Semaphore::new(config.jobs.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (key, metadata) in generators {
        let segments = match setting_segments(&key) {
            Ok(segments) => segments,
            Err(reason) => {
                tracing::error!("cannot generate {key}: {reason}");
                report.outcomes.insert(key, Outcome::Failed { reason });
                continue;
            }
        };
        if has_value(&live, &segments) || has_value(&pending, &segments) {
            tracing::debug!("{key} already has a value; not running its generator");
            report.outcomes.insert(key, Outcome::AlreadySet);
            continue;
        }
        let generator = match Generator::from_metadata(&metadata) {
            Ok(generator) => generator,
            Err(reason) => {
                tracing::error!("cannot generate {key}: {reason}");
                report.outcomes.insert(key, Outcome::Failed { reason });
                continue;
            }
        };
        let semaphore = semaphore.clone();
        let socket = config.socket_path.clone();
        let uri = format!("/settings?tx={tx_query}");
        tasks.spawn(async move {
            // The semaphore is never closed, so acquiring only waits.
            let _permit = semaphore.acquire_owned().await;
            let outcome = generate(&socket, &uri, &key, &segments, &generator).await;
            (key, outcome)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((key, outcome)) => {
                report.outcomes.insert(key, outcome);
            }
            // A panicking task is a bug in sundog; keep the other results.
            Err(e) => tracing::error!("a generator task failed: {e}"),
        }
    }
    Ok(report)
}

/// Runs one generator and stores its value, or the default, or nothing.
async fn generate(
    socket: &Path,
    uri: &str,
    key: &str,
    segments: &[String],
    generator: &Generator,
) -> Outcome {
    tracing::info!("generating {key} with '{}'", generator.command());
    let failure = match generator.run().await {
        Ok(text) => {
            let value = choose_value(segments, &text);
            match store(socket, uri, segments, &value).await {
                Ok(()) => {
                    tracing::info!("generated {key}");
                    tracing::debug!("{key} = {value}");
                    return Outcome::Generated(value);
                }
                Err(reason) => format!("the API server refused the value {value}: {reason}"),
            }
        }
        Err(reason) => format!("'{}' {reason}", generator.command()),
    };
    tracing::error!("generator for {key} failed: {failure}");
    let Some(default) = &generator.default else {
        tracing::error!("{key} stays unset: its generator failed and it declares no default");
        return Outcome::Failed { reason: failure };
    };
    match store(socket, uri, segments, default).await {
        Ok(()) => {
            tracing::warn!("{key} set to its declared default {default}");
            Outcome::Defaulted {
                value: default.clone(),
                reason: failure,
            }
        }
        Err(reason) => {
            tracing::error!("{key} stays unset: its default {default} was refused too: {reason}");
            Outcome::Failed {
                reason: format!("{failure}; the default {default} was refused too: {reason}"),
            }
        }
    }
}

/// The reading of a generator's output that the model accepts for the key (see
/// [`generator::candidates`]); when none is accepted, the first, so that the API server's
/// refusal names the problem.
fn choose_value(segments: &[String], text: &str) -> Value {
    let candidates = generator::candidates(text);
    candidates
        .iter()
        .find(|value| models::parse_settings(&nest(segments, (*value).clone())).is_ok())
        .unwrap_or(&candidates[0])
        .clone()
}

/// PATCHes one value under its key; the error is the server's explanation.
async fn store(socket: &Path, uri: &str, segments: &[String], value: &Value) -> Result<(), String> {
    let body = nest(segments, value.clone()).to_string();
    match apiclient::raw_request(socket, uri, "PATCH", Some(body)).await {
        Ok((status, _)) if (200..300).contains(&status) => Ok(()),
        Ok((status, text)) => Err(format!(
            "status {status}: {}",
            apiclient::server_message(&text)
        )),
        Err(e) => Err(e.to_string()),
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(socket: &Path, uri: &str) -> Result<T> {
    let what = format!("GET {uri}");
    let (status, body) = apiclient::raw_request(socket, uri, "GET", None)
        .await
        .context(ApiSnafu {
            what: what.clone(),
            socket_path: socket,
        })?;
    if !(200..300).contains(&status) {
        return ApiStatusSnafu {
            what,
            status,
            message: apiclient::server_message(&body),
        }
        .fail();
    }
    serde_json::from_str(&body).context(ApiAnswerSnafu { what })
}

/// The segments of a settings key below `settings`: `settings.updates.seed` gives
/// `["updates", "seed"]`.
fn setting_segments(key: &str) -> Result<Vec<String>, String> {
    let mut segments = models::key::split(key).map_err(|e| e.to_string())?;
    if segments.len() < 2 || segments[0] != models::validate::SETTINGS_PREFIX {
        return Err(format!(
            "'{key}' is not a settings key; generators can only fill keys under settings."
        ));
    }
    segments.remove(0);
    Ok(segments)
}

/// True when the settings tree (without the outer `settings`) holds a non-null value at the path.
fn has_value(tree: &Value, segments: &[String]) -> bool {
    let mut node = tree;
    for segment in segments {
        match node.get(segment) {
            Some(next) => node = next,
            None => return false,
        }
    }
    !node.is_null()
}

/// Wraps `value` in one object per segment.
fn nest(segments: &[String], value: Value) -> Value {
    segments.iter().rev().fold(value, |inner, segment| {
        let mut map = Map::new();
        map.insert(segment.clone(), inner);
        Value::Object(map)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_become_paths_under_settings() {
        assert_eq!(
            setting_segments("settings.updates.seed").unwrap(),
            ["updates", "seed"]
        );
        assert_eq!(
            setting_segments(r#"settings.kernel.sysctl."vm.max_map_count""#).unwrap(),
            ["kernel", "sysctl", "vm.max_map_count"]
        );
        assert!(setting_segments("services.motd").is_err());
        assert!(setting_segments("settings").is_err());
        assert!(setting_segments("settings..x").is_err());
    }

    #[test]
    fn values_are_found_and_nested_by_path() {
        let tree = json!({"updates": {"seed": 7, "x": null}, "kernel": {"sysctl": {"vm.a": "1"}}});
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(has_value(&tree, &path(&["updates", "seed"])));
        assert!(has_value(&tree, &path(&["updates"])));
        assert!(has_value(&tree, &path(&["kernel", "sysctl", "vm.a"])));
        assert!(!has_value(&tree, &path(&["updates", "x"])));
        assert!(!has_value(&tree, &path(&["updates", "seed", "deeper"])));
        assert!(!has_value(&json!({}), &path(&["motd"])));
        assert_eq!(
            nest(&path(&["kernel", "sysctl", "vm.a"]), json!("2")),
            json!({"kernel": {"sysctl": {"vm.a": "2"}}})
        );
    }

    #[test]
    fn report_line_lists_every_key_in_order() {
        let mut report = Report::default();
        assert_eq!(report.to_string(), "sundog: no setting generators declared");
        report
            .outcomes
            .insert("settings.b".into(), Outcome::Generated(json!(1)));
        report.outcomes.insert(
            "settings.a".into(),
            Outcome::Failed {
                reason: "boom".into(),
            },
        );
        report
            .outcomes
            .insert("settings.c".into(), Outcome::AlreadySet);
        report.outcomes.insert(
            "settings.d".into(),
            Outcome::Defaulted {
                value: json!("x"),
                reason: "why".into(),
            },
        );
        assert_eq!(
            report.to_string(),
            "sundog: failed settings.a (boom), generated settings.b, kept settings.c (already set), used default for settings.d (why)"
        );
        assert!(report.has_failures());
    }
}
