//! What can go wrong talking to containerd.

use snafu::Snafu;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Snafu)]
#[snafu(visibility(pub))]
pub enum Error {
    #[snafu(display(
        "Cannot connect to the host containerd at {}: {source}; is host-containerd.service running?",
        path.display()
    ))]
    Connect {
        path: PathBuf,
        source: containerd_client::tonic::transport::Error,
    },

    #[snafu(display("The host containerd refused {action}: {}", source.message()))]
    Containerd {
        action: String,
        source: containerd_client::tonic::Status,
    },

    #[snafu(display("The runtime spec of container {id} in containerd is not JSON: {source}"))]
    ContainerSpec {
        id: String,
        source: serde_json::Error,
    },
}

impl Error {
    /// Whether the call failed only because what it looked for is not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Containerd { source, .. }
            if source.code() == containerd_client::tonic::Code::NotFound)
    }
}

/// Attaches `action` to a status containerd answered with.
pub fn refused(
    action: impl Into<String>,
) -> impl FnOnce(containerd_client::tonic::Status) -> Error {
    let action = action.into();
    move |source| Error::Containerd { action, source }
}
