//! `apply`: applies whole settings documents, in the same shape as user data.
//!
//! Each input is a local path, a `file://` URI, a plain `http://` URL, or `-` for stdin (no
//! inputs at all means stdin).  Each document is TOML or JSON and must have a top-level
//! `settings` table; other top-level keys are ignored with a warning.  All inputs are read and
//! checked before anything is sent, then each document is PATCHed in the order given into one
//! transaction (`apiclient-apply-<random>`), which is then committed and applied.  Later
//! documents win where they overlap.  On failure the transaction is deleted again.

use crate::error::{self, Result};
use crate::{http, request, tx};
use serde_json::{Map, Number, Value};
use snafu::{OptionExt, ResultExt};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpStream;
use tracing::warn;
use url::Url;

/// The stdin input.
pub const STDIN: &str = "-";

/// Largest document we accept over HTTP.
pub const MAX_HTTP_DOCUMENT: usize = 16 * 1024 * 1024;

/// How long fetching one document over HTTP may take in total.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where one settings document comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    Stdin,
    File(PathBuf),
    Http(Url),
}

impl InputSource {
    /// Interprets one `apply` argument.
    pub fn parse(input: &str) -> Result<Self> {
        if input == STDIN {
            return Ok(InputSource::Stdin);
        }
        let Some((scheme, _)) = input.split_once("://") else {
            return Ok(InputSource::File(PathBuf::from(input)));
        };
        let url = Url::parse(input).map_err(|e| {
            error::InputUriSnafu {
                input,
                reason: e.to_string(),
            }
            .build()
        })?;
        match url.scheme() {
            "file" => {
                let path = url.to_file_path().map_err(|()| {
                    error::InputUriSnafu {
                        input,
                        reason: "a file:// URI needs an absolute local path, like \
                                 file:///etc/settings.toml",
                    }
                    .build()
                })?;
                Ok(InputSource::File(path))
            }
            "http" => Ok(InputSource::Http(url)),
            "https" => error::UnsupportedSchemeSnafu {
                input,
                scheme,
                why: " (apiclient has no TLS client)",
            }
            .fail(),
            _ => error::UnsupportedSchemeSnafu {
                input,
                scheme,
                why: "",
            }
            .fail(),
        }
    }
}

/// Reads the whole text of one input.  `input` is the argument as given, for messages.
pub async fn read_input(source: &InputSource, input: &str) -> Result<String> {
    match source {
        InputSource::Stdin => {
            // Reading stdin blocks; keep it off the runtime's worker.
            let read = tokio::task::spawn_blocking(|| {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text).map(|_| text)
            })
            .await
            .unwrap_or_else(|join_error| Err(std::io::Error::other(join_error)));
            read.context(error::ReadStdinSnafu)
        }
        InputSource::File(path) => tokio::fs::read_to_string(path)
            .await
            .context(error::ReadFileSnafu { path }),
        InputSource::Http(url) => fetch_http(url, input)
            .await
            .context(error::FetchSnafu { input }),
    }
}

/// Fetches a plain-HTTP document with one GET; redirects are not followed.
async fn fetch_http(url: &Url, input: &str) -> Result<String> {
    let host = url.host().context(error::InputUriSnafu {
        input,
        reason: "there is no host in it",
    })?;
    let port = url.port_or_known_default().unwrap_or(80);
    let host_header = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let target = format!("{}:{port}", url.host_str().unwrap_or_default());
    let path_and_query = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    };
    let uri = http::parse_origin_uri(&path_and_query)?;

    let work = async {
        let stream = match host {
            url::Host::Domain(name) => TcpStream::connect((name, port)).await,
            url::Host::Ipv4(addr) => TcpStream::connect((addr, port)).await,
            url::Host::Ipv6(addr) => TcpStream::connect((addr, port)).await,
        }
        .context(error::TcpConnectSnafu { target: &target })?;
        http::exchange(
            stream,
            &target,
            &host_header,
            &hyper::Method::GET,
            uri,
            None,
            Some(MAX_HTTP_DOCUMENT),
        )
        .await
    };
    let answer = tokio::time::timeout(HTTP_TIMEOUT, work)
        .await
        .map_err(|_| {
            error::TimeoutSnafu {
                target: &target,
                seconds: HTTP_TIMEOUT.as_secs(),
            }
            .build()
        })??;
    if !(200..300).contains(&answer.status) {
        return error::FetchStatusSnafu {
            input,
            status: error::StatusText(answer.status),
        }
        .fail();
    }
    Ok(String::from_utf8_lossy(&answer.body).into_owned())
}

/// Parses one document and returns the contents of its `settings` table.
///
/// Text starting with `{` is tried as JSON first, anything else as TOML first; if neither
/// format fits, both parsers' complaints are reported.
pub fn parse_document(text: &str, input: &str) -> Result<Map<String, Value>> {
    let value = parse_toml_or_json(text, input)?;
    let Value::Object(mut top) = value else {
        return error::InputNotTableSnafu { input }.fail();
    };
    let settings = top
        .remove("settings")
        .context(error::MissingSettingsSnafu { input })?;
    if !top.is_empty() {
        let ignored: Vec<&str> = top.keys().map(String::as_str).collect();
        warn!(
            "Input '{input}': ignoring top-level keys other than 'settings': {}",
            ignored.join(", ")
        );
    }
    match settings {
        Value::Object(map) => Ok(map),
        _ => error::SettingsNotTableSnafu { input }.fail(),
    }
}

fn parse_toml_or_json(text: &str, input: &str) -> Result<Value> {
    let json_first = text.trim_start().starts_with('{');
    let as_json = || serde_json::from_str::<Value>(text).map_err(|e| e.to_string());
    let as_toml = || {
        toml::from_str::<toml::Table>(text)
            .map_err(|e| describe_toml_error(&e, text))
            .map(toml::Value::Table)
    };

    let (json_error, toml_error) = if json_first {
        let json_error = match as_json() {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        match as_toml() {
            Ok(value) => return toml_to_json(value, input),
            Err(toml_error) => (json_error, toml_error),
        }
    } else {
        let toml_error = match as_toml() {
            Ok(value) => return toml_to_json(value, input),
            Err(e) => e,
        };
        match as_json() {
            Ok(value) => return Ok(value),
            Err(json_error) => (json_error, toml_error),
        }
    };
    error::ParseInputSnafu {
        input,
        json_error,
        toml_error,
    }
    .fail()
}

/// One line for a TOML error: its message and where it happened (the crate's own `Display`
/// spreads over several lines with a source excerpt).
fn describe_toml_error(err: &toml::de::Error, text: &str) -> String {
    let message = err.message().trim().replace('\n', " ");
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before
                .rsplit_once('\n')
                .map_or(before, |(_, rest)| rest)
                .chars()
                .count()
                + 1;
            format!("{message} at line {line} column {column}")
        }
        None => message,
    }
}

/// Converts TOML into JSON.  Datetimes become strings; NaN and infinite floats, which JSON
/// can't carry, are refused.
fn toml_to_json(value: toml::Value, input: &str) -> Result<Value> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::Number(i.into()),
        toml::Value::Float(f) => {
            Value::Number(Number::from_f64(f).context(error::TomlValueSnafu {
                input,
                reason: format!("the float {f}"),
            })?)
        }
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| toml_to_json(item, input))
                .collect::<Result<_>>()?,
        ),
        toml::Value::Table(table) => Value::Object(
            table
                .into_iter()
                .map(|(key, item)| Ok((key, toml_to_json(item, input)?)))
                .collect::<Result<_>>()?,
        ),
    })
}

/// Reads, checks and applies the inputs in one transaction; returns the transaction's name.
/// No inputs means stdin.
pub async fn apply(socket_path: impl AsRef<Path>, inputs: &[String]) -> Result<String> {
    apply_and(socket_path, inputs, tx::Finish::CommitAndApply)
        .await
        .map(|(transaction, _)| transaction)
}

/// Like [`apply`], finishing the transaction as asked; returns its name and the server's answer.
pub async fn apply_and(
    socket_path: impl AsRef<Path>,
    inputs: &[String],
    how: tx::Finish,
) -> Result<(String, String)> {
    let inputs: Vec<String> = if inputs.is_empty() {
        vec![STDIN.to_string()]
    } else {
        inputs.to_vec()
    };
    if inputs.iter().filter(|input| *input == STDIN).count() > 1 {
        return error::StdinTwiceSnafu.fail();
    }

    // Read and check everything first, so a bad input can't leave half the changes staged.
    let mut documents = Vec::with_capacity(inputs.len());
    for input in inputs {
        let source = InputSource::parse(&input)?;
        let label = if source == InputSource::Stdin {
            "stdin".to_string()
        } else {
            input
        };
        let text = read_input(&source, &label).await?;
        let settings = parse_document(&text, &label)?;
        documents.push((label, settings));
    }
    apply_documents_and(socket_path, &documents, how).await
}

/// PATCHes each `(input name, settings)` in order into one new transaction, then commits and
/// applies it; returns the transaction's name.
pub async fn apply_documents(
    socket_path: impl AsRef<Path>,
    documents: &[(String, Map<String, Value>)],
) -> Result<String> {
    apply_documents_and(socket_path, documents, tx::Finish::CommitAndApply)
        .await
        .map(|(transaction, _)| transaction)
}

/// Like [`apply_documents`], finishing the transaction as asked.
pub async fn apply_documents_and(
    socket_path: impl AsRef<Path>,
    documents: &[(String, Map<String, Value>)],
    how: tx::Finish,
) -> Result<(String, String)> {
    let socket_path = socket_path.as_ref();
    let transaction = tx::transaction_name("apply");
    let uri = tx::with_tx("/settings", &transaction);

    let stage = async {
        for (input, settings) in documents {
            let body = serde_json::to_string(settings).context(error::SerializeBodySnafu)?;
            request(socket_path, &uri, "PATCH", Some(body))
                .await
                .context(error::ApplyPatchSnafu { input })?;
        }
        Ok(())
    };
    let answer = tx::stage_and_finish(socket_path, &transaction, how, stage).await?;
    Ok((transaction, answer))
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::Error;
    use serde_json::json;
    use tokio::io::AsyncReadExt;

    fn parsed(text: &str) -> Value {
        Value::Object(parse_document(text, "test").unwrap())
    }

    #[test]
    fn toml_with_settings() {
        let text = r#"
            [settings]
            motd = "hello"
            [settings.kernel.sysctl]
            "net.ipv4.ip_forward" = "1"
            [settings.ntp]
            time-servers = ["a", "b"]
            [settings.x]
            n = 3
            f = 1.5
            on = true
            when = 1979-05-27T07:32:00Z
        "#;
        assert_eq!(
            parsed(text),
            json!({
                "motd": "hello",
                "kernel": {"sysctl": {"net.ipv4.ip_forward": "1"}},
                "ntp": {"time-servers": ["a", "b"]},
                "x": {"n": 3, "f": 1.5, "on": true, "when": "1979-05-27T07:32:00Z"}
            })
        );
    }

    #[test]
    fn json_with_settings() {
        assert_eq!(
            parsed(r#"  {"settings": {"motd": "hi", "n": [1, 2]}}"#),
            json!({"motd": "hi", "n": [1, 2]})
        );
    }

    #[test]
    fn dotted_toml_keys() {
        assert_eq!(
            parsed("settings.motd = \"hi\"\nsettings.ntp.time-servers = []\n"),
            json!({"motd": "hi", "ntp": {"time-servers": []}})
        );
    }

    #[test]
    fn missing_settings_is_refused() {
        for text in [
            "motd = \"hi\"",
            r#"{"motd": "hi"}"#,
            "",
            "# only a comment\n",
        ] {
            let err = parse_document(text, "in.toml").unwrap_err();
            assert!(
                matches!(err, Error::MissingSettings { .. }),
                "{text}: {err}"
            );
            assert!(err.to_string().contains("'in.toml'"), "{err}");
        }
    }

    #[test]
    fn settings_must_be_a_table() {
        for text in ["settings = 5", r#"{"settings": "x"}"#] {
            assert!(matches!(
                parse_document(text, "x").unwrap_err(),
                Error::SettingsNotTable { .. }
            ));
        }
        assert!(matches!(
            parse_document("[1, 2]", "x").unwrap_err(),
            Error::InputNotTable { .. }
        ));
    }

    #[test]
    fn other_top_level_keys_are_ignored() {
        assert_eq!(
            parsed("other = 1\n[settings]\nmotd = \"x\"\n"),
            json!({"motd": "x"})
        );
    }

    #[test]
    fn garbage_reports_both_errors_on_one_line() {
        for text in ["{\"settings\": {\"motd\": }}", "[settings\nmotd = "] {
            let err = parse_document(text, "bad.toml").unwrap_err();
            let Error::ParseInput {
                json_error,
                toml_error,
                ..
            } = &err
            else {
                panic!("unexpected error {err}");
            };
            assert!(json_error.contains("line"), "{json_error}");
            assert!(toml_error.contains("line"), "{toml_error}");
            let text = err.to_string();
            assert!(!text.contains('\n'), "{text}");
            assert!(text.contains("neither valid JSON"), "{text}");
        }
    }

    #[test]
    fn toml_error_positions() {
        let text = "[settings]\nmotd = \n";
        let err = toml::from_str::<toml::Table>(text).unwrap_err();
        let described = describe_toml_error(&err, text);
        assert!(described.contains("line 2"), "{described}");
    }

    #[test]
    fn nan_is_refused() {
        let err = parse_document("[settings]\nx = nan\n", "n.toml").unwrap_err();
        assert!(matches!(err, Error::TomlValue { .. }), "{err}");
    }

    #[test]
    fn input_sources() {
        assert_eq!(InputSource::parse("-").unwrap(), InputSource::Stdin);
        assert_eq!(
            InputSource::parse("settings.toml").unwrap(),
            InputSource::File("settings.toml".into())
        );
        assert_eq!(
            InputSource::parse("/etc/a b.toml").unwrap(),
            InputSource::File("/etc/a b.toml".into())
        );
        assert_eq!(
            InputSource::parse("file:///etc/a%20b.toml").unwrap(),
            InputSource::File("/etc/a b.toml".into())
        );
        assert!(matches!(
            InputSource::parse("http://example.com/s.toml").unwrap(),
            InputSource::Http(_)
        ));
        let err = InputSource::parse("https://example.com/s.toml").unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
        assert!(err.to_string().contains("TLS"), "{err}");
        let err = InputSource::parse("s3://bucket/s.toml").unwrap_err();
        assert!(err.to_string().contains("s3:// is not supported"), "{err}");
        assert!(InputSource::parse("file://relative/x").is_err());
    }

    #[tokio::test]
    async fn stdin_only_once() {
        let err = apply("/nonexistent.sock", &["-".into(), "-".into()])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::StdinTwice));
    }

    #[tokio::test]
    async fn unreadable_file_is_reported_before_anything_is_sent() {
        let err = apply("/nonexistent.sock", &["/nonexistent/settings.toml".into()])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ReadFile { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/settings.toml"));
    }

    #[tokio::test]
    async fn plain_http_fetch() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
            }
            let body = "[settings]\nmotd = \"from http\"\n";
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8(request).unwrap()
        });

        let input = format!("http://{addr}/user-data?v=1");
        let source = InputSource::parse(&input).unwrap();
        let text = read_input(&source, &input).await.unwrap();
        assert_eq!(
            Value::Object(parse_document(&text, &input).unwrap()),
            json!({"motd": "from http"})
        );
        let request = server.await.unwrap();
        assert!(
            request.starts_with("GET /user-data?v=1 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains(&format!("host: {addr}")),
            "{request}"
        );
    }
}
