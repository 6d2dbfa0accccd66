//! # Background
//!
//! Every setting of a Ballast host lives in the API server, which speaks HTTP/1.1 on a Unix
//! socket (`/run/api.sock` by default; access is limited by the socket's permissions).  Changes
//! go into a named pending transaction first and become live with `POST /tx/commit_and_apply`,
//! which also re-renders the affected configuration files and restarts the affected services.
//!
//! This crate is the client side of that socket.  It is two things:
//!
//! * a small library that other daemons use to talk to the API server ([`raw_request`],
//!   [`request`], and one module per higher-level operation), and
//! * the operator's command-line tool `apiclient`, whose `main.rs` only parses arguments, sets
//!   up logging and calls [`cli::run`].
//!
//! The command line mirrors Bottlerocket's `apiclient` so that habits and scripts carry over.
//!
//! # Usage
//!
//! ## Library
//!
//! ```no_run
//! # async fn example() -> apiclient::Result<()> {
//! // Any request; the status is returned as is, without judging it.
//! let (status, body) = apiclient::raw_request(constants::API_SOCKET, "/os", "GET", None).await?;
//!
//! // The same, but a non-2xx answer becomes an error carrying the server's message.
//! let body = apiclient::request(constants::API_SOCKET, "/settings?prefix=motd", "GET", None).await?;
//!
//! // Change settings in a private transaction, then commit and apply it.
//! let pairs = vec!["motd=hello".parse::<apiclient::set::KeyPair>()?];
//! apiclient::set::set(constants::API_SOCKET, &apiclient::set::SettingsInput::KeyPairs(pairs)).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Module by module: [`get`] reads and merges settings, [`set`] changes individual keys or a
//! JSON object, [`apply`] reads whole TOML/JSON settings documents, [`history`] lists and undoes
//! committed changes, [`logs`] reads (and follows) the journal, [`audit`] shows the API's audit
//! trail, [`status`] shows the node's state (failed units with their last entries, units, A/B
//! boot state, versions, update state), [`report`] says where the boot's time went,
//! [`support_bundle`] saves the node's support bundle, [`exec`] runs a command in a host
//! container,
//! [`update`] drives the update API, and [`tx`] holds the
//! transaction helpers they share.
//!
//! ## Command line
//!
//! ```text
//! apiclient [-s SOCKET] [--log-level LEVEL | -v] <command>
//!   get [PREFIX ... | /URI]          settings under the prefixes, merged; no argument: settings + os
//!   set KEY=VALUE ... | -j JSON      change settings, then commit and apply them
//!   apply [INPUT ...]                apply TOML/JSON documents (paths, file:// or http:// URIs, -)
//!   raw -u URI [-m METHOD] [-d DATA] any request; prints the body
//!   history [--json]                 committed changes, in the server's order
//!   logs [-u UNIT]... [-p PRIO] [--since T] [--until T] [-b BOOT] [-g PATTERN] [-n LINES]
//!        [-f] [--json]               the node's journal, one line per entry (-f: keep following)
//!   audit [--since T] [-n LINES] [--json]
//!                                    who changed what through the API, one line per request
//!   status [--json]                  failed units with their last entries, then units active,
//!                                    A/B boot state, version and update state
//!   report boot [--target UNIT] [--json]
//!                                    boot phases in seconds, then the chains of units the API
//!                                    and configured.target (or UNIT) waited for
//!   support-bundle -o FILE|- [--force]
//!                                    the node's support bundle (secrets replaced) to FILE
//!   undo [ID]                        revert the last (or the given) committed change
//!   update check [--timeout D]       look for updates; print the update status (JSON)
//!   update apply [-c] [-r] [--timeout D]
//!                                    (-c: check first) prepare the chosen update, printing its
//!                                    progress on stderr, then activate it (-r: and reboot)
//!   update cancel                    deactivate an activated update
//!   reboot                           reboot the node (refused while an update action runs)
//!   exec [-t|-T] TARGET -- CMD ARG...
//!                                    run CMD in the running host container TARGET with this
//!                                    stdin/stdout (-t: a terminal, the default when stdin is
//!                                    one; -T: never); exits with CMD's exit code
//!   completions SHELL                shell completion script on stdout
//! ```
//!
//! The socket path can also come from `APICLIENT_SOCKET`.  Machine-readable output (JSON) goes
//! to stdout; a failure prints one line `apiclient: <reason>` on stderr and exits with 1 (argument
//! errors exit with 2).
//!
//! `set` and `apply` each stage their changes in a transaction of their own
//! (`apiclient-set-<16 random letters/digits>`, `apiclient-apply-…`) and then commit and apply
//! exactly that transaction.  If anything fails once a PATCH has reached the server, they send
//! `DELETE /tx?tx=…` so no half-done changes stay pending.  `set` sends every key with the
//! `settings.` prefix, whether or not the user typed it.
//!
//! # Current limitations
//!
//! * No TLS: `apply` reads local files, stdin and plain `http://` URLs, but refuses `https://`
//!   (and Bottlerocket's `s3://`, `ssm://`, `base64:` and similar sources).
//! * One connection per request; there is no keep-alive or pooling, and no request timeout
//!   (`commit_and_apply` can legitimately take a while).
//! * `set KEY=VALUE` leaves the typing of VALUE to the server (Ballast's picks the type the
//!   model wants for the key); use `set --json` to force a type.  A server without
//!   `PATCH /settings/keypair` (older Bottlerocket) gets `PATCH /settings` with the values
//!   typed by [`set::typed_value`]: bool, then integer, then float, else string, so `motd=42`
//!   is refused there and lists need `--json`.
//! * After a failed `commit_and_apply`, what the cleanup `DELETE /tx` removed decides what is
//!   reported: nothing left pending after a 5xx means the commit happened
//!   ([`Error::CommittedNotApplied`]).  When the DELETE answer is not a list of keys, that is
//!   unknown, and the original error stands alone.
//! * `http://` inputs get one GET: no redirects, no proxy, 60 s and 16 MiB at most.
//! * `exec` prints the command's stdout and stderr both on stdout (the protocol merges them).
//!   Ctrl-C without `-t` ends apiclient, and the server then kills the remote process.
//! * Bottlerocket's `report cis`, `report fips` and `ephemeral-storage` commands are not
//!   implemented yet,
//!   nor are `get --exclude` and `get --canonicalize`.  Unlike Bottlerocket, `raw` must be
//!   named (`apiclient -u /x` without `raw` is refused).
//! * The update commands poll `GET /updates/status` four times a second; when `update apply`
//!   gives up after `--timeout` (10 minutes by default), the prepare goes on on the server.
//!   A refresh, activation or deactivation is given two minutes.
// Unsafe only for the terminal's size (an ioctl, in `exec`), each block with its SAFETY comment.
#![deny(unsafe_code)]

pub mod apply;
pub mod audit;
pub mod cli;
pub mod error;
pub mod exec;
pub mod get;
pub mod history;
mod http;
pub mod logs;
mod output;
pub mod preview;
pub mod provisional;
pub mod report;
pub mod set;
pub mod status;
pub mod support_bundle;
pub mod tx;
pub mod update;

pub use error::{Error, Result};

use snafu::ResultExt;
use std::path::Path;
use tokio::net::UnixStream;

/// Longest server message we put into an error line; the rest is cut off.
const MAX_MESSAGE_CHARS: usize = 500;

/// Sends one request to the API server at `socket_path` and returns the status code and body.
///
/// `uri` is the path and query, e.g. `/settings?prefix=motd`.  `method` is any HTTP method name.
/// When `body` is given it is sent with `Content-Type: application/json`.  The status is not
/// judged here; see [`request`] for that.
pub async fn raw_request(
    socket_path: impl AsRef<Path>,
    uri: &str,
    method: &str,
    body: Option<String>,
) -> Result<(u16, String)> {
    let socket_path = socket_path.as_ref();
    let method = http::parse_method(method)?;
    let parsed_uri = http::parse_origin_uri(uri)?;

    let stream = UnixStream::connect(socket_path)
        .await
        .context(error::ConnectSnafu { socket_path })?;
    let target = socket_path.display().to_string();
    let answer = http::exchange(
        stream,
        &target,
        "localhost",
        &method,
        parsed_uri,
        body,
        None,
    )
    .await?;
    Ok((
        answer.status,
        String::from_utf8_lossy(&answer.body).into_owned(),
    ))
}

/// Most bytes of an error answer read by [`stream_request`].
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Sends a GET to the API server and hands each piece of a 2xx answer's body to `on_data` as
/// it arrives (for answers that go on, such as a followed journal), until the body ends or
/// `on_data` fails. Any status outside 2xx becomes [`Error::ResponseStatus`], as in
/// [`request`].
pub async fn stream_request(
    socket_path: impl AsRef<Path>,
    uri: &str,
    mut on_data: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let socket_path = socket_path.as_ref();
    let method = hyper::Method::GET;
    let parsed_uri = http::parse_origin_uri(uri)?;
    let stream = UnixStream::connect(socket_path)
        .await
        .context(error::ConnectSnafu { socket_path })?;
    let target = socket_path.display().to_string();
    let (status, mut body) =
        http::send(stream, &target, "localhost", &method, parsed_uri, None).await?;
    if (200..300).contains(&status) {
        while let Some(data) = http::next_chunk(&mut body, "GET", uri, &target).await? {
            on_data(&data)?;
        }
        return Ok(());
    }
    let mut text = Vec::new();
    while let Some(data) = http::next_chunk(&mut body, "GET", uri, &target).await? {
        text.extend_from_slice(&data);
        if text.len() > MAX_ERROR_BODY {
            break;
        }
    }
    check_status("GET", uri, status, &String::from_utf8_lossy(&text))
}

/// Like [`raw_request`], but any status outside 2xx becomes [`Error::ResponseStatus`], carrying
/// the method, URI, status and the server's explanation.  Returns the body on success.
pub async fn request(
    socket_path: impl AsRef<Path>,
    uri: &str,
    method: &str,
    body: Option<String>,
) -> Result<String> {
    let (status, response) = raw_request(socket_path, uri, method, body).await?;
    check_status(method, uri, status, &response)?;
    Ok(response)
}

/// Turns a non-2xx status into an error that carries the server's message.
pub(crate) fn check_status(method: &str, uri: &str, status: u16, body: &str) -> Result<()> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    error::ResponseStatusSnafu {
        method: method.to_ascii_uppercase(),
        uri,
        status: error::StatusText(status),
        message: server_message(body),
    }
    .fail()
}

/// Reads a 2xx answer as the document `T`. An answer of another shape becomes
/// [`Error::ResponseShape`], which names `what` was expected ("the status document") and shows
/// the start of the answer.
pub(crate) fn parse_document<T: serde::de::DeserializeOwned>(
    what: &'static str,
    body: &[u8],
) -> Result<T> {
    serde_json::from_slice(body).with_context(|_| error::ResponseShapeSnafu {
        what,
        body: error::excerpt(body),
    })
}

/// Like [`parse_document`], for an answer already read as JSON.
pub(crate) fn parse_value<T: serde::de::DeserializeOwned>(
    what: &'static str,
    value: &serde_json::Value,
) -> Result<T> {
    T::deserialize(value).with_context(|_| error::ResponseShapeSnafu {
        what,
        body: error::excerpt(value.to_string().as_bytes()),
    })
}

/// Extracts a one-line explanation from an error body.
///
/// The API server answers errors with `{"error": "...", "key": "settings.x"}`; the error text
/// is used, with the key added when the text doesn't name it already.  Anything else is shown
/// as it came, folded onto one line.
pub fn server_message(body: &str) -> String {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(body) {
        if let Some(serde_json::Value::String(text)) = map.get("error") {
            let mut message = text.clone();
            if let Some(serde_json::Value::String(key)) = map.get("key") {
                if !key.is_empty() && !message.contains(key.as_str()) {
                    message.push_str(&format!(" (key {key})"));
                }
            }
            return one_line(&message);
        }
    }
    let folded = one_line(body);
    if folded.is_empty() {
        "(the server gave no explanation)".to_string()
    } else {
        folded
    }
}

/// Folds text onto one line and cuts it to a reasonable length.
fn one_line(text: &str) -> String {
    let folded = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if folded.chars().count() > MAX_MESSAGE_CHARS {
        let cut: String = folded.chars().take(MAX_MESSAGE_CHARS).collect();
        format!("{cut}...")
    } else {
        folded
    }
}

/// Percent-encodes `value` for use inside a query string: everything except ASCII letters,
/// digits and `-._~` is escaped, so quotes, spaces, `&`, `=` and `+` arrive intact.
pub fn encode_query_value(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                encoded.push(byte as char)
            }
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    encoded
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn server_message_prefers_the_error_field() {
        assert_eq!(
            server_message(r#"{"error":"expected a boolean","key":"settings.x"}"#),
            "expected a boolean (key settings.x)"
        );
        assert_eq!(
            server_message(r#"{"error":"settings.x: expected a boolean","key":"settings.x"}"#),
            "settings.x: expected a boolean"
        );
        assert_eq!(server_message(r#"{"error":"nope"}"#), "nope");
    }

    #[test]
    fn server_message_falls_back_to_the_body() {
        assert_eq!(
            server_message("plain text\n  second line\n"),
            "plain text second line"
        );
        assert_eq!(server_message(r#"{"other":1}"#), r#"{"other":1}"#);
        assert_eq!(server_message(""), "(the server gave no explanation)");
        let long = "x".repeat(2 * MAX_MESSAGE_CHARS);
        assert_eq!(server_message(&long).len(), MAX_MESSAGE_CHARS + 3);
    }

    #[test]
    fn an_answer_of_another_shape_names_what_was_expected() {
        let body = format!("{{\"id\": 1, \"pad\": \"{}\"}}", "y".repeat(300));
        let err = parse_document::<Vec<u32>>("the audit trail", body.as_bytes()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("Expected the audit trail from the API server"),
            "{text}"
        );
        assert!(text.contains("older than this apiclient"), "{text}");
        assert!(text.ends_with(&body[..200]), "{text}");

        let value = serde_json::json!({"state": 7});
        let err = parse_value::<Vec<u32>>("the update status document", &value).unwrap_err();
        assert!(matches!(
            err,
            Error::ResponseShape { what: "the update status document", ref body, .. }
                if body == r#"{"state":7}"#
        ));
        assert_eq!(
            parse_value::<Vec<u32>>("x", &serde_json::json!([1, 2])).unwrap(),
            [1, 2]
        );
    }

    #[test]
    fn check_status_accepts_only_2xx() {
        assert!(check_status("GET", "/", 200, "").is_ok());
        assert!(check_status("GET", "/", 204, "").is_ok());
        let err = check_status("patch", "/settings", 400, r#"{"error":"bad"}"#).unwrap_err();
        assert_eq!(err.status(), Some(400));
        assert_eq!(
            err.to_string(),
            "PATCH /settings failed with status 400 Bad Request: bad"
        );
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(encode_query_value("settings.motd"), "settings.motd");
        assert_eq!(
            encode_query_value(r#"settings.kubernetes.node-labels."my.label""#),
            "settings.kubernetes.node-labels.%22my.label%22"
        );
        assert_eq!(
            encode_query_value("a b&c=d+e/é"),
            "a%20b%26c%3Dd%2Be%2F%C3%A9"
        );
    }

    #[tokio::test]
    async fn missing_socket_names_the_path_and_hints() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("nothing-here.sock");
        let err = raw_request(&socket, "/", "GET", None).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&socket.display().to_string()), "{text}");
        assert!(text.contains("is the API server running?"), "{text}");
        assert!(text.contains("--socket-path"), "{text}");
    }

    #[tokio::test]
    async fn bad_uri_is_refused_before_connecting() {
        let err = raw_request("/nonexistent.sock", "settings", "GET", None)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidUri { .. }), "{err}");
        let err = raw_request("/nonexistent.sock", "/", "NOT A METHOD", None)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidMethod { .. }), "{err}");
    }
}
