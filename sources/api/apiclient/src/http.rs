//! One HTTP/1.1 request over an already connected stream, using hyper's low-level client.
//!
//! The API socket and the (plain) `http://` inputs of `apply` both go through [`exchange`]; only
//! the way the stream is opened differs.

use crate::error::{self, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use snafu::{OptionExt, ResultExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, trace};

/// Status code and full body of a response.
pub(crate) struct Exchange {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
}

/// Parses a method name; accepts any case ("get" is GET).
pub(crate) fn parse_method(method: &str) -> Result<Method> {
    Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .ok()
        .context(error::InvalidMethodSnafu { method })
}

/// Checks that `uri` is an origin-form request target ("/path?query").
pub(crate) fn parse_origin_uri(uri: &str) -> Result<Uri> {
    if !uri.starts_with('/') {
        return error::InvalidUriSnafu {
            uri,
            reason: "it must start with '/', for example /settings",
        }
        .fail();
    }
    uri.parse::<Uri>().map_err(|e| {
        error::InvalidUriSnafu {
            uri,
            reason: e.to_string(),
        }
        .build()
    })
}

/// Sends one request over `stream` and reads the whole response.
///
/// `target` names the other end in error messages (socket path or host); `host` goes into the
/// Host header.  A body, when given, is labelled as JSON.  With `limit`, a response body larger
/// than that many bytes is refused.
pub(crate) async fn exchange<S>(
    stream: S,
    target: &str,
    host: &str,
    method: &Method,
    uri: Uri,
    body: Option<String>,
    limit: Option<usize>,
) -> Result<Exchange>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let method_text = method.to_string();
    let uri_text = uri.to_string();
    let (status, mut incoming) = send(stream, target, host, method, uri, body).await?;
    let mut collected = Vec::new();
    while let Some(data) = next_chunk(&mut incoming, &method_text, &uri_text, target).await? {
        collected.extend_from_slice(&data);
        if let Some(limit) = limit {
            if collected.len() > limit {
                return error::BodyTooLargeSnafu {
                    method: &method_text,
                    uri: &uri_text,
                    limit,
                }
                .fail();
            }
        }
    }
    debug!("<- {status} ({} bytes)", collected.len());

    Ok(Exchange {
        status,
        body: Bytes::from(collected),
    })
}

/// Sends one request over `stream` and returns the status and the body still to be read, for
/// answers that go on (a followed journal): read it with [`next_chunk`].
pub(crate) async fn send<S>(
    stream: S,
    target: &str,
    host: &str,
    method: &Method,
    uri: Uri,
    body: Option<String>,
) -> Result<(u16, Incoming)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let method_text = method.to_string();
    let uri_text = uri.to_string();

    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context(error::HandshakeSnafu { target })?;
    // The connection object does the actual I/O; it must be polled while we wait for the answer.
    // It finishes by itself once the response is read and `sender` is dropped.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            trace!("HTTP connection ended with an error: {e}");
        }
    });

    let mut builder = Request::builder()
        .method(method.clone())
        .uri(uri)
        .header(HOST, host);
    if body.is_some() {
        builder = builder.header(CONTENT_TYPE, "application/json");
    }
    let request = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .context(error::BuildRequestSnafu {
            method: &method_text,
            uri: &uri_text,
        })?;

    debug!("-> {method_text} {uri_text}");
    let response = sender
        .send_request(request)
        .await
        .context(error::SendRequestSnafu {
            method: &method_text,
            uri: &uri_text,
            target,
        })?;
    Ok((response.status().as_u16(), response.into_body()))
}

/// The next piece of a response body as it arrives, or `None` at its end.
pub(crate) async fn next_chunk(
    incoming: &mut Incoming,
    method: &str,
    uri: &str,
    target: &str,
) -> Result<Option<Bytes>> {
    while let Some(frame) = incoming.frame().await {
        let frame = frame.context(error::ReadBodySnafu {
            method,
            uri,
            target,
        })?;
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn methods_are_case_insensitive() {
        assert_eq!(parse_method("get").unwrap(), Method::GET);
        assert_eq!(parse_method("Patch").unwrap(), Method::PATCH);
        assert!(parse_method("BAD METHOD").is_err());
        assert!(parse_method("").is_err());
    }

    #[test]
    fn uris_must_be_origin_form() {
        assert!(parse_origin_uri("/settings?prefix=motd").is_ok());
        assert!(parse_origin_uri("settings").is_err());
        assert!(parse_origin_uri("/has space").is_err());
    }
}
