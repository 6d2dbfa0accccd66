//! # Background
//!
//! FleetLock is the reboot-coordination protocol of Fedora CoreOS's Zincati: before rebooting
//! into an update a node asks a lock server for a slot (`POST /v1/pre-reboot`), and once its new
//! boot is healthy it gives the slot back (`POST /v1/steady-state`). The server grants at most N
//! slots per group, so a fleet never reboots more than N nodes of a group at once. Ballast's
//! update daemon is the client; `tools/fleetlock-server` is a small server for operators and
//! tests. Both use the types here, so the two sides cannot drift.
//!
//! The wire format, as Zincati speaks it: both requests are `POST`, carry the header
//! `fleet-lock-protocol: true` and the body `{"client_params": {"id": ID, "group": GROUP}}`.
//! 200 means granted (or released); anything else is a refusal whose body is
//! `{"kind": ..., "value": ...}`.
//!
//! # Usage
//!
//! ```no_run
//! # async fn f() -> Result<(), fleetlock::Error> {
//! let params = fleetlock::ClientParams { id: "node-1".into(), group: "default".into() };
//! match fleetlock::pre_reboot("http://lock.example.com:3333/", &params).await? {
//!     fleetlock::Answer::Granted => { /* reboot */ }
//!     fleetlock::Answer::Refused(why) => println!("waiting: {why}"),
//! }
//! # Ok(()) }
//! ```
//!
//! # Current limitations
//!
//! * The client speaks plain `http://` only; an `https://` URL is refused with that reason
//!   (no TLS stack, CA bundle or proxy support yet).
//! * One request per connection, with a 30 s limit.
#![forbid(unsafe_code)]

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use snafu::{ensure, OptionExt, ResultExt, Snafu};
use std::time::Duration;

/// Path of the request that takes a slot.
pub const PRE_REBOOT_PATH: &str = "/v1/pre-reboot";
/// Path of the request that gives a slot back.
pub const STEADY_STATE_PATH: &str = "/v1/steady-state";
/// The header every request carries, with the value [`PROTOCOL_HEADER_VALUE`].
pub const PROTOCOL_HEADER: &str = "fleet-lock-protocol";
/// The value of [`PROTOCOL_HEADER`].
pub const PROTOCOL_HEADER_VALUE: &str = "true";
/// The group used when none is configured.
pub const DEFAULT_GROUP: &str = "default";
/// How long a request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Who is asking: the node's id and its group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientParams {
    pub id: String,
    pub group: String,
}

/// The body of both requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockRequest {
    pub client_params: ClientParams,
}

/// The body of a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A machine-readable word, e.g. `lock_held` or `bad_request`.
    pub kind: String,
    /// A sentence for people.
    pub value: String,
}

/// The server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Granted,
    /// Not granted: the status code and the server's reason.
    Refused(String),
}

/// A request that could not be made or read.
#[derive(Debug, Snafu)]
pub enum Error {
    #[snafu(display("FleetLock URL '{url}' is not valid: {source}"))]
    BadUrl {
        url: String,
        source: url::ParseError,
    },
    #[snafu(display(
        "FleetLock URL '{url}' uses {scheme}; only http:// is supported by this client so far"
    ))]
    UnsupportedScheme { url: String, scheme: String },
    #[snafu(display("FleetLock URL '{url}' names no host"))]
    NoHost { url: String },
    #[snafu(display("Failed to connect to the FleetLock server at {address}: {source}"))]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[snafu(display("FleetLock request to {url} failed: {source}"))]
    Http { url: String, source: hyper::Error },
    #[snafu(display("FleetLock request to {url} could not be built: {source}"))]
    Build {
        url: String,
        source: hyper::http::Error,
    },
    #[snafu(display("FleetLock request to {url} took longer than {}s", REQUEST_TIMEOUT.as_secs()))]
    Timeout { url: String },
}

/// Asks for a slot.
pub async fn pre_reboot(base_url: &str, params: &ClientParams) -> Result<Answer, Error> {
    call(base_url, PRE_REBOOT_PATH, params).await
}

/// Gives the slot back (granted also when this id held none).
pub async fn steady_state(base_url: &str, params: &ClientParams) -> Result<Answer, Error> {
    call(base_url, STEADY_STATE_PATH, params).await
}

/// The URL of `path` under `base_url` (whose own path, if any, is kept).
pub fn endpoint(base_url: &str, path: &str) -> Result<url::Url, Error> {
    let mut base = url::Url::parse(base_url).context(BadUrlSnafu { url: base_url })?;
    if !base.path().ends_with('/') {
        let with_slash = format!("{}/", base.path());
        base.set_path(&with_slash);
    }
    base.join(path.trim_start_matches('/'))
        .context(BadUrlSnafu { url: base_url })
}

/// Sends one request with `body` as is (no JSON check): the server's tests use it for
/// malformed bodies. Returns the status code and the body.
pub async fn raw(
    base_url: &str,
    path: &str,
    header: bool,
    body: String,
) -> Result<(u16, String), Error> {
    let url = endpoint(base_url, path)?;
    let text = url.to_string();
    ensure!(
        url.scheme() == "http",
        UnsupportedSchemeSnafu {
            url: base_url,
            scheme: url.scheme()
        }
    );
    let host = url.host_str().context(NoHostSnafu { url: base_url })?;
    let port = url.port_or_known_default().unwrap_or(80);
    let address = format!("{host}:{port}");
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(&address)
            .await
            .context(ConnectSnafu { address: &address })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .context(HttpSnafu { url: &text })?;
        tokio::spawn(connection);
        let mut request = hyper::Request::post(url.path())
            .header(hyper::header::HOST, address.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if header {
            request = request.header(PROTOCOL_HEADER, PROTOCOL_HEADER_VALUE);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .context(BuildSnafu { url: &text })?;
        let response = sender
            .send_request(request)
            .await
            .context(HttpSnafu { url: &text })?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .context(HttpSnafu { url: &text })?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| Error::Timeout { url: text.clone() })?
}

async fn call(base_url: &str, path: &str, params: &ClientParams) -> Result<Answer, Error> {
    let body = serde_json::to_string(&LockRequest {
        client_params: params.clone(),
    })
    .unwrap_or_default();
    let (status, text) = raw(base_url, path, true, body).await?;
    if status == 200 {
        return Ok(Answer::Granted);
    }
    let why = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(e) => format!("{} ({})", e.value, e.kind),
        Err(_) => text.trim().chars().take(300).collect(),
    };
    Ok(Answer::Refused(format!("HTTP {status}: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_zincatis() {
        let body = LockRequest {
            client_params: ClientParams {
                id: "n1".into(),
                group: "default".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"client_params": {"id": "n1", "group": "default"}})
        );
        assert!(serde_json::from_str::<LockRequest>(r#"{"client_params": {"id": "n1"}}"#).is_err());
    }

    #[test]
    fn endpoints_keep_the_base_path() {
        assert_eq!(
            endpoint("http://h:1", PRE_REBOOT_PATH).unwrap().as_str(),
            "http://h:1/v1/pre-reboot"
        );
        assert_eq!(
            endpoint("http://h:1/lock", STEADY_STATE_PATH)
                .unwrap()
                .as_str(),
            "http://h:1/lock/v1/steady-state"
        );
    }
}
