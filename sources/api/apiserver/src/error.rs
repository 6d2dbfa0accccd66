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

    #[snafu(display("Cannot remove the stale socket {}: {source}", path.display()))]
    RemoveSocket {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("Cannot create the socket directory {}: {source}", path.display()))]
    SocketDir {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("Cannot listen on {}: {source}", path.display()))]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("Cannot set mode 0660 on the socket {}: {source}", path.display()))]
    SocketMode {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("Cannot set owner or mode of the socket {}: {source}", path.display()))]
    SocketPermissions { path: PathBuf, source: nix::Error },

    #[snafu(display("The HTTP server failed: {source}"))]
    Serve { source: std::io::Error },
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
    fn from(e: datastore::Error) -> Self {
        use datastore::Error as D;
        let status = match &e {
            D::InvalidKey { .. }
            | D::InvalidTransaction { .. }
            | D::InvalidValue { .. }
            | D::KeyConflict { .. } => StatusCode::BAD_REQUEST,
            D::EmptyTransaction { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            D::NoSuchCommit { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!("datastore failure: {e}");
        }
        ApiError::new(status, e.to_string())
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
