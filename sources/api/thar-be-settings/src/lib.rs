//! # Background
//!
//! `thar-be-settings` is the configuration renderer of a Ballast host (the name and the job are
//! Bottlerocket's). Settings live in the API server; services read ordinary configuration
//! files. After a commit, the API server runs this program with the changed keys, and it:
//!
//! 1. asks the API server which services the keys affect (`GET /metadata/affected-services`);
//! 2. renders those services' configuration files from their handlebars templates, with the
//!    context `{"settings": <GET /settings>, "os": <GET /os>}` and the helpers of `schnauzer`;
//! 3. writes each file atomically, only when its content changes;
//! 4. runs the restart commands of each affected service whose files changed (a service without
//!    configuration files always runs them).
//!
//! A file whose template fails is left as it was and its service is not restarted; the other
//! files and services still go ahead, and the program exits non-zero at the end.
//!
//! # Modes
//!
//! * default: changed keys as a JSON array on stdin, e.g. `["settings.ntp.time-servers"]`;
//! * `--all`: every configuration file of every service (at boot);
//! * `--dry-run --tx NAME`: what committing transaction NAME would do, as one JSON document on
//!   stdout ([`Preview`]); nothing is written or run.
//!
//! `--no-restart` skips restart commands; `--root DIR` puts every configuration file and
//! template path under DIR.
//!
//! # One render at a time
//!
//! Two renders can overlap: the API server runs one per commit_and_apply (its own queue runs
//! them one at a time), while at boot `settings-applier.service` runs `--all` on its own. If an
//! older render finished last, it would write the settings it read before a newer commit, and
//! a user's change would be silently reverted on disk while the API shows it. So every render
//! that writes (all modes but `--dry-run`) first takes an exclusive `flock` on a lock file
//! (`--lock-file`, by default [`DEFAULT_LOCK_FILE`], or `run/thar-be-settings.lock` under
//! `--root`) and holds it until its restart commands are done, and only then reads the
//! settings. Renders therefore run one after the other, each with settings at least as new as
//! the previous one's; and as the render of a commit always starts after that commit, the
//! last render to finish has read every commit made before it, so the files end up matching
//! the newest settings.

#![forbid(unsafe_code)]

pub mod api;
pub mod error;
pub mod files;
pub mod restart;

pub use error::{Error, Result};

use crate::api::Api;
use crate::files::Rendered;
use models::{ConfigurationFile, Service};
use serde_json::{json, Map, Value};
use snafu::ResultExt;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The lock that keeps renders from overlapping (see "One render at a time").
pub const DEFAULT_LOCK_FILE: &str = "/run/thar-be-settings.lock";

/// Command line of the `thar-be-settings` binary.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    version,
    about = "Renders configuration files from settings and restarts the services they affect"
)]
pub struct Args {
    /// The API server's socket.
    #[arg(long, env = constants::API_SOCKET_ENV, default_value = constants::API_SOCKET)]
    pub socket_path: PathBuf,

    /// Render every configuration file of every service, instead of reading changed keys from
    /// stdin.
    #[arg(long, conflicts_with = "dry_run")]
    pub all: bool,

    /// Render and write files but run no restart command.
    #[arg(long)]
    pub no_restart: bool,

    /// Print what committing --tx would change (JSON on stdout) and change nothing.
    #[arg(long, requires = "tx")]
    pub dry_run: bool,

    /// The pending transaction to preview with --dry-run.
    #[arg(long, requires = "dry_run")]
    pub tx: Option<String>,

    /// Put every configuration file and template path under this directory.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// The file locked while rendering, so that renders never overlap [default:
    /// /run/thar-be-settings.lock, under --root when given].
    #[arg(long, value_name = "FILE")]
    pub lock_file: Option<PathBuf>,

    /// Seconds a restart command may run before it is killed.
    #[arg(long, value_name = "SECONDS", default_value_t = restart::DEFAULT_TIMEOUT.as_secs())]
    pub restart_timeout: u64,

    /// trace, debug, info, warn or error.
    #[arg(long, default_value = "info")]
    pub log_level: logging::LevelFilter,
}

/// What to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The services affected by these changed keys.
    Keys(Vec<String>),
    /// Every service.
    All,
}

/// Settings for an apply run.
#[derive(Debug, Clone)]
pub struct Options {
    pub root: Option<PathBuf>,
    pub restart: bool,
    pub restart_timeout: Duration,
}

/// Runs the mode the arguments ask for; stdin is read for changed keys in the default mode and
/// the dry-run document goes to stdout.
pub async fn run(args: Args) -> Result<()> {
    let api = Api::new(&args.socket_path);
    if let (true, Some(tx)) = (args.dry_run, &args.tx) {
        let preview = dry_run(&api, tx, args.root.as_deref()).await?;
        let text = serde_json::to_string_pretty(&preview).expect("a preview is plain JSON");
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        return writeln!(stdout, "{text}")
            .and_then(|_| stdout.flush())
            .context(error::OutputSnafu);
    }
    let selection = if args.all {
        Selection::All
    } else {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context(error::ReadStdinSnafu)?;
        Selection::Keys(parse_keys(&text)?)
    };
    let lock_path = args.lock_file.unwrap_or_else(|| match &args.root {
        Some(root) => root.join(DEFAULT_LOCK_FILE.trim_start_matches('/')),
        None => PathBuf::from(DEFAULT_LOCK_FILE),
    });
    let options = Options {
        root: args.root,
        restart: !args.no_restart,
        restart_timeout: Duration::from_secs(args.restart_timeout),
    };
    // Held until the end of this function: reading settings, writing files, restarting.
    let _lock = lock_renders(lock_path).await?;
    apply(&api, &selection, &options).await
}

/// Waits for the exclusive render lock at `path` (creating the file and its directory) and
/// returns the open file that holds it; the lock goes away when the file is closed, also when
/// the process dies.
pub async fn lock_renders(path: PathBuf) -> Result<std::fs::File> {
    let locked = tokio::task::spawn_blocking(move || {
        let open = || -> std::io::Result<std::fs::File> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    tracing::info!("waiting for another render to finish ({})", path.display());
                    file.lock()?;
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
            Ok(file)
        };
        open().context(error::LockSnafu { path: &path })
    })
    .await;
    match locked {
        Ok(result) => result,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Parses the JSON array of changed keys the API server writes on stdin.
pub fn parse_keys(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).context(error::ParseKeysSnafu)
}

/// Everything needed to render: definitions and the template context.
struct World {
    services: BTreeMap<String, Service>,
    files: BTreeMap<String, ConfigurationFile>,
}

impl World {
    async fn read(api: &Api) -> Result<World> {
        Ok(World {
            services: api.services().await?,
            files: api.configuration_files().await?,
        })
    }

    /// The definition of `service`, or the error to report.
    fn service(&self, service: &str) -> Result<&Service> {
        self.services
            .get(service)
            .ok_or_else(|| Error::UnknownService {
                service: service.to_string(),
            })
    }

    /// Renders `file` of `service` with `context`.
    fn render(
        &self,
        service: &str,
        file: &str,
        context: &Value,
        root: Option<&Path>,
    ) -> Result<Rendered> {
        let definition = self.files.get(file).ok_or_else(|| Error::UnknownFile {
            service: service.to_string(),
            file: file.to_string(),
        })?;
        files::render(file, definition, context, root)
    }
}

/// What happened to one configuration file in an apply run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileOutcome {
    Changed,
    Unchanged,
    Failed,
}

/// Renders the selected services' files, writes those that change and runs the restart
/// commands of services whose files changed. Every file and command is tried; the failures are
/// logged as they happen and returned together as [`Error::Failed`].
pub async fn apply(api: &Api, selection: &Selection, options: &Options) -> Result<()> {
    let world = World::read(api).await?;
    let names: BTreeSet<String> = match selection {
        Selection::All => world.services.keys().cloned().collect(),
        Selection::Keys(keys) if keys.is_empty() => {
            tracing::info!("no changed keys; nothing to do");
            return Ok(());
        }
        Selection::Keys(keys) => api.affected_services(keys).await?,
    };
    if names.is_empty() {
        tracing::info!("the changed keys affect no service; nothing to do");
        return Ok(());
    }
    let context = json!({"settings": api.settings().await?, "os": api.os().await?});
    let root = options.root.as_deref();

    let mut failures: Vec<String> = Vec::new();
    let mut fail = |e: Error| {
        tracing::error!("{e}");
        failures.push(e.to_string());
    };
    let mut outcomes: BTreeMap<String, FileOutcome> = BTreeMap::new();
    let mut to_restart: Vec<(&str, &Service)> = Vec::new();
    for name in &names {
        let service = match world.service(name) {
            Ok(service) => service,
            Err(e) => {
                fail(e);
                continue;
            }
        };
        for file in &service.configuration_files {
            if outcomes.contains_key(file) {
                continue;
            }
            let outcome = match world
                .render(name, file, &context, root)
                .and_then(|rendered| rendered.write().map(|changed| (rendered, changed)))
            {
                Ok((rendered, true)) => {
                    tracing::info!("wrote {}", rendered.disk_path.display());
                    FileOutcome::Changed
                }
                Ok((rendered, false)) => {
                    tracing::debug!("{} is up to date", rendered.disk_path.display());
                    FileOutcome::Unchanged
                }
                Err(e) => {
                    fail(e);
                    FileOutcome::Failed
                }
            };
            outcomes.insert(file.clone(), outcome);
        }
        let states: Vec<FileOutcome> = service
            .configuration_files
            .iter()
            .map(|f| outcomes[f])
            .collect();
        if states.contains(&FileOutcome::Failed) {
            tracing::warn!(
                "not restarting service {name}: one of its configuration files could not be rendered"
            );
        } else if states.is_empty() || states.contains(&FileOutcome::Changed) {
            to_restart.push((name, service));
        } else {
            tracing::info!("service {name}: configuration unchanged, not restarting");
        }
    }

    if options.restart {
        for (name, service) in to_restart {
            for command in &service.restart_commands {
                if let Err(e) = restart::run_command(name, command, options.restart_timeout).await {
                    fail(e);
                }
            }
        }
    } else if !to_restart.is_empty() {
        tracing::info!("--no-restart: not running restart commands");
    }

    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Failed { failures })
    }
}

/// The dry-run document (what `POST /tx/dry-run` answers), declared once in
/// `api_types::preview` for this producer and its readers.
pub use api_types::preview::{Change, FilePlan, Preview, ServicePlan};

/// Works out what committing transaction `tx` would do, changing nothing: the settings that
/// differ, the services they affect, and a diff of each of those services' files rendered with
/// the candidate settings. Any file that cannot be rendered fails the whole preview.
pub async fn dry_run(api: &Api, tx: &str, root: Option<&Path>) -> Result<Preview> {
    let pending = api.pending(tx).await?;
    if pending.as_object().is_none_or(Map::is_empty) {
        return error::NothingPendingSnafu { tx }.fail();
    }
    let live = api.settings().await?;
    let mut candidate = live.clone();
    merge(&mut candidate, pending);
    let mut changes = Vec::new();
    changed_keys(
        "settings".to_string(),
        Some(&live),
        Some(&candidate),
        &mut changes,
    );
    if changes.is_empty() {
        return Ok(Preview::default());
    }
    let keys: Vec<String> = changes.iter().map(|c| c.key.clone()).collect();
    let names = api.affected_services(&keys).await?;
    let world = World::read(api).await?;
    let context = json!({"settings": candidate, "os": api.os().await?});

    let mut failures = Vec::new();
    let mut would_change: BTreeMap<String, bool> = BTreeMap::new();
    let mut preview = Preview {
        changes,
        ..Preview::default()
    };
    for name in &names {
        let service = match world.service(name) {
            Ok(service) => service,
            Err(e) => {
                failures.push(e.to_string());
                continue;
            }
        };
        let mut restart = service.configuration_files.is_empty();
        for file in &service.configuration_files {
            let changed = match would_change.get(file) {
                Some(changed) => *changed,
                None => match world.render(name, file, &context, root) {
                    Ok(rendered) => {
                        let changed = rendered.changes();
                        if changed {
                            preview.files.push(FilePlan {
                                path: rendered.path.clone(),
                                service: name.clone(),
                                diff: rendered.diff(),
                            });
                        }
                        would_change.insert(file.clone(), changed);
                        changed
                    }
                    Err(e) => {
                        failures.push(e.to_string());
                        false
                    }
                },
            };
            restart |= changed;
        }
        preview.services.push(ServicePlan {
            name: name.clone(),
            restart_commands: service.restart_commands.clone(),
            would_restart: restart,
        });
    }
    if failures.is_empty() {
        Ok(preview)
    } else {
        Err(Error::Failed { failures })
    }
}

/// Merges `over` into `base`: objects key by key, anything else replaced.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// Appends to `out` every leaf key under `key` whose value differs between `old` and `new`.
/// Objects are compared key by key; anything else (lists included) is one value.
pub fn changed_keys(key: String, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Change>) {
    let child = |name: &str| {
        let mut key = key.clone();
        models::key::push_segment(&mut key, name);
        key
    };
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for name in names {
                changed_keys(child(name), a.get(name), b.get(name), out);
            }
        }
        (Some(Value::Object(a)), None) => {
            for (name, value) in a {
                changed_keys(child(name), Some(value), None, out);
            }
        }
        (None, Some(Value::Object(b))) => {
            for (name, value) in b {
                changed_keys(child(name), None, Some(value), out);
            }
        }
        (old, new) if old != new => out.push(Change {
            key,
            old: old.cloned().unwrap_or(Value::Null),
            new: new.cloned().unwrap_or(Value::Null),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_deep() {
        let mut base =
            json!({"ntp": {"time-servers": ["a"]}, "motd": "x", "kernel": {"sysctl": {"a": "1"}}});
        merge(
            &mut base,
            json!({"ntp": {"time-servers": ["b", "c"]}, "kernel": {"sysctl": {"b": "2"}}}),
        );
        assert_eq!(
            base,
            json!({"ntp": {"time-servers": ["b", "c"]}, "motd": "x",
                   "kernel": {"sysctl": {"a": "1", "b": "2"}}})
        );
    }

    #[test]
    fn changed_keys_are_leaves_with_quoted_segments() {
        let old = json!({"ntp": {"time-servers": ["a"]}, "motd": "x", "kernel": {"sysctl": {"net.ipv4.ip_forward": "0"}}});
        let new = json!({"ntp": {"time-servers": ["b"]}, "motd": "x", "dns": {"search-list": ["e"]},
                         "kernel": {"sysctl": {"net.ipv4.ip_forward": "1"}}});
        let mut out = Vec::new();
        changed_keys("settings".into(), Some(&old), Some(&new), &mut out);
        assert_eq!(
            out,
            vec![
                Change {
                    key: "settings.dns.search-list".into(),
                    old: Value::Null,
                    new: json!(["e"])
                },
                Change {
                    key: r#"settings.kernel.sysctl."net.ipv4.ip_forward""#.into(),
                    old: json!("0"),
                    new: json!("1")
                },
                Change {
                    key: "settings.ntp.time-servers".into(),
                    old: json!(["a"]),
                    new: json!(["b"])
                },
            ]
        );
    }

    #[test]
    fn keys_on_stdin_must_be_a_list_of_strings() {
        assert_eq!(
            parse_keys(r#"["settings.motd"]"#).unwrap(),
            ["settings.motd"]
        );
        assert!(parse_keys("").unwrap_err().to_string().contains("--all"));
        assert!(parse_keys(r#"{"a": 1}"#).is_err());
    }

    #[test]
    fn the_preview_has_the_shape_apiclient_reads() {
        let preview = Preview {
            changes: vec![Change {
                key: "settings.motd".into(),
                old: Value::Null,
                new: json!("hi"),
            }],
            services: vec![ServicePlan {
                name: "motd".into(),
                restart_commands: vec![],
                would_restart: true,
            }],
            files: vec![FilePlan {
                path: "/etc/motd".into(),
                service: "motd".into(),
                diff: "--- /etc/motd\n+++ /etc/motd\n".into(),
            }],
        };
        assert_eq!(
            serde_json::to_value(&preview).unwrap(),
            json!({"changes": [{"key": "settings.motd", "old": null, "new": "hi"}],
                   "services": [{"name": "motd", "restart-commands": [], "would-restart": true}],
                   "files": [{"path": "/etc/motd", "service": "motd",
                              "diff": "--- /etc/motd\n+++ /etc/motd\n"}]})
        );
    }
}
