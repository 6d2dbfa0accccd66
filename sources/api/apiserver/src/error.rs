//! Errors: [`Error`] for starting and running the server, [`ApiError`] for answers to requests.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use snafu::Snafu;
use std::path::PathBuf;

/// Failures that stop the server from starting or serving.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display("Cannot open the datastore at {}: {source}. Run storewolf first to create it, or pass --datastore-path", path.display()))]
    OpenDatastore {
        path: PathBuf,
        source: datastore::Error,
    },

    #[snafu(display(
        "Cannot open the datastore at {}: another process has it open, {holder}. Stop it (only one API server may run per datastore) or pass another --datastore-path: {source}",
        path.display()
    ))]
    DatastoreLocked {
        path: PathBuf,
        holder: String,
        source: datastore::Error,
    },

    #[snafu(display("Cannot open the audit file {}: {source}. Make its directory writable for the server, or pass --audit-log", path.display()))]
    OpenAudit {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("Cannot listen on {} (mode 0660, owned by the --socket-gid group): {source}", path.display()))]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The JSON body of every error answer: what went wrong and, when one setting is to blame, its key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A sentence saying what was wrong with the request or what failed.
    pub error: String,
    /// The dotted settings key the error is about, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// An error answer: a status code and an [`ErrorBody`].
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub key: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            key: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<datastore::Error> for ApiError {
    /// Mistakes in the request are 4xx with the datastore's sentence (it names the key or
    /// transaction, never a file). A key or prefix the filesystem cannot hold (too long, or a
    /// segment longer than a file name) is also the request's fault: 400. Every other failure
    /// is a 500 (503 when the server is out of descriptors) whose body names no file: the
    /// detail, with its path, goes to the log.
    fn from(e: datastore::Error) -> Self {
        use datastore::Error as D;
        let status = match &e {
            D::InvalidKey { .. }
            | D::InvalidTransaction { .. }
            | D::InvalidValue { .. }
            | D::KeyConflict { .. } => StatusCode::BAD_REQUEST,
            D::EmptyTransaction { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            D::NoSuchCommit { .. } => StatusCode::NOT_FOUND,
            D::Io { source, .. } => match source.raw_os_error() {
                Some(libc::ENAMETOOLONG) => {
                    return ApiError::bad_request(
                        "the key, prefix or name is too long to be stored; use a shorter one",
                    )
                }
                // A NUL byte cannot be part of a file name; std refuses it before any call.
                None if source.kind() == std::io::ErrorKind::InvalidInput => {
                    return ApiError::bad_request(
                        "the key, prefix or name holds a character that cannot be stored",
                    )
                }
                Some(libc::EMFILE | libc::ENFILE) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if !status.is_server_error() {
            return ApiError::new(status, e.to_string());
        }
        tracing::error!("datastore failure: {e}");
        let message = match &e {
            D::Io { source, .. } if status == StatusCode::SERVICE_UNAVAILABLE => {
                format!("the server is out of file descriptors ({source}); retry shortly")
            }
            D::Io { source, .. } => {
                format!("reading or writing the datastore failed: {source}; the server's log names the file")
            }
            D::CorruptFile { .. } => {
                "a datastore file is damaged; the server's log names it".to_string()
            }
            D::NotADatastore { .. } | D::Locked { .. } => {
                "the datastore is not usable; see the server's log".to_string()
            }
            D::GroupCommit { tx, .. } => format!(
                "committing transaction '{tx}' failed (it shared its flush with other commits); the server's log has the cause"
            ),
            other => other.to_string(),
        };
        ApiError::new(status, message)
    }
}

impl From<models::ValidationError> for ApiError {
    fn from(e: models::ValidationError) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: e.to_string(),
            key: Some(e.key),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            key: self.key,
        };
        (self.status, axum::Json(body)).into_response()
    }
}
