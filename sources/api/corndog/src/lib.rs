//! Kernel settings that no configuration file carries. Today that is the lockdown mode
//! (`settings.kernel.lockdown`, see `kernel_lockdown(7)`): the kernel shows it in securityfs as
//! `none [integrity] confidentiality`, with the mode in force in brackets, and takes a higher
//! mode written there. It never goes back down while running, so a lower mode only takes effect
//! at the next boot, when this program applies the setting again before the node's services
//! start (the renderer runs it at boot and whenever the setting changes).

use models::modeled_types::Lockdown;
use snafu::{OptionExt, ResultExt, Snafu};
use std::path::{Path, PathBuf};

#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    #[snafu(display(
        "cannot read the kernel lockdown mode from {}: {source}; is securityfs mounted and the \
         lockdown LSM in the kernel?",
        path.display()
    ))]
    ReadMode {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display(
        "{} shows no mode in brackets ('{text}'); cannot tell the mode in force",
        path.display()
    ))]
    NoCurrentMode { path: PathBuf, text: String },

    #[snafu(display("{} names an unknown lockdown mode: {source}", path.display()))]
    UnknownMode {
        path: PathBuf,
        source: models::error::InvalidValue,
    },

    #[snafu(display(
        "cannot raise the kernel lockdown mode to {wanted} through {}: {source}",
        path.display()
    ))]
    WriteMode {
        path: PathBuf,
        wanted: &'static str,
        source: std::io::Error,
    },

    #[snafu(display("cannot read settings.kernel.lockdown from the API: {source}"))]
    Api { source: apiclient::Error },

    #[snafu(display("the API answered settings that are not JSON: {source}"))]
    ApiJson { source: serde_json::Error },

    #[snafu(display("settings.kernel.lockdown from the API is not a lockdown mode: {source}"))]
    SettingValue { source: models::error::InvalidValue },
}

pub type Result<T> = std::result::Result<T, Error>;

/// What applying a mode did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel was already in the mode.
    Unchanged(Lockdown),
    /// The kernel moved up to the mode.
    Raised { from: Lockdown, to: Lockdown },
    /// The kernel is in a higher mode than wanted and cannot go down before a reboot.
    LowerAtNextBoot { current: Lockdown, wanted: Lockdown },
}

/// The mode in force, from the securityfs file's text (`none [integrity] confidentiality`).
pub fn parse_current(path: &Path, text: &str) -> Result<Lockdown> {
    let word = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        .context(NoCurrentModeSnafu {
            path,
            text: text.trim(),
        })?;
    Lockdown::try_from(word).context(UnknownModeSnafu { path })
}

/// The mode in force, read from `path` (normally [`constants::KERNEL_LOCKDOWN`]).
pub fn current(path: &Path) -> Result<Lockdown> {
    let text = std::fs::read_to_string(path).context(ReadModeSnafu { path })?;
    parse_current(path, &text)
}

/// Puts the kernel in `wanted` mode through `path` when that raises it.
pub fn apply(path: &Path, wanted: Lockdown) -> Result<Outcome> {
    let current = current(path)?;
    if current == wanted {
        return Ok(Outcome::Unchanged(current));
    }
    if current > wanted {
        return Ok(Outcome::LowerAtNextBoot { current, wanted });
    }
    std::fs::write(path, wanted.as_str()).context(WriteModeSnafu {
        path,
        wanted: wanted.as_str(),
    })?;
    Ok(Outcome::Raised {
        from: current,
        to: wanted,
    })
}

/// `settings.kernel.lockdown` from the API at `socket`; `None` when it is not set.
pub async fn wanted_mode(socket: &Path) -> Result<Option<Lockdown>> {
    const KEY: &str = "settings.kernel.lockdown";
    let body = apiclient::request(socket, &format!("/settings?keys={KEY}"), "GET", None)
        .await
        .context(ApiSnafu)?;
    let settings: serde_json::Value = serde_json::from_str(&body).context(ApiJsonSnafu)?;
    match settings["kernel"]["lockdown"].as_str() {
        None => Ok(None),
        Some(word) => Lockdown::try_from(word)
            .map(Some)
            .context(SettingValueSnafu),
    }
}

/// Reads the setting and applies it, logging what happened.
pub async fn run(socket: &Path, path: &Path) -> Result<Outcome> {
    let Some(wanted) = wanted_mode(socket).await? else {
        let current = current(path)?;
        tracing::info!(
            "settings.kernel.lockdown is not set; the kernel stays in mode {}",
            current.as_str()
        );
        return Ok(Outcome::Unchanged(current));
    };
    let outcome = apply(path, wanted)?;
    match outcome {
        Outcome::Unchanged(mode) => {
            tracing::info!("kernel lockdown is already {}", mode.as_str())
        }
        Outcome::Raised { from, to } => {
            tracing::info!(
                "kernel lockdown raised from {} to {}",
                from.as_str(),
                to.as_str()
            )
        }
        Outcome::LowerAtNextBoot { current, wanted } => tracing::warn!(
            "kernel lockdown is {} and cannot be lowered to {} while running; it takes effect \
             at the next boot",
            current.as_str(),
            wanted.as_str()
        ),
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bracketed_mode() {
        let p = Path::new(constants::KERNEL_LOCKDOWN);
        assert_eq!(
            parse_current(p, "[none] integrity confidentiality\n").unwrap(),
            Lockdown::None
        );
        assert_eq!(
            parse_current(p, "none integrity [confidentiality]\n").unwrap(),
            Lockdown::Confidentiality
        );
        assert!(matches!(
            parse_current(p, "none integrity confidentiality"),
            Err(Error::NoCurrentMode { .. })
        ));
        assert!(matches!(
            parse_current(p, "[full]"),
            Err(Error::UnknownMode { .. })
        ));
    }

    /// A stand-in for the securityfs file: it holds what was written, not the kernel's listing,
    /// so the tests rewrite it in the kernel's shape after each write.
    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn raises_but_never_lowers() {
        let f = file("[none] integrity confidentiality\n");
        assert_eq!(
            apply(f.path(), Lockdown::Integrity).unwrap(),
            Outcome::Raised {
                from: Lockdown::None,
                to: Lockdown::Integrity
            }
        );
        assert_eq!(std::fs::read_to_string(f.path()).unwrap(), "integrity");

        let f = file("none [integrity] confidentiality\n");
        assert_eq!(
            apply(f.path(), Lockdown::Integrity).unwrap(),
            Outcome::Unchanged(Lockdown::Integrity)
        );
        assert_eq!(
            apply(f.path(), Lockdown::None).unwrap(),
            Outcome::LowerAtNextBoot {
                current: Lockdown::Integrity,
                wanted: Lockdown::None
            }
        );
        assert_eq!(
            std::fs::read_to_string(f.path()).unwrap(),
            "none [integrity] confidentiality\n",
            "nothing is written when the mode would go down"
        );
    }

    #[test]
    fn a_missing_file_says_what_to_check() {
        let err = apply(Path::new("/nonexistent/lockdown"), Lockdown::Integrity).unwrap_err();
        assert!(err.to_string().contains("securityfs"), "{err}");
    }
}
