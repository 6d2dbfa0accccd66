//! Transactions: naming them, committing them, and throwing them away.
//!
//! Each `set` or `apply` stages its changes in a transaction of its own
//! (`apiclient-set-<16 random letters and digits>`), so that committing it never commits
//! somebody else's pending changes, and discards it again if anything goes wrong.

use crate::{encode_query_value, request, Error, Result};
use rand::distr::Alphanumeric;
use rand::Rng;
use std::future::Future;
use std::path::Path;
use tracing::debug;

/// Length of the random part of transaction names.
const RANDOM_LEN: usize = 16;

/// Returns 16 random ASCII letters and digits.
pub fn rando() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(RANDOM_LEN)
        .map(char::from)
        .collect()
}

/// Returns a fresh transaction name `apiclient-<purpose>-<random>`.
pub fn transaction_name(purpose: &str) -> String {
    format!("apiclient-{purpose}-{}", rando())
}

/// URI of `path` with `?tx=<transaction>` appended.
pub fn with_tx(path: &str, transaction: &str) -> String {
    format!("{path}?tx={}", encode_query_value(transaction))
}

/// Commits the transaction and applies the changed settings to the system; returns the server's
/// response body.
pub async fn commit_and_apply(socket_path: impl AsRef<Path>, transaction: &str) -> Result<String> {
    let uri = with_tx("/tx/commit_and_apply", transaction);
    request(socket_path, &uri, "POST", None).await
}

/// How a `set` or `apply` ends once its changes are staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Commit and apply; the answer is the list of changed keys.
    CommitAndApply,
    /// Ask the server what committing would do, then discard the transaction; the answer is
    /// the server's preview document (see `POST /tx/dry-run`).
    DryRun,
    /// Commit and apply provisionally (`POST /tx/provisional`): the server reverts the change
    /// unless `apiclient confirm` comes within this many seconds. The answer is the server's
    /// [`api_types::provisional::Provisional`] document. A server without try mode (404) gets
    /// no commit at all: the transaction is discarded, so nothing changes without its safety
    /// net.
    Try { timeout_seconds: u64 },
}

/// Finishes a staged transaction as asked; returns the server's answer.
pub async fn finish(socket_path: &Path, transaction: &str, how: Finish) -> Result<String> {
    match how {
        Finish::CommitAndApply => commit_and_apply(socket_path, transaction).await,
        Finish::Try { timeout_seconds } => {
            let uri = format!(
                "{}&timeout={timeout_seconds}s",
                with_tx(api_types::provisional::PATH, transaction)
            );
            request(socket_path, &uri, "POST", None).await
        }
        Finish::DryRun => {
            let uri = with_tx("/tx/dry-run", transaction);
            let answer = request(socket_path, &uri, "POST", None).await;
            // A preview never leaves its changes behind, whatever the answer.
            discard_after_failure(socket_path, transaction).await;
            answer
        }
    }
}

/// Deletes the pending changes of the transaction; returns the server's response body.
pub async fn discard(socket_path: impl AsRef<Path>, transaction: &str) -> Result<String> {
    let uri = with_tx("/tx", transaction);
    request(socket_path, &uri, "DELETE", None).await
}

/// What `DELETE /tx` said it removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discarded {
    /// These pending keys were thrown away.
    Keys(Vec<String>),
    /// The transaction held nothing (any more): there was nothing to throw away.
    Nothing,
    /// The answer did not list the removed keys, so what happened is not known.
    Unknown,
}

impl Discarded {
    /// Reads the answer of `DELETE /tx`: a JSON array of the removed keys (Ballast's and
    /// Bottlerocket's shape).
    pub fn from_answer(body: &str) -> Discarded {
        match serde_json::from_str::<Vec<String>>(body) {
            Ok(keys) if keys.is_empty() => Discarded::Nothing,
            Ok(keys) => Discarded::Keys(keys),
            Err(_) => Discarded::Unknown,
        }
    }
}

/// Best-effort cleanup after a failure: discards the transaction and only logs if that fails
/// too, so the caller can report the original error. The log says what the server reports it
/// removed, never more; `None` when the DELETE itself failed.
pub(crate) async fn discard_after_failure(
    socket_path: &Path,
    transaction: &str,
) -> Option<Discarded> {
    match discard(socket_path, transaction).await {
        Ok(body) => {
            let found = Discarded::from_answer(&body);
            match &found {
                Discarded::Keys(keys) => debug!(
                    "Discarded pending transaction {transaction} ({})",
                    keys.join(", ")
                ),
                Discarded::Nothing => {
                    debug!("Transaction {transaction} had nothing pending; nothing was discarded")
                }
                Discarded::Unknown => debug!(
                    "Asked the server to discard transaction {transaction}; its answer does not \
                     say what it removed"
                ),
            }
            Some(found)
        }
        Err(e) => {
            debug!("Could not discard pending transaction {transaction}: {e}");
            None
        }
    }
}

/// Stages changes with `stage` (PATCHes into `transaction`), then finishes the transaction as
/// asked; returns the server's answer. When anything fails after the server was reached, the
/// transaction is discarded so nothing half-done stays pending. When the commit answered 5xx
/// but nothing was left to discard, the commit did happen and only applying failed: the error
/// says so ([`Error::CommittedNotApplied`]) instead of implying that nothing changed.
pub(crate) async fn stage_and_finish<F>(
    socket_path: &Path,
    transaction: &str,
    how: Finish,
    stage: F,
) -> Result<String>
where
    F: Future<Output = Result<()>>,
{
    if let Err(e) = stage.await {
        // If we never reached the server there is nothing to clean up.
        if !e.is_connect_failure() {
            discard_after_failure(socket_path, transaction).await;
        }
        return Err(e);
    }
    let e = match finish(socket_path, transaction, how).await {
        Ok(answer) => return Ok(answer),
        Err(e) if e.is_connect_failure() => return Err(e),
        Err(e) => e,
    };
    let found = discard_after_failure(socket_path, transaction).await;
    let server_error = e.status().is_some_and(|status| status >= 500);
    if how == Finish::CommitAndApply && server_error && found == Some(Discarded::Nothing) {
        return Err(Error::CommittedNotApplied {
            transaction: transaction.to_string(),
            source: Box::new(e),
        });
    }
    Err(e)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn names_are_random_and_alphanumeric() {
        let a = transaction_name("set");
        let b = transaction_name("set");
        assert_ne!(a, b);
        let random = a.strip_prefix("apiclient-set-").unwrap();
        assert_eq!(random.len(), RANDOM_LEN);
        assert!(random.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn delete_answers_say_what_was_discarded() {
        assert_eq!(
            Discarded::from_answer(r#"["settings.motd"]"#),
            Discarded::Keys(vec!["settings.motd".to_string()])
        );
        assert_eq!(Discarded::from_answer("[]"), Discarded::Nothing);
        assert_eq!(Discarded::from_answer(""), Discarded::Unknown);
        assert_eq!(Discarded::from_answer(r#"{"a":1}"#), Discarded::Unknown);
    }

    #[test]
    fn a_try_names_its_timeout_in_seconds() {
        // The URI the server parses: a timeout it reads with the same parser.
        let uri = format!(
            "{}&timeout={}s",
            with_tx(api_types::provisional::PATH, "t"),
            120
        );
        assert_eq!(uri, "/tx/provisional?tx=t&timeout=120s");
        assert_eq!(api_types::provisional::parse_timeout("120s"), Ok(120));
    }

    #[test]
    fn tx_query_is_appended() {
        assert_eq!(
            with_tx("/tx/commit_and_apply", "apiclient-set-abc"),
            "/tx/commit_and_apply?tx=apiclient-set-abc"
        );
    }
}
