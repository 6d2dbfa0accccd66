//! The one error type of the crate.
//!
//! Every variant carries what the user needs to act on the failure: the socket path, the
//! request, the input file or the offending argument.  `Display` is always a single line, so the
//! binary can print it as `apiclient: <error>` and nothing else.

use snafu::Snafu;
use std::path::PathBuf;

/// Everything that can go wrong while talking to the API server or preparing a request for it.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    // ---- Talking HTTP ---------------------------------------------------------------------
    #[snafu(display(
        "Failed to connect to the API socket {}: {source} (is the API server running? pass \
         --socket-path to use another socket)",
        socket_path.display()
    ))]
    Connect {
        socket_path: PathBuf,
        source: std::io::Error,
    },

    // ---- exec -------------------------------------------------------------------------
    #[snafu(display(
        "The API server at {} refused the exec WebSocket: {message} (is it a Ballast API \
         server with GET /exec?)",
        socket_path.display()
    ))]
    ExecHandshake {
        socket_path: PathBuf,
        message: String,
    },

    /// Not a failure of apiclient: `exec`'s command exited with this status, which apiclient
    /// exits with too (without a message).
    #[snafu(display("The command exited with status {code}"))]
    CommandExit { code: u8 },

    #[snafu(display("Cannot run the command in host container '{target}': {message}"))]
    ExecFailed { target: String, message: String },

    #[snafu(display("The exec session in host container '{target}' broke: {message}"))]
    ExecBroken { target: String, message: String },

    #[snafu(display(
        "Cannot put the terminal in raw mode: {source}; pass -T to run without a terminal"
    ))]
    ExecTerminal { source: nix::Error },

    #[snafu(display("Failed to connect to {target}: {source}"))]
    TcpConnect {
        target: String,
        source: std::io::Error,
    },

    #[snafu(display("Timed out after {seconds} seconds talking to {target}"))]
    Timeout { target: String, seconds: u64 },

    #[snafu(display("HTTP handshake with {target} failed: {source}"))]
    Handshake {
        target: String,
        source: hyper::Error,
    },

    #[snafu(display("Invalid HTTP method '{method}'"))]
    InvalidMethod { method: String },

    #[snafu(display("Invalid request URI '{uri}': {reason}"))]
    InvalidUri { uri: String, reason: String },

    #[snafu(display("Failed to build request {method} {uri}: {source}"))]
    BuildRequest {
        method: String,
        uri: String,
        source: hyper::http::Error,
    },

    #[snafu(display("{method} {uri} to {target} failed: {source}"))]
    SendRequest {
        method: String,
        uri: String,
        target: String,
        source: hyper::Error,
    },

    #[snafu(display("Failed to read the response to {method} {uri} from {target}: {source}"))]
    ReadBody {
        method: String,
        uri: String,
        target: String,
        source: hyper::Error,
    },

    #[snafu(display("The response to {method} {uri} is larger than {limit} bytes"))]
    BodyTooLarge {
        method: String,
        uri: String,
        limit: usize,
    },

    /// The server answered with a status outside 2xx.  `message` is the server's own explanation.
    #[snafu(display("{method} {uri} failed with status {status}: {message}"))]
    ResponseStatus {
        method: String,
        uri: String,
        status: StatusText,
        message: String,
    },

    /// Like `ResponseStatus`, but for `raw`, which shows the body itself on stderr.
    #[snafu(display("{method} {uri} failed with status {status}"))]
    RawStatus {
        method: String,
        uri: String,
        status: StatusText,
    },

    #[snafu(display("The response to {method} {uri} is not valid JSON: {source}"))]
    ResponseJson {
        method: String,
        uri: String,
        source: serde_json::Error,
    },

    /// The server answered 2xx, but not with the document this apiclient reads there.
    #[snafu(display(
        "Expected {what} from the API server, but its answer has an unexpected shape \
         ({source}); is the API server older than this apiclient? It answered: {body}"
    ))]
    ResponseShape {
        /// What the answer should have been, with its article: "the status document".
        what: &'static str,
        /// The start of the answer, its first 200 characters.
        body: String,
        source: serde_json::Error,
    },

    /// `commit_and_apply` answered 5xx, yet nothing of the transaction was left pending: the
    /// settings are live and only applying them failed.
    #[snafu(display(
        "{source} (the settings were committed: nothing of transaction {transaction} was left \
         pending; only applying them failed, see the API server's log, and re-apply with \
         `apiclient raw -m POST -u /tx/apply`)"
    ))]
    CommittedNotApplied {
        transaction: String,
        source: Box<Error>,
    },

    #[snafu(display("Failed to serialize the request body: {source}"))]
    SerializeBody { source: serde_json::Error },

    // ---- get --------------------------------------------------------------------------------
    #[snafu(display(
        "A URI argument ('{uri}') can't be combined with other arguments; give either one /URI \
         or any number of prefixes"
    ))]
    GetMixedArgs { uri: String },

    // ---- set --------------------------------------------------------------------------------
    #[snafu(display(
        "Invalid setting '{input}': expected KEY=VALUE, for example motd=hello or \
         settings.motd=hello"
    ))]
    KeyPairNoEquals { input: String },

    #[snafu(display("Invalid setting '{input}': the key before '=' is empty"))]
    KeyPairEmptyKey { input: String },

    #[snafu(display("Invalid setting '{input}': {source}"))]
    KeyPairKey {
        input: String,
        source: settings_key::KeyError,
    },

    #[snafu(display("Nothing to set: give KEY=VALUE arguments or --json '{{...}}'"))]
    NothingToSet,

    #[snafu(display("The --json argument is not valid JSON: {source}"))]
    SetJsonParse { source: serde_json::Error },

    #[snafu(display("The --json argument must be a JSON object like {{\"motd\": \"hi\"}}"))]
    SetJsonNotObject,

    #[snafu(display(
        "The --json object has a top-level \"settings\" key next to other keys ({others}); give \
         either {{\"settings\": {{...}}}} or the settings object itself"
    ))]
    SetJsonMixed { others: String },

    #[snafu(display("The \"settings\" value in --json must be an object"))]
    SetJsonSettingsNotObject,

    // ---- apply ------------------------------------------------------------------------------
    #[snafu(display("Stdin ('-') can only be given once as an input"))]
    StdinTwice,

    #[snafu(display("Failed to read settings from stdin: {source}"))]
    ReadStdin { source: std::io::Error },

    #[snafu(display("Failed to read settings file {}: {source}", path.display()))]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("Input '{input}' is not a usable URI: {reason}"))]
    InputUri { input: String, reason: String },

    #[snafu(display(
        "Input '{input}': {scheme}:// is not supported{why}; give a local path, a file:// or \
         http:// URI, or '-' for stdin (e.g. download the file first)"
    ))]
    UnsupportedScheme {
        input: String,
        scheme: String,
        why: String,
    },

    #[snafu(display("Failed to fetch '{input}': {source}"))]
    Fetch {
        input: String,
        #[snafu(source(from(Error, Box::new)))]
        source: Box<Error>,
    },

    #[snafu(display("Fetching '{input}' failed with status {status}"))]
    FetchStatus { input: String, status: StatusText },

    #[snafu(display(
        "Input '{input}' is neither valid JSON ({json_error}) nor valid TOML ({toml_error})"
    ))]
    ParseInput {
        input: String,
        json_error: String,
        toml_error: String,
    },

    #[snafu(display("Input '{input}' contains a value JSON can't carry: {reason}"))]
    TomlValue { input: String, reason: String },

    #[snafu(display("Input '{input}' must be a TOML table or JSON object at the top level"))]
    InputNotTable { input: String },

    #[snafu(display(
        "Input '{input}' has no top-level 'settings' table; put the settings under [settings] \
         (TOML) or {{\"settings\": {{...}}}} (JSON)"
    ))]
    MissingSettings { input: String },

    #[snafu(display("Input '{input}': 'settings' must be a table/object, not a single value"))]
    SettingsNotTable { input: String },

    #[snafu(display("Failed to apply settings from '{input}': {source}"))]
    ApplyPatch {
        input: String,
        #[snafu(source(from(Error, Box::new)))]
        source: Box<Error>,
    },

    // ---- output -----------------------------------------------------------------------------
    #[snafu(display("Failed to write the output: {source}"))]
    WriteOutput { source: std::io::Error },

    // ---- support bundle ---------------------------------------------------------------------
    #[snafu(display(
        "{} already exists; give another -o FILE, or --force to replace it",
        path.display()
    ))]
    BundleExists { path: PathBuf },

    #[snafu(display("Failed to write the support bundle to {}: {source}", path.display()))]
    WriteBundle {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display(
        "The server's support bundle is not {expected} (it began with {start:02x?}); is the \
         API server older than this apiclient?"
    ))]
    BundleNotGzip {
        start: Vec<u8>,
        expected: &'static str,
    },

    // ---- update -----------------------------------------------------------------------------
    #[snafu(display(
        "A pause of {requested} is longer than {max_days} days; run `apiclient update pause` \
         without --for to pause until `apiclient update resume`"
    ))]
    PauseTooLong { requested: String, max_days: u64 },

    /// The action ran and failed; `stderr` is the updater's whole stderr (the display shows its
    /// last line).
    #[snafu(display("The update action '{action}' failed ({exit}): {}", last_line(stderr)))]
    UpdateFailed {
        action: String,
        exit: String,
        stderr: String,
    },

    #[snafu(display(
        "Gave up after {seconds} s waiting for the update action '{action}', which is still \
         running on the server; follow it with `apiclient get /updates/status`, or allow more \
         time with --timeout"
    ))]
    UpdateTimeout { action: String, seconds: u64 },

    #[snafu(display(
        "While waiting for the update action '{action}', the server's most recent action became \
         '{other}' (started by someone else?); see `apiclient get /updates/status`"
    ))]
    UpdateOvertaken { action: String, other: String },
}

/// How much of an answer a [`Error::ResponseShape`] shows, in characters.
const EXCERPT_CHARS: usize = 200;

/// The start of a server's answer, for an error message: its first [`EXCERPT_CHARS`]
/// characters (invalid UTF-8 shown as U+FFFD).
pub(crate) fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .take(EXCERPT_CHARS)
        .collect()
}

/// The last non-empty line of an updater's stderr, for a one-line error.
fn last_line(stderr: &str) -> &str {
    stderr
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .unwrap_or("(the updater printed nothing on stderr)")
}

/// An HTTP status as `"400 Bad Request"`, kept separately so errors can be matched on the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusText(pub u16);

impl std::fmt::Display for StatusText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reason = hyper::StatusCode::from_u16(self.0)
            .ok()
            .and_then(|code| code.canonical_reason());
        match reason {
            Some(reason) => write!(f, "{} {}", self.0, reason),
            None => write!(f, "{}", self.0),
        }
    }
}

impl Error {
    /// True when the failure happened before anything reached the API server, so nothing can
    /// have been changed on the server side.
    pub fn is_connect_failure(&self) -> bool {
        match self {
            Error::Connect { .. } => true,
            Error::ApplyPatch { source, .. } => source.is_connect_failure(),
            _ => false,
        }
    }

    /// The HTTP status the server answered with, when the failure was a non-2xx answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::ResponseStatus { status, .. }
            | Error::RawStatus { status, .. }
            | Error::FetchStatus { status, .. } => Some(status.0),
            Error::Fetch { source, .. }
            | Error::ApplyPatch { source, .. }
            | Error::CommittedNotApplied { source, .. } => source.status(),
            _ => None,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
