//! Group commit: commit requests that arrive while another commit is being flushed wait for it
//! together and are then committed as one batch, sharing one journal write and one flush of the
//! datastore ([`datastore::DataStore::commit_transactions`]). Each commit is still all or
//! nothing and answered only once it is durable; what changes is that eight clients committing
//! at once pay for about two flushes instead of eight.
//!
//! How: a request puts its transaction in the queue and a blocking task takes the store's write
//! lock. Whichever task gets the lock first commits everything queued by then; tasks that find
//! the queue empty (their transaction went with an earlier batch) just return. While one batch
//! holds the lock, the next one gathers.
//!
//! The boot's launch transaction is committed alone, with the yielding commit (see the crate
//! documentation).

use crate::controller;
use crate::error::ApiError;
use crate::server::SharedStore;
use api_types::audit::Caller;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The keys a commit changed, or `None` when the transaction had nothing pending.
pub type Outcome = Result<Option<Vec<String>>, ApiError>;

/// Commits waiting for the next batch.
#[derive(Debug, Default)]
pub struct CommitQueue {
    waiting: Mutex<Vec<Waiter>>,
}

#[derive(Debug)]
struct Waiter {
    tx: String,
    caller: Option<Caller>,
    answer: oneshot::Sender<Outcome>,
}

impl CommitQueue {
    pub fn new() -> Arc<CommitQueue> {
        Arc::new(CommitQueue::default())
    }

    fn take(&self) -> Vec<Waiter> {
        std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Commits transaction `tx` for `caller` (recorded in the history), batched with whatever
/// other commits are waiting.
pub async fn commit(
    store: &SharedStore,
    queue: &Arc<CommitQueue>,
    tx: String,
    caller: Option<Caller>,
) -> Outcome {
    let (answer, answered) = oneshot::channel();
    let alone = tx == constants::LAUNCH_TX;
    if !alone {
        queue
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Waiter {
                tx: tx.clone(),
                caller: caller.clone(),
                answer,
            });
    }
    let (store, queue) = (store.clone(), queue.clone());
    let task = tokio::task::spawn_blocking(move || {
        let mut guard = store.write().unwrap_or_else(|p| p.into_inner());
        if alone {
            return Some(controller::commit(&mut **guard, &tx, caller.as_ref()));
        }
        let batch = queue.take();
        if batch.is_empty() {
            return None;
        }
        let names: Vec<(&str, Option<&Caller>)> = batch
            .iter()
            .map(|w| (w.tx.as_str(), w.caller.as_ref()))
            .collect();
        let results = guard.commit_transactions(&names);
        drop(guard);
        for (waiter, result) in batch.into_iter().zip(results) {
            let outcome = match result {
                Ok(record) => Ok(Some(record.changes.into_iter().map(|c| c.key).collect())),
                Err(datastore::Error::EmptyTransaction { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            };
            let _ = waiter.answer.send(outcome);
        }
        None
    });
    match task.await {
        Ok(Some(outcome)) => outcome,
        Ok(None) => answered
            .await
            .unwrap_or_else(|_| Err(ApiError::internal("the commit task stopped unexpectedly"))),
        Err(e) => Err(ApiError::internal(format!("commit task failed: {e}"))),
    }
}
