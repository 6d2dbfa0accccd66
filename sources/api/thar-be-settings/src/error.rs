//! The one error type of the renderer. Each message names the file, template, command or
//! request involved, so a line in the journal says what to fix.

use snafu::Snafu;
use std::path::PathBuf;

#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display("cannot read the changed keys from stdin: {source}"))]
    ReadStdin { source: std::io::Error },

    #[snafu(display(
        "stdin must hold a JSON array of changed keys such as [\"settings.motd\"] ({source}); \
         use --all to render every configuration file"
    ))]
    ParseKeys { source: serde_json::Error },

    #[snafu(display("GET {uri} on {}: {source}", socket.display()))]
    Request {
        uri: String,
        socket: PathBuf,
        #[snafu(source(from(apiclient::Error, Box::new)))]
        source: Box<apiclient::Error>,
    },

    #[snafu(display("GET {uri} answered {status}: {message}"))]
    Status {
        uri: String,
        status: u16,
        message: String,
    },

    #[snafu(display(
        "GET {uri} answered something unexpected ({source}); is the API server the same version?"
    ))]
    Response {
        uri: String,
        source: serde_json::Error,
    },

    #[snafu(display(
        "transaction '{tx}' has no pending settings; set some first (PATCH /settings?tx={tx})"
    ))]
    NothingPending { tx: String },

    #[snafu(display(
        "service '{service}' is named in affected-services metadata but is not defined under \
         services; fix the defaults"
    ))]
    UnknownService { service: String },

    #[snafu(display(
        "service '{service}' lists configuration file '{file}', which is not defined under \
         configuration-files; fix the defaults"
    ))]
    UnknownFile { service: String, file: String },

    #[snafu(display(
        "configuration file '{file}' has mode '{mode}', which is not octal like 0644"
    ))]
    BadMode { file: String, mode: String },

    #[snafu(display("template {} of configuration file '{file}' is missing or unreadable: {source}", path.display()))]
    ReadTemplate {
        file: String,
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("{source}; {} was left as it was", path.display()))]
    Render {
        path: PathBuf,
        source: schnauzer::Error,
    },

    #[snafu(display("cannot read the current {}: {source}", path.display()))]
    ReadCurrent {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("cannot write {}: {step}: {source}", path.display()))]
    Write {
        path: PathBuf,
        step: &'static str,
        source: std::io::Error,
    },

    #[snafu(display(
        "cannot take the render lock {}: {source}; check that its directory exists and is \
         writable, or pass --lock-file",
        path.display()
    ))]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("restart command '{command}' of service '{service}' is empty"))]
    EmptyCommand { service: String, command: String },

    #[snafu(display("cannot start restart command '{command}' of service '{service}': {source}"))]
    CommandStart {
        service: String,
        command: String,
        source: std::io::Error,
    },

    #[snafu(display(
        "restart command '{command}' of service '{service}' did not finish within {seconds} s and was killed"
    ))]
    CommandTimeout {
        service: String,
        command: String,
        seconds: u64,
    },

    #[snafu(display(
        "restart command '{command}' of service '{service}' failed ({status}): {output}"
    ))]
    CommandFailed {
        service: String,
        command: String,
        status: std::process::ExitStatus,
        output: String,
    },

    #[snafu(display("cannot write the dry-run result: {source}"))]
    Output { source: std::io::Error },

    #[snafu(display("{} step(s) failed: {}", failures.len(), failures.join("; ")))]
    Failed { failures: Vec<String> },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
