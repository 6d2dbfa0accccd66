//! What can go wrong running a host container, one variant per step a person can act on.

use snafu::Snafu;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display("Cannot read {}: {source}; is settings.host-containers rendered?", path.display()))]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("{} is not a valid host-ctr configuration: {source}", path.display()))]
    ParseConfig {
        path: PathBuf,
        source: toml::de::Error,
    },

    #[snafu(display(
        "There is no host container '{name}': set settings.host-containers.{name}.source and .enabled"
    ))]
    NoSuchContainer { name: String },

    #[snafu(display(
        "Host container '{name}' has no source: set settings.host-containers.{name}.source to an image reference"
    ))]
    NoSource { name: String },

    #[snafu(display("'{reference}' is not a valid image reference: {message}"))]
    BadReference { reference: String, message: String },

    #[snafu(display(
        "Mirror endpoint '{endpoint}' of registry {registry} is not a URL with a host"
    ))]
    BadMirror { registry: String, endpoint: String },

    #[snafu(display("Credentials for {registry}: 'auth' is not base64 of user:password"))]
    BadAuth { registry: String },

    #[snafu(display("Cannot fetch {what} of {reference} from {endpoint}: {message}"))]
    Fetch {
        what: String,
        reference: String,
        endpoint: String,
        message: String,
    },

    #[snafu(display(
        "Cannot pull {reference}: every endpoint failed ({}); check the source, settings.container-registry and the network",
        failures.join("; ")
    ))]
    AllEndpointsFailed {
        reference: String,
        failures: Vec<String>,
    },

    #[snafu(display("The image {reference} is not usable: {message}"))]
    BadImage { reference: String, message: String },

    #[snafu(context(false), display("{source}"))]
    Ctr { source: ctr_client::Error },

    #[snafu(display("Cannot {action} {}: {source}", path.display()))]
    Io {
        action: String,
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("Cannot make the FIFO {}: {source}", path.display()))]
    Fifo { path: PathBuf, source: nix::Error },

    #[snafu(display("The runtime spec for '{name}' is invalid: {source}"))]
    Spec {
        name: String,
        source: serde_json::Error,
    },

    #[snafu(display("The user data of '{name}' is not base64: {source}"))]
    UserData {
        name: String,
        source: base64::DecodeError,
    },

    #[snafu(display("Cannot run `{command}`: {message}"))]
    Systemctl { command: String, message: String },

    #[snafu(display(
        "Bootstrap container '{name}' has no source: set settings.bootstrap-containers.{name}.source to an image reference, or its mode to off"
    ))]
    BootstrapNoSource { name: String },

    #[snafu(display(
        "Essential bootstrap container '{name}' failed: {message}; the boot stops before configured.target (fix or set settings.bootstrap-containers.{name}.essential=false)"
    ))]
    EssentialFailed { name: String, message: String },

    #[snafu(display("Cannot listen for {signal}: {source}"))]
    Signal {
        signal: String,
        source: std::io::Error,
    },
}
