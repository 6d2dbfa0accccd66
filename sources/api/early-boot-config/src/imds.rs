//! User data from an instance-metadata service, with the AWS IMDSv2 token flow:
//!
//! 1. `PUT {base}/latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds: 21600` answers a
//!    session token;
//! 2. `GET {base}/latest/user-data` with `X-aws-ec2-metadata-token: <token>` answers the user
//!    data, or 404 when the instance has none.
//!
//! A boot without any metadata service (a VM on a laptop, bare metal) must not wait for one:
//! when the connection is refused or the network is unreachable the service is taken to be
//! absent at once. Connections that hang are given up after [`CONNECT_TIMEOUT`], and timeouts
//! and server errors (5xx, 429, an expired token) are retried with a growing pause until the
//! total deadline.

use reqwest::{Client, StatusCode, Url};
use std::time::Duration;
use tokio::time::Instant;

/// The AWS instance-metadata endpoint.
pub const DEFAULT_BASE_URL: &str = "http://169.254.169.254";
/// Total time allowed for fetching user data, retries included, unless told otherwise.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// Time allowed for a TCP connection to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Lifetime asked for the session token (the AWS maximum).
pub const TOKEN_TTL_SECONDS: u32 = 21600;

const TOKEN_PATH: &str = "latest/api/token";
const USER_DATA_PATH: &str = "latest/user-data";
const TOKEN_TTL_HEADER: &str = "X-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "X-aws-ec2-metadata-token";
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const LONGEST_PAUSE: Duration = Duration::from_secs(2);

/// What asking the metadata service gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The raw user data.
    Data(Vec<u8>),
    /// No user data, and that is normal: why, for the log.
    Nothing(String),
    /// The service answered, but not usefully: why.
    Failed(String),
}

/// A metadata service client.
#[derive(Debug, Clone)]
pub struct Imds {
    base: Url,
    deadline: Duration,
    connect_timeout: Duration,
    wait_for_route: bool,
}

/// How one attempt ended, when it did not end with an answer.
enum Problem {
    /// Nobody listens: stop trying.
    Absent(String),
    /// No route to the service (yet): stop trying, unless a network link is still coming up.
    NoRoute(String),
    /// A timeout: maybe later.
    Timeout(String),
    /// A transient failure of a service that answers: maybe later.
    Retry(String),
    /// A definite refusal: stop trying.
    Fatal(String),
}

impl Imds {
    /// A client for the service at `base` (an `http://` URL) that gives up after `deadline`.
    pub fn new(base: &str, deadline: Duration) -> Result<Imds, String> {
        let mut url = Url::parse(base)
            .map_err(|e| format!("'{base}' is not a usable metadata service URL: {e}"))?;
        if url.scheme() != "http" || url.host().is_none() {
            return Err(format!(
                "'{base}' is not a usable metadata service URL: give an http:// URL with a host"
            ));
        }
        // Paths are joined below the base, so `http://host/prefix` keeps its prefix.
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        Ok(Imds {
            base: url,
            deadline,
            connect_timeout: CONNECT_TIMEOUT,
            wait_for_route: false,
        })
    }

    /// Keeps retrying "no route" failures until the deadline: for a node with a network link
    /// whose address (DHCP) may not be there yet when this runs early in the boot.
    pub fn waiting_for_route(mut self, wait: bool) -> Imds {
        self.wait_for_route = wait;
        self
    }

    /// Changes the connect timeout (for tests and slow networks).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Imds {
        self.connect_timeout = timeout;
        self
    }

    /// The base URL, for messages.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Fetches the user data, retrying until the deadline; never fails the boot by itself.
    pub async fn fetch(&self) -> Fetched {
        let client = match Client::builder()
            .connect_timeout(self.connect_timeout)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(client) => client,
            Err(e) => return Fetched::Failed(format!("cannot set up an HTTP client: {e}")),
        };
        let deadline = Instant::now() + self.deadline;
        let mut pause = FIRST_PAUSE;
        let mut attempts = 0u32;
        let mut answered = false;
        loop {
            attempts += 1;
            let problem = match self.attempt(&client, deadline).await {
                Ok(Some(data)) => return Fetched::Data(data),
                Ok(None) => {
                    return Fetched::Nothing(format!(
                        "{} has no user data for this instance (404)",
                        self.base
                    ))
                }
                Err(problem) => problem,
            };
            let reason = match problem {
                Problem::Absent(reason) => {
                    return Fetched::Nothing(format!(
                        "no metadata service answers at {}: {reason}",
                        self.base
                    ))
                }
                Problem::NoRoute(reason) if !self.wait_for_route => {
                    return Fetched::Nothing(format!(
                        "no metadata service answers at {}: {reason}",
                        self.base
                    ))
                }
                Problem::NoRoute(reason) => reason,
                Problem::Fatal(reason) => return Fetched::Failed(reason),
                Problem::Timeout(reason) => reason,
                Problem::Retry(reason) => {
                    answered = true;
                    reason
                }
            };
            tracing::debug!("attempt {attempts} at {} failed: {reason}", self.base);
            if Instant::now() + pause >= deadline {
                let seconds = self.deadline.as_secs_f32();
                return if answered {
                    Fetched::Failed(format!(
                        "gave up after {attempts} attempts in {seconds} s; last: {reason}"
                    ))
                } else {
                    Fetched::Nothing(format!(
                        "no metadata service answered at {} within {seconds} s ({reason})",
                        self.base
                    ))
                };
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }

    /// One token request and one user-data request. `Ok(None)` means "no user data".
    async fn attempt(
        &self,
        client: &Client,
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, Problem> {
        let token_url = self.url(TOKEN_PATH)?;
        let response = send(
            client
                .put(token_url.clone())
                .header(TOKEN_TTL_HEADER, TOKEN_TTL_SECONDS.to_string()),
            deadline,
            &token_url,
        )
        .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(judge_status(status, &format!("PUT {token_url}")));
        }
        let token = response
            .text()
            .await
            .map_err(|e| Problem::Retry(format!("cannot read the token from {token_url}: {e}")))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(Problem::Retry(format!(
                "{token_url} answered an empty token"
            )));
        }

        let data_url = self.url(USER_DATA_PATH)?;
        let mut response = send(
            client.get(data_url.clone()).header(TOKEN_HEADER, token),
            deadline,
            &data_url,
        )
        .await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(Problem::Retry(format!(
                "GET {data_url} refused the session token (401)"
            )));
        }
        if !status.is_success() {
            return Err(judge_status(status, &format!("GET {data_url}")));
        }
        let limit = crate::document::MAX_USER_DATA_BYTES;
        let mut data = Vec::new();
        loop {
            let chunk = response.chunk().await.map_err(|e| {
                Problem::Retry(format!("cannot read the user data from {data_url}: {e}"))
            })?;
            let Some(chunk) = chunk else { break };
            data.extend_from_slice(&chunk);
            if data.len() > limit {
                return Err(Problem::Fatal(format!(
                    "the user data at {data_url} is more than the limit of {limit} bytes"
                )));
            }
        }
        Ok(Some(data))
    }

    fn url(&self, path: &str) -> Result<Url, Problem> {
        self.base
            .join(path)
            .map_err(|e| Problem::Fatal(format!("cannot join {path} to {}: {e}", self.base)))
    }
}

/// Sends a request that must finish before `deadline`.
async fn send(
    request: reqwest::RequestBuilder,
    deadline: Instant,
    url: &Url,
) -> Result<reqwest::Response, Problem> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Problem::Timeout(format!("no time left to ask {url}")));
    }
    request
        .timeout(left)
        .send()
        .await
        .map_err(|e| classify(&e, url))
}

fn judge_status(status: StatusCode, what: &str) -> Problem {
    let reason = format!("{what} answered {status}");
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Problem::Retry(reason)
    } else {
        Problem::Fatal(reason)
    }
}

/// Sorts a failed request: nobody there, too slow, or something else.
fn classify(err: &reqwest::Error, url: &Url) -> Problem {
    use std::io::ErrorKind;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::ConnectionRefused => {
                    return Problem::Absent("connection refused".to_string())
                }
                ErrorKind::NetworkUnreachable => {
                    return Problem::NoRoute("network unreachable".to_string())
                }
                ErrorKind::HostUnreachable => {
                    return Problem::NoRoute("host unreachable".to_string())
                }
                ErrorKind::AddrNotAvailable => {
                    return Problem::NoRoute("no local address to reach it from".to_string())
                }
                _ => {}
            }
        }
        source = e.source();
    }
    if err.is_timeout() {
        Problem::Timeout(format!("{url} did not answer in time"))
    } else {
        Problem::Retry(format!("request to {url} failed: {}", full_chain(err)))
    }
}

/// An error and its causes on one line.
fn full_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_keep_their_path() {
        let imds = Imds::new("http://127.0.0.1:8080/prefix", DEFAULT_DEADLINE).unwrap();
        assert_eq!(
            imds.url(USER_DATA_PATH).ok().unwrap().as_str(),
            "http://127.0.0.1:8080/prefix/latest/user-data"
        );
        let imds = Imds::new(DEFAULT_BASE_URL, DEFAULT_DEADLINE).unwrap();
        assert_eq!(
            imds.url(TOKEN_PATH).ok().unwrap().as_str(),
            "http://169.254.169.254/latest/api/token"
        );
        for bad in [
            "https://169.254.169.254",
            "169.254.169.254",
            "file:///x",
            "",
        ] {
            assert!(Imds::new(bad, DEFAULT_DEADLINE).is_err(), "{bad}");
        }
    }
}
