//! Transactions: naming them, committing them, and throwing them away.
//!
//! Each `set` or `apply` stages its changes in a transaction of its own
//! (`apiclient-set-<16 random letters and digits>`), so that committing it never commits
//! somebody else's pending changes, and discards it again if anything goes wrong.

use crate::{encode_query_value, request, Result};
use rand::distr::Alphanumeric;
use rand::Rng;
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
}

/// Finishes a staged transaction as asked; returns the server's answer.
pub async fn finish(socket_path: &Path, transaction: &str, how: Finish) -> Result<String> {
    match how {
        Finish::CommitAndApply => commit_and_apply(socket_path, transaction).await,
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

/// Best-effort cleanup after a failure: discards the transaction and only logs if that fails
/// too, so the caller can report the original error.
pub(crate) async fn discard_after_failure(socket_path: &Path, transaction: &str) {
    match discard(socket_path, transaction).await {
        Ok(_) => debug!("Discarded pending transaction {transaction}"),
        Err(e) => debug!("Could not discard pending transaction {transaction}: {e}"),
    }
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
    fn tx_query_is_appended() {
        assert_eq!(
            with_tx("/tx/commit_and_apply", "apiclient-set-abc"),
            "/tx/commit_and_apply?tx=apiclient-set-abc"
        );
    }
}
