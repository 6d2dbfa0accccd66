//! The `apiclient` command line: argument definitions and the dispatch to the library.
//!
//! `main.rs` parses a [`Cli`], calls [`Cli::check`] for the few rules clap can't express, sets
//! up logging and hands over to [`run`].

use crate::error::{self, Result};
use crate::get::GetRequest;
use crate::set::{KeyPair, SettingsInput};
use crate::{
    apply, audit, get, history, logs, raw_request, report, set, status, support_bundle, tx, update,
};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use constants::API_SOCKET;
use serde_json::{Map, Value};
use snafu::ResultExt;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use tracing::debug;
use tracing::level_filters::LevelFilter;

/// Talk to the Ballast API server: read, change and apply settings.
#[derive(Debug, Parser)]
#[command(name = "apiclient", version)]
pub struct Cli {
    /// Unix socket of the API server.
    #[arg(
        short,
        long,
        global = true,
        env = "APICLIENT_SOCKET",
        default_value = API_SOCKET,
        value_name = "PATH"
    )]
    pub socket_path: PathBuf,

    /// How much to log on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Log at debug level (shows each request and response status).
    #[arg(short, long, global = true, conflicts_with = "log_level")]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// Log levels for `--log-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl From<LogLevel> for LevelFilter {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Off => LevelFilter::OFF,
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Trace => LevelFilter::TRACE,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show settings under the given prefixes (merged), or the answer of one /URI; with no
    /// arguments, show settings and OS information.
    Get(GetArgs),
    /// Change settings and apply them at once.
    Set(SetArgs),
    /// Apply TOML or JSON settings documents (with a top-level `settings` table) in one
    /// transaction.
    Apply(ApplyArgs),
    /// Send any request and print the response body.
    Raw(RawArgs),
    /// Show the committed settings changes.
    History(HistoryArgs),
    /// Revert the newest committed change, or the one with the given ID.
    Undo(UndoArgs),
    /// Show the node's journal, one line per entry, oldest first.
    Logs(LogsArgs),
    /// Show the API's audit trail: who asked for which change, and the answer, oldest first.
    Audit(AuditArgs),
    /// Show the node's state: failed units with their last journal entries, how many units
    /// are active, the A/B boot state, the running version and the update state.
    Status(StatusArgs),
    /// Show reports on the node: `report boot` says where the boot's time went, `report cis`
    /// checks the node against the CIS benchmark.
    Report(ReportArgs),
    /// Save the node's support bundle (journal, status, units, settings and history with
    /// secrets replaced, audit trail, mounts, disks, network, kernel log) as a .tar.gz file.
    SupportBundle(SupportBundleArgs),
    /// Check for, apply or cancel an OS update.
    Update(UpdateArgs),
    /// Reboot the node (refused while an update action runs).
    Reboot,
    /// Keep the settings of the pending try (`set --try`, `apply --try`); without it they are
    /// reverted at the try's deadline.
    Confirm(ConfirmArgs),
    /// Show the pending try: its keys with their old and new values, the deadline, who asked.
    Provisional(ProvisionalArgs),
    /// Run a command in a running host container (e.g. `exec admin -- sh`), with this
    /// terminal; exits with the command's exit code.
    Exec(ExecArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Key prefixes like `settings.motd` or `os`, or one API URI like `/tx/list`.
    #[arg(value_name = "PREFIX|/URI")]
    pub items: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// Settings to change, like `motd=hi` or `settings.ntp.time-servers='["a"]'`; the
    /// `settings.` prefix is optional.  Keys with dots in a name need quotes:
    /// 'kubernetes.node-labels."my.label"=x'.
    #[arg(
        value_name = "KEY=VALUE",
        value_parser = keypair_arg,
        required_unless_present = "json",
        conflicts_with = "json"
    )]
    pub pairs: Vec<KeyPair>,

    /// Settings as a JSON object, with or without an outer "settings" key, e.g.
    /// '{"motd": "hi"}'.  Use this to control value types.
    #[arg(short, long, value_name = "JSON", value_parser = json_arg)]
    pub json: Option<Map<String, Value>>,

    /// Show what would change (settings, services restarted, configuration file diffs) and
    /// change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Commit and apply provisionally: unless `apiclient confirm` comes within this time
    /// (120, 120s, 2m or 1h; at most 24h), the server restores the previous values. A reboot
    /// before the confirm restores them too.
    #[arg(long = "try", value_name = "TIMEOUT", value_parser = timeout_arg, conflicts_with = "dry_run")]
    pub try_for: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Settings files: paths, file:// or http:// URIs, or `-` for stdin (the default).
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<String>,

    /// Show what would change (settings, services restarted, configuration file diffs) and
    /// change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Commit and apply provisionally, as `set --try`.
    #[arg(long = "try", value_name = "TIMEOUT", value_parser = timeout_arg, conflicts_with = "dry_run")]
    pub try_for: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ConfirmArgs {
    /// Print the server's JSON (the try that was kept) instead of a line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ProvisionalArgs {
    /// Print the server's JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RawArgs {
    /// Path and query to request, e.g. /tx/list.
    #[arg(short, long, value_name = "URI")]
    pub uri: String,

    /// HTTP method.
    #[arg(short, short_alias = 'X', long, default_value = "GET")]
    pub method: String,

    /// Request body (sent as JSON).
    #[arg(short, long, value_name = "DATA")]
    pub data: Option<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only requests from this time on: RFC 3339 (2026-12-07T06:53:05Z) or relative (-10m).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,

    /// How many of the newest entries (the server's default is 100, its limit 10000).
    #[arg(short = 'n', long, value_name = "LINES")]
    pub lines: Option<u32>,

    /// Print each entry as one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the server's JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub command: ReportCommand,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Where the boot's time went: firmware, loader, kernel, initrd and userspace in seconds,
    /// then the chain of units apiserver.service and configured.target waited for (like
    /// `systemd-analyze critical-chain`).
    Boot(ReportBootArgs),
    /// The node against the CIS Bottlerocket Benchmark: each item with PASS, FAIL or MANUAL
    /// and the facts it was decided on.
    Cis(ReportCisArgs),
}

/// How `report cis` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// For a person: one line per item, its evidence indented below.
    Text,
    /// The server's document.
    Json,
}

#[derive(Debug, Args)]
pub struct ReportCisArgs {
    /// The benchmark's profile level: 1, or 2 for levels 1 and 2.
    #[arg(short = 'l', long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub level: u8,

    /// text or json.
    #[arg(short = 'f', long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub struct ReportBootArgs {
    /// Show the chain to this unit instead (e.g. containerd or kubelet.service).
    #[arg(long, value_name = "UNIT")]
    pub target: Option<String>,

    /// Print the server's JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Give the command a terminal (the default when stdin is one).
    #[arg(short = 't', long, conflicts_with = "no_tty")]
    pub tty: bool,

    /// Never give the command a terminal, even when stdin is one.
    #[arg(short = 'T', long)]
    pub no_tty: bool,

    /// The host container (e.g. admin or control).
    pub target: String,

    /// The command and its arguments (after `--` when they start with a dash).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SupportBundleArgs {
    /// Where to write the archive (a .tar.gz file), or `-` for stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,

    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,

    /// Have the node encrypt the archive to this age recipient (age1..., as `age-keygen -y`
    /// prints it) before it leaves the node; FILE is then an age file (name it .tar.gz.age)
    /// that `age -d -i KEYFILE` opens.
    #[arg(long, value_name = "AGE_RECIPIENT")]
    pub recipient: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Only this systemd unit's entries (repeat for more); `.service` is added to a name
    /// without a unit type.
    #[arg(short, long = "unit", value_name = "UNIT")]
    pub units: Vec<String>,

    /// Only entries at this priority or more important: 0-7 or emerg, alert, crit, err,
    /// warning, notice, info, debug.
    #[arg(short, long, value_name = "PRIO")]
    pub priority: Option<String>,

    /// Only entries from this time on: RFC 3339 (2026-12-07T06:53:05Z) or relative (-10m).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,

    /// Only entries up to this time, written as --since.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub until: Option<String>,

    /// Only one boot's entries: 0 (the newest), -1 (the one before), ... or a boot id.
    #[arg(short, long, value_name = "BOOT", allow_hyphen_values = true)]
    pub boot: Option<String>,

    /// Only entries whose message matches this pattern (PCRE2; case-insensitive when all
    /// lowercase).
    #[arg(short, long, value_name = "PATTERN", allow_hyphen_values = true)]
    pub grep: Option<String>,

    /// How many of the newest entries (the server's default is 100, its limit 10000).
    #[arg(short = 'n', long, value_name = "LINES")]
    pub lines: Option<u32>,

    /// Keep printing new entries as they are written, until interrupted.
    #[arg(short, long)]
    pub follow: bool,

    /// Print each entry as one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UndoArgs {
    /// The history record to revert; the newest if not given.
    #[arg(value_name = "ID")]
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[command(subcommand)]
    pub command: UpdateCommand,
}

#[derive(Debug, Subcommand)]
pub enum UpdateCommand {
    /// Look for updates and print the update status.
    Check(UpdateCheckArgs),
    /// Prepare the chosen update (download and write it), then activate it for the next boot.
    Apply(UpdateApplyArgs),
    /// Deactivate an activated update: the node keeps booting its current image.
    Cancel,
    /// Pause the update daemon (no checks, downloads or reboots), across reboots, until
    /// `update resume` or for the time given.
    Pause(UpdatePauseArgs),
    /// End a pause of the update daemon.
    Resume,
}

#[derive(Debug, Args)]
pub struct UpdatePauseArgs {
    /// Pause for this long (a number with s, m, h or d) instead of until resumed.
    #[arg(long = "for", value_name = "DURATION", value_parser = duration_arg)]
    pub duration: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct UpdateCheckArgs {
    /// How long to wait for the check: seconds, or a number with s, m or h.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg, default_value = "2m")]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct UpdateApplyArgs {
    /// Look for updates first; stop quietly when there is none.
    #[arg(short, long)]
    pub check: bool,

    /// Reboot into the update once it is activated.
    #[arg(short, long)]
    pub reboot: bool,

    /// How long to wait for the download: seconds, or a number with s, m or h.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg, default_value = "10m")]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

fn keypair_arg(text: &str) -> std::result::Result<KeyPair, String> {
    text.parse::<KeyPair>().map_err(|e| e.to_string())
}

fn duration_arg(text: &str) -> std::result::Result<Duration, String> {
    update::parse_duration(text)
}

fn timeout_arg(text: &str) -> std::result::Result<u64, String> {
    api_types::provisional::parse_timeout(text)
}

fn json_arg(text: &str) -> std::result::Result<Map<String, Value>, String> {
    set::parse_json_settings(text).map_err(|e| e.to_string())
}

impl Cli {
    /// Checks the rules between arguments that clap can't express.  The message is meant for
    /// clap's usage error.
    pub fn check(&self) -> std::result::Result<(), String> {
        if let Command::Get(args) = &self.command {
            GetRequest::from_args(&args.items).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The log level asked for, `-v` included.
    pub fn level(&self) -> LevelFilter {
        if self.verbose {
            LevelFilter::DEBUG
        } else {
            self.log_level.into()
        }
    }
}

/// How a `set` or `apply` ends: a dry run, a try, or a plain commit.
fn finish(dry_run: bool, try_for: Option<u64>) -> tx::Finish {
    match (dry_run, try_for) {
        (true, _) => tx::Finish::DryRun,
        (false, Some(timeout_seconds)) => tx::Finish::Try { timeout_seconds },
        (false, None) => tx::Finish::CommitAndApply,
    }
}

/// Prints a dry run's preview, or what a try changed and until when; a plain commit prints
/// nothing (its keys go to the debug log).
fn report<W: Write>(out: &mut W, transaction: &str, how: tx::Finish, answer: &str) -> Result<()> {
    let text = match how {
        tx::Finish::CommitAndApply => {
            debug!("Committed and applied transaction {transaction}");
            return Ok(());
        }
        tx::Finish::DryRun => {
            crate::preview::render(answer).with_context(|_| error::ResponseShapeSnafu {
                what: "the dry-run preview",
                body: error::excerpt(answer.as_bytes()),
            })?
        }
        tx::Finish::Try { .. } => {
            let doc = crate::provisional::parse(answer)?;
            format!(
                "{}Run `apiclient confirm` before {} to keep it; otherwise it is reverted.\n",
                crate::provisional::render(&doc),
                doc.deadline
            )
        }
    };
    out.write_all(text.as_bytes())
        .context(error::WriteOutputSnafu)
}

pub async fn run<W: Write>(cli: Cli, out: &mut W) -> Result<()> {
    let socket = &cli.socket_path;
    match cli.command {
        Command::Get(args) => {
            let what = GetRequest::from_args(&args.items)?;
            let value = get::get(socket, &what).await?;
            print_json(out, &value)?;
        }

        Command::Set(args) => {
            let input = match args.json {
                Some(object) => SettingsInput::Json(object),
                None => SettingsInput::KeyPairs(args.pairs),
            };
            let how = finish(args.dry_run, args.try_for);
            let (transaction, answer) = set::set_and(socket, &input, how).await?;
            report(out, &transaction, how, &answer)?;
        }

        Command::Apply(args) => {
            let how = finish(args.dry_run, args.try_for);
            let (transaction, answer) = apply::apply_and(socket, &args.inputs, how).await?;
            report(out, &transaction, how, &answer)?;
        }

        Command::Raw(args) => {
            let (status, body) = raw_request(socket, &args.uri, &args.method, args.data).await?;
            debug!("Response status: {status}");
            if !(200..300).contains(&status) {
                // The caller asked for the raw answer, so show it whole, on stderr.
                if !body.is_empty() {
                    eprintln!("{}", body.trim_end_matches('\n'));
                }
                return error::RawStatusSnafu {
                    method: args.method.to_ascii_uppercase(),
                    uri: args.uri,
                    status: error::StatusText(status),
                }
                .fail();
            }
            if !body.is_empty() {
                print_text(out, &body)?;
            }
        }

        Command::History(args) => {
            let value = history::fetch(socket).await?;
            if args.json {
                print_json(out, &value)?;
            } else {
                let table = history::format_table(&history::records(value)?);
                write_out(out, table.as_bytes())?;
            }
        }

        Command::Logs(args) => {
            let options = logs::LogsOptions {
                units: args.units,
                priority: args.priority,
                since: args.since,
                until: args.until,
                boot: args.boot,
                grep: args.grep,
                lines: args.lines,
                follow: args.follow,
                json: args.json,
            };
            logs::logs(socket, &options, out).await?;
        }

        Command::Audit(args) => {
            let options = audit::AuditOptions {
                since: args.since,
                lines: args.lines,
                json: args.json,
            };
            audit::audit(socket, &options, out).await?;
        }
        Command::Status(args) => status::status(socket, args.json, out).await?,
        Command::Report(args) => match args.command {
            ReportCommand::Boot(boot) => {
                report::boot(socket, boot.target.as_deref(), boot.json, out).await?
            }
            ReportCommand::Cis(cis) => {
                let json = cis.format == ReportFormat::Json;
                report::cis(socket, cis.level, json, out).await?
            }
        },
        Command::SupportBundle(args) => {
            let destination = support_bundle::Destination::from_arg(&args.output);
            let size = support_bundle::support_bundle(
                socket,
                &destination,
                args.force,
                args.recipient.as_deref(),
                out,
            )
            .await?;
            match destination {
                support_bundle::Destination::File(path) => {
                    write_out(
                        out,
                        format!("{} ({size} bytes)\n", path.display()).as_bytes(),
                    )?;
                }
                // The archive is on stdout: the line goes to stderr.
                support_bundle::Destination::Out => eprintln!("wrote {size} bytes to stdout"),
            }
        }

        Command::Undo(args) => {
            let body = history::undo(socket, args.id.as_deref()).await?;
            match serde_json::from_str::<Value>(&body) {
                Ok(value) => print_json(out, &value)?,
                Err(_) if body.trim().is_empty() => {}
                Err(_) => print_text(out, &body)?,
            }
        }

        Command::Update(args) => {
            let mut messages = std::io::stderr();
            match args.command {
                UpdateCommand::Check(check) => {
                    let value = show_updater_stderr(update::check(socket, check.timeout).await)?;
                    print_json(out, &value)?;
                }
                UpdateCommand::Apply(apply) => {
                    let options = update::ApplyOptions {
                        check: apply.check,
                        reboot: apply.reboot,
                        timeout: apply.timeout,
                    };
                    show_updater_stderr(update::apply(socket, options, &mut messages).await)?;
                }
                UpdateCommand::Cancel => {
                    show_updater_stderr(update::cancel(socket).await)?;
                    writeln!(
                        messages,
                        "Update deactivated; the node boots its current image next"
                    )
                    .context(error::WriteOutputSnafu)?;
                }
                UpdateCommand::Pause(pause) => {
                    let until = update::pause(socket, pause.duration).await?;
                    let when = if until == constants::UPDATES_PAUSE_INDEFINITE {
                        "until `apiclient update resume`".to_string()
                    } else {
                        format!("until {until}")
                    };
                    writeln!(messages, "Updates paused {when}").context(error::WriteOutputSnafu)?;
                }
                UpdateCommand::Resume => {
                    update::resume(socket).await?;
                    writeln!(messages, "Updates resumed").context(error::WriteOutputSnafu)?;
                }
            }
        }

        Command::Confirm(args) => {
            let answer = crate::provisional::confirm(socket).await?;
            if args.json {
                print_text(out, &answer)?;
            } else {
                let doc = crate::provisional::parse(&answer)?;
                let keys: Vec<&str> = doc.changes.iter().map(|c| c.key.as_str()).collect();
                print_text(
                    out,
                    &format!("Kept the try of {}: {}", doc.transaction, keys.join(", ")),
                )?;
            }
        }

        Command::Provisional(args) => {
            let answer = crate::provisional::show(socket).await?;
            match answer {
                None if args.json => print_text(out, "null")?,
                None => print_text(out, "No try is pending.")?,
                Some(answer) if args.json => print_text(out, &answer)?,
                Some(answer) => {
                    let doc = crate::provisional::parse(&answer)?;
                    write_out(out, crate::provisional::render(&doc).as_bytes())?;
                }
            }
        }

        Command::Exec(args) => {
            let options = crate::exec::ExecOptions {
                target: args.target,
                command: args.command,
                tty: crate::exec::want_tty(args.tty, args.no_tty),
            };
            let code = crate::exec::exec(socket, &options).await?;
            if code != 0 {
                return error::CommandExitSnafu { code }.fail();
            }
        }

        Command::Reboot => {
            update::reboot(socket).await?;
            debug!("The server accepted the reboot");
        }

        Command::Completions(args) => {
            let mut command = Cli::command();
            let mut buffer = Vec::new();
            clap_complete::generate(args.shell, &mut command, "apiclient", &mut buffer);
            write_out(out, &buffer)?;
        }
    }
    Ok(())
}

/// When an update action failed with more than one line on stderr, shows all of it on stderr;
/// the error line itself only carries the last line.
fn show_updater_stderr<T>(result: Result<T>) -> Result<T> {
    if let Err(error::Error::UpdateFailed { stderr, .. }) = &result {
        if stderr.lines().filter(|l| !l.trim().is_empty()).count() > 1 {
            eprintln!("{}", stderr.trim_end());
        }
    }
    result
}

fn print_json<W: Write>(out: &mut W, value: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|source| error::Error::SerializeBody { source })?;
    text.push('\n');
    write_out(out, text.as_bytes())
}

fn print_text<W: Write>(out: &mut W, text: &str) -> Result<()> {
    let mut text = text.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    write_out(out, text.as_bytes())
}

fn write_out<W: Write>(out: &mut W, bytes: &[u8]) -> Result<()> {
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|source| error::Error::WriteOutput { source })
}

#[cfg(test)]
mod test {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> std::result::Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("apiclient").chain(args.iter().copied()))
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options() {
        let cli = parse(&["get"]).unwrap();
        // The default unless APICLIENT_SOCKET is set in the environment of the test run.
        if std::env::var_os("APICLIENT_SOCKET").is_none() {
            assert_eq!(cli.socket_path, PathBuf::from(API_SOCKET));
        }
        assert_eq!(cli.level(), LevelFilter::INFO);

        let cli = parse(&["-s", "/tmp/x.sock", "--log-level", "trace", "get"]).unwrap();
        assert_eq!(cli.socket_path, PathBuf::from("/tmp/x.sock"));
        assert_eq!(cli.level(), LevelFilter::TRACE);

        // Global options also work after the subcommand.
        let cli = parse(&["get", "--socket-path", "/tmp/y.sock", "-v"]).unwrap();
        assert_eq!(cli.socket_path, PathBuf::from("/tmp/y.sock"));
        assert_eq!(cli.level(), LevelFilter::DEBUG);

        assert!(parse(&["--log-level", "loud", "get"]).is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn get_arguments() {
        let cli = parse(&["get", "settings.motd", "os"]).unwrap();
        let Command::Get(args) = &cli.command else {
            panic!("not get")
        };
        assert_eq!(args.items, ["settings.motd", "os"]);
        assert!(cli.check().is_ok());

        let cli = parse(&["get", "settings", "/tx"]).unwrap();
        assert!(cli.check().unwrap_err().contains("can't be combined"));
    }

    #[test]
    fn set_arguments() {
        let cli = parse(&["set", "motd=hi", "settings.ntp.time-servers=[]"]).unwrap();
        let Command::Set(args) = cli.command else {
            panic!("not set")
        };
        assert_eq!(args.pairs.len(), 2);
        assert_eq!(args.pairs[0].key, "settings.motd");
        assert!(args.json.is_none());

        let cli = parse(&["set", "-j", r#"{"settings":{"motd":"hi"}}"#]).unwrap();
        let Command::Set(args) = cli.command else {
            panic!("not set")
        };
        assert!(args.pairs.is_empty());
        assert_eq!(
            Value::Object(args.json.unwrap()),
            serde_json::json!({"motd": "hi"})
        );
    }

    #[test]
    fn try_arguments() {
        let cli = parse(&["set", "--try", "120s", "motd=hi"]).unwrap();
        let Command::Set(args) = cli.command else {
            panic!("not set")
        };
        assert_eq!(args.try_for, Some(120));
        assert_eq!(
            finish(args.dry_run, args.try_for),
            tx::Finish::Try {
                timeout_seconds: 120
            }
        );
        let cli = parse(&["apply", "--try", "2m", "a.toml"]).unwrap();
        let Command::Apply(args) = cli.command else {
            panic!("not apply")
        };
        assert_eq!(args.try_for, Some(120));
        let cli = parse(&["set", "motd=hi"]).unwrap();
        let Command::Set(args) = cli.command else {
            panic!("not set")
        };
        assert_eq!(
            finish(args.dry_run, args.try_for),
            tx::Finish::CommitAndApply
        );

        for bad in ["0s", "abc", "25h", "-1s", "1.5m", "99999999999999999999"] {
            let arg = format!("--try={bad}");
            let err = parse(&["set", &arg, "motd=hi"]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ValueValidation, "{bad}");
            assert!(err.to_string().contains("timeout"), "{bad}: {err}");
        }
        let err = parse(&["set", "--try", "1m", "--dry-run", "motd=hi"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        let err = parse(&["apply", "--try"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidValue);

        let cli = parse(&["confirm"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Confirm(ConfirmArgs { json: false })
        ));
        let cli = parse(&["provisional", "--json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Provisional(ProvisionalArgs { json: true })
        ));
        assert!(parse(&["confirm", "extra"]).is_err());
    }

    #[test]
    fn bad_set_arguments_are_usage_errors() {
        let err = parse(&["set", "motd"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        assert!(err.to_string().contains("expected KEY=VALUE"), "{err}");

        let err = parse(&["set"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);

        let err = parse(&["set", "motd=x", "--json", "{}"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);

        let err = parse(&["set", "--json", "{nope"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
    }

    #[test]
    fn raw_arguments() {
        let cli = parse(&["raw", "-u", "/tx/list"]).unwrap();
        let Command::Raw(args) = cli.command else {
            panic!("not raw")
        };
        assert_eq!(args.uri, "/tx/list");
        assert_eq!(args.method, "GET");
        assert_eq!(args.data, None);

        for flag in ["-m", "-X", "--method"] {
            let cli = parse(&["raw", "--uri", "/settings", flag, "PATCH", "-d", "{}"]).unwrap();
            let Command::Raw(args) = cli.command else {
                panic!("not raw")
            };
            assert_eq!(args.method, "PATCH");
            assert_eq!(args.data.as_deref(), Some("{}"));
        }

        assert_eq!(
            parse(&["raw"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn other_subcommands() {
        let Command::Apply(args) = parse(&["apply", "a.toml", "-"]).unwrap().command else {
            panic!("not apply")
        };
        assert_eq!(args.inputs, ["a.toml", "-"]);

        let Command::History(args) = parse(&["history", "--json"]).unwrap().command else {
            panic!("not history")
        };
        assert!(args.json);

        let Command::Undo(args) = parse(&["undo"]).unwrap().command else {
            panic!("not undo")
        };
        assert_eq!(args.id, None);
        let Command::Undo(args) = parse(&["undo", "12"]).unwrap().command else {
            panic!("not undo")
        };
        assert_eq!(args.id.as_deref(), Some("12"));

        let Command::Completions(args) = parse(&["completions", "zsh"]).unwrap().command else {
            panic!("not completions")
        };
        assert_eq!(args.shell, clap_complete::Shell::Zsh);
        assert!(parse(&["completions", "cmd.exe"]).is_err());
    }

    #[test]
    fn update_arguments() {
        let Command::Update(args) = parse(&["update", "apply", "-c", "-r", "--timeout", "90s"])
            .unwrap()
            .command
        else {
            panic!("not update")
        };
        let UpdateCommand::Apply(apply) = args.command else {
            panic!("not apply")
        };
        assert!(apply.check && apply.reboot);
        assert_eq!(apply.timeout, Duration::from_secs(90));

        let Command::Update(args) = parse(&["update", "apply"]).unwrap().command else {
            panic!("not update")
        };
        let UpdateCommand::Apply(apply) = args.command else {
            panic!("not apply")
        };
        assert!(!apply.check && !apply.reboot);
        assert_eq!(apply.timeout, update::PREPARE_TIMEOUT);

        let Command::Update(args) = parse(&["update", "check"]).unwrap().command else {
            panic!("not update")
        };
        assert!(matches!(args.command, UpdateCommand::Check(_)));
        assert!(matches!(
            parse(&["update", "cancel"]).unwrap().command,
            Command::Update(UpdateArgs {
                command: UpdateCommand::Cancel
            })
        ));
        assert!(matches!(
            parse(&["reboot"]).unwrap().command,
            Command::Reboot
        ));
        let Command::Update(args) = parse(&["update", "pause", "--for", "6h"]).unwrap().command
        else {
            panic!("not update")
        };
        let UpdateCommand::Pause(pause) = args.command else {
            panic!("not pause")
        };
        assert_eq!(pause.duration, Some(Duration::from_secs(6 * 3600)));
        let Command::Update(args) = parse(&["update", "pause"]).unwrap().command else {
            panic!("not update")
        };
        assert!(matches!(
            args.command,
            UpdateCommand::Pause(UpdatePauseArgs { duration: None })
        ));

        let err = parse(&["update", "apply", "--timeout", "soon"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        assert!(parse(&["update"]).is_err());
    }

    #[tokio::test]
    async fn completions_are_written() {
        let cli = parse(&["completions", "bash"]).unwrap();
        let mut out = Vec::new();
        run(cli, &mut out).await.unwrap();
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains("apiclient"));
        assert!(script.contains("history"));
    }
}
