//! # Background
//!
//! At boot, settings are gathered in the pending transaction `ballast-launch`
//! ([`constants::LAUNCH_TX`]): storewolf seeds the defaults that are not live yet,
//! early-boot-config adds user data and sundog adds generated values. Nothing of that is live
//! until settings-committer commits the transaction, just before the renderer writes every
//! configuration file from the live settings.
//!
//! The commit is one `POST /tx/commit?tx=ballast-launch`, which the API server performs all or
//! nothing. It only commits; applying (rendering files, restarting services) is the next unit's
//! job, because at boot everything is rendered anyway.
//!
//! The API server answers before this commit, so a user may already have set some of the
//! launch transaction's keys. The server commits the launch transaction so that such keys keep
//! the user's value (a key committed after it was staged is left out); the keys the user did not
//! set get their default, user data or generated value as usual.
//!
//! # Usage
//!
//! ```text
//! settings-committer [--socket-path /run/api.sock] [--tx ballast-launch] [--log-level info]
//! ```
//!
//! A transaction with nothing pending (every default already live, no user data, no generated
//! value; the usual case on every boot but the first) is not an error: the server answers 422,
//! and settings-committer logs "nothing to commit" and succeeds. Any other refusal, or an API
//! server that cannot be reached, is an error carrying the server's message.
//!
//! # Current limitations
//!
//! * No retry: the unit is ordered after the API server, which answers as soon as it is up.
#![forbid(unsafe_code)]

pub mod error;

use error::{AnswerSnafu, RefusedSnafu, RequestSnafu};
pub use error::{Error, Result};
use snafu::ResultExt;
use std::path::Path;

/// Status the API server answers when a transaction holds nothing to commit.
const NOTHING_PENDING: u16 = 422;

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// The transaction held nothing (or did not exist).
    Nothing,
    /// The transaction was committed; these live keys changed value.
    Keys(Vec<String>),
}

/// Commits transaction `tx` through the API server at `socket_path`.
pub async fn commit(socket_path: &Path, tx: &str) -> Result<Committed> {
    let uri = format!("/tx/commit?tx={}", apiclient::encode_query_value(tx));
    let (status, body) = apiclient::raw_request(socket_path, &uri, "POST", None)
        .await
        .context(RequestSnafu { tx, socket_path })?;
    match status {
        200..=299 => {
            let keys: Vec<String> = serde_json::from_str(&body).context(AnswerSnafu { tx })?;
            Ok(Committed::Keys(keys))
        }
        NOTHING_PENDING => Ok(Committed::Nothing),
        _ => RefusedSnafu {
            tx,
            status,
            message: apiclient::server_message(&body),
        }
        .fail(),
    }
}

/// Commits `tx` and logs the outcome.
pub async fn run(socket_path: &Path, tx: &str) -> Result<Committed> {
    let committed = commit(socket_path, tx).await?;
    match &committed {
        Committed::Nothing => tracing::info!("nothing to commit in transaction '{tx}'"),
        Committed::Keys(keys) => tracing::info!(
            "committed transaction '{tx}': {} settings changed{}",
            keys.len(),
            if keys.is_empty() {
                String::new()
            } else {
                format!(" ({})", keys.join(", "))
            }
        ),
    }
    Ok(committed)
}
