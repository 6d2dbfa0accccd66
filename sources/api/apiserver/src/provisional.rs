//! Try-mode settings: a change that is committed and applied like any other, but reverted by
//! the server itself unless `POST /tx/confirm` comes before its deadline.
//!
//! # Where the state lives
//!
//! A pending try is one record ([`Record`]) stored in the datastore under
//! [`constants::PROVISIONAL_KEY`], outside `settings`: the transaction, every key the try
//! changed with its previous value (or none) and its new value, the start and the deadline, the
//! boot it was made in and who asked. The record is written **in the same commit** as the
//! settings it describes ([`datastore::DataStore::commit_values`], which also drops the
//! staged transaction), so a crash leaves either the change with its safety net or neither;
//! never a change that nothing will revert. Confirming removes the record, reverting restores
//! the old values and removes the record, each again in one commit. Nothing about a try is
//! kept only in memory.
//!
//! # The timer and the boot
//!
//! [`run_timer`] is a task of the server that sleeps until the deadline of the record it
//! finds in the datastore (or until woken by a new try, a confirm or an undo) and then reverts
//! and applies the old values through the same renderer queue a commit uses. The deadline is
//! kept twice: as wall-clock time for people, and as `CLOCK_BOOTTIME` milliseconds for the
//! timer, which NTP steps do not move and which keeps counting across a server restart in the
//! same boot. A restarted server therefore re-arms the timer from the datastore.
//!
//! A reboot while provisional reverts: the record holds the boot id
//! ([`constants::BOOT_ID_FILE`]) it was made in, and [`revert_from_earlier_boot`] runs when the
//! server starts, before it binds its socket. Found a record of another boot, it commits the
//! old values right there, without applying (the boot's settings-applier renders everything
//! later in the boot). Because no client can reach the server yet, no acknowledged write can be
//! lost to it; and because it is an ordinary commit, the launch transaction's yielding commit
//! (see the crate documentation) treats it like a user's: a default staged earlier by
//! storewolf does not replace a restored value, user data staged later does, as on every boot.
//!
//! # Rules
//!
//! - One try at a time: a second `POST /tx/provisional` while one is pending is a 409 that
//!   names the pending one and its deadline (extending a try silently would let an operator
//!   believe a second change has its own safety net).
//! - A try is refused (409) while the launch transaction is still pending, so the boot's own
//!   commit never lands in the middle of a try.
//! - A plain commit of a key that is part of a pending try takes that key out of the try: the
//!   revert restores only keys whose live value is still the one the try gave them (compared by
//!   value), so a deliberate later change is never undone by a timer.
//! - A confirm after the deadline is a 409: the revert is under way.
//! - Every start, confirm and revert is in the audit trail: the routes through the audit layer,
//!   the automatic reverts as entries of their own whose caller's program is
//!   `apiserver (try-mode timeout)`, `apiserver (try-mode revert at boot)` or
//!   `apiserver (try-mode health check failed: CHECK REASON)`; the settings history records
//!   the same caller with the revert's commit.
//!
//! # Health checks
//!
//! While a try is pending, the timer also evaluates the node's health checks
//! (`settings.health`, with the [`health`] crate: `systemctl is-active` of each unit, an HTTP
//! GET of each probe) every [`TryMode::health_interval`]. A check that fails on two
//! evaluations in a row (one failure may be a service restarting for the try itself) reverts
//! the try at once, and the revert names the failed checks (log, audit trail, history). The
//! checks are the live ones, so a try that changes `settings.health` is judged by its own
//! checks.

use crate::audit::{AuditLog, Changes};
use crate::error::ApiError;
use crate::server::{AppState, SharedStore};
use api_types::audit::{AuditEntry, Caller};
use api_types::provisional::{Provisional, ProvisionalChange};
use axum::http::StatusCode;
use datastore::{Committed, DataStore, Key, KeyType};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The transaction name a confirm is committed under (shown in `GET /history`).
pub const CONFIRM_TX: &str = "try-confirm";
/// The transaction name a revert is committed under.
pub const REVERT_TX: &str = "try-revert";
/// The program named in the audit entry of a revert at the deadline.
pub const TIMEOUT_CALLER: &str = "apiserver (try-mode timeout)";
/// The program named in the audit entry of a revert at start after a reboot.
pub const BOOT_CALLER: &str = "apiserver (try-mode revert at boot)";
/// The program named in the audit entry of a revert for failed health checks; the failures
/// follow it.
pub const HEALTH_CALLER: &str = "apiserver (try-mode health check failed";
/// How often a pending try looks at the health checks unless told otherwise.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// How many evaluations in a row must fail before a try is reverted.
pub const HEALTH_STRIKES: u32 = 2;
/// How long the timer waits before trying a failed revert again.
const RETRY_DELAY: Duration = Duration::from_secs(5);

/// One key of a try as stored: the JSON texts before and after, `None` when absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordChange {
    pub key: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// A pending try as the datastore keeps it under [`constants::PROVISIONAL_KEY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub transaction: String,
    pub changes: Vec<RecordChange>,
    /// RFC 3339, UTC.
    pub started: String,
    /// RFC 3339, UTC; for people, the timer uses `deadline_boottime_ms`.
    pub deadline: String,
    pub timeout_seconds: u64,
    /// The boot the try was made in.
    pub boot_id: String,
    /// `CLOCK_BOOTTIME` of the deadline, in milliseconds (meaningful in `boot_id` only).
    pub deadline_boottime_ms: u64,
    pub caller: Option<Caller>,
}

/// What the server needs to run tries: the boot it runs in and the timer's wake-up call.
#[derive(Debug, Clone)]
pub struct TryMode {
    pub boot_id: Arc<String>,
    wake: Arc<Notify>,
    /// How often the health checks are evaluated while a try is pending.
    pub health_interval: Duration,
}

impl TryMode {
    /// Reads the boot id from `boot_id_file`; when it cannot be read, the id is "unknown" (and
    /// a reboot is then not recognised: the timer still reverts at the deadline).
    pub fn new(boot_id_file: &Path) -> TryMode {
        TryMode {
            boot_id: Arc::new(read_boot_id(boot_id_file)),
            wake: Arc::new(Notify::new()),
            health_interval: DEFAULT_HEALTH_INTERVAL,
        }
    }

    /// Evaluates the health checks every `interval` while a try is pending.
    pub fn with_health_interval(mut self, interval: Duration) -> TryMode {
        self.health_interval = interval;
        self
    }

    /// Tells the timer that the record may have changed.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

fn read_boot_id(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(id) if !id.trim().is_empty() => id.trim().to_string(),
        Ok(_) | Err(_) => {
            tracing::warn!(
                "cannot read the boot id from {}; a try-mode change will not be reverted by a reboot",
                path.display()
            );
            "unknown".to_string()
        }
    }
}

/// Milliseconds of `CLOCK_BOOTTIME` (time since boot, suspend included).
fn boottime_ms() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(t) => u64::try_from(t.tv_sec())
            .unwrap_or(0)
            .saturating_mul(1000)
            .saturating_add(u64::try_from(t.tv_nsec()).unwrap_or(0) / 1_000_000),
        Err(e) => {
            tracing::error!("cannot read CLOCK_BOOTTIME: {e}");
            0
        }
    }
}

fn provisional_key() -> Key {
    Key::new(KeyType::Data, constants::PROVISIONAL_KEY)
        .expect("the provisional key follows the key grammar")
}

/// Whether `key` is the server's own bookkeeping, which is never rendered nor shown as a
/// setting.
pub fn is_internal(key: &str) -> bool {
    key == constants::PROVISIONAL_KEY
}

/// The pending try, if any.
pub fn load(ds: &(dyn DataStore + Send + Sync)) -> Result<Option<Record>, ApiError> {
    let Some(text) = ds.get_key(&provisional_key(), &Committed::Live)? else {
        return Ok(None);
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        tracing::error!("the stored try-mode record is unreadable: {e}: {text}");
        ApiError::internal(format!(
            "the stored try-mode record is unreadable ({e}); delete it with `apiclient undo` of the commit that made it"
        ))
    })
}

impl Record {
    /// Milliseconds until the deadline, 0 once it has passed (or when the record is of
    /// another boot).
    fn remaining_ms(&self, boot_id: &str) -> u64 {
        if self.boot_id != boot_id {
            return 0;
        }
        self.deadline_boottime_ms.saturating_sub(boottime_ms())
    }

    /// The document `GET /tx/provisional` answers with: secret values replaced.
    pub fn document(&self, boot_id: &str) -> Provisional {
        let changes = self
            .changes
            .iter()
            .map(|c| {
                let redacted = models::secret::is_secret(&c.key);
                let shown = |text: &Option<String>| {
                    text.as_ref().map(|t| {
                        if redacted {
                            serde_json::Value::from(api_types::audit::REDACTED)
                        } else {
                            serde_json::from_str(t)
                                .unwrap_or_else(|_| serde_json::Value::from(t.as_str()))
                        }
                    })
                };
                ProvisionalChange {
                    key: c.key.clone(),
                    old: shown(&c.old),
                    new: shown(&c.new),
                    redacted,
                }
            })
            .collect();
        Provisional {
            transaction: self.transaction.clone(),
            changes,
            started: self.started.clone(),
            deadline: self.deadline.clone(),
            timeout_seconds: self.timeout_seconds,
            remaining_seconds: self.remaining_ms(boot_id).div_ceil(1000),
            caller: self.caller.clone(),
        }
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        self.changes.iter().map(|c| c.key.as_str())
    }

    fn pending_sentence(&self) -> String {
        format!(
            "a try is already pending (transaction {}, keys {}, reverted at {} unless confirmed); \
             run `apiclient confirm` to keep it or wait for its revert, then try again",
            self.transaction,
            self.keys().collect::<Vec<_>>().join(", "),
            self.deadline
        )
    }
}

fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, message)
}

fn serialize(record: &Record) -> Result<String, ApiError> {
    serde_json::to_string(record)
        .map_err(|e| ApiError::internal(format!("cannot write the try-mode record: {e}")))
}

/// Commits transaction `tx` provisionally, with its revert due in `timeout_seconds`: the new
/// values and the record in one commit, which also drops the transaction. Answers with the
/// record; the caller applies its keys.
pub fn start(
    ds: &mut (dyn DataStore + Send + Sync),
    tx: &str,
    timeout_seconds: u64,
    boot_id: &str,
    caller: Option<Caller>,
) -> Result<Record, ApiError> {
    if let Some(pending) = load(ds)? {
        return Err(conflict(pending.pending_sentence()));
    }
    if ds.list_transactions()?.contains(constants::LAUNCH_TX) {
        return Err(conflict(format!(
            "the boot's settings (transaction {}) are not committed yet; try again once the node \
             has reached {}",
            constants::LAUNCH_TX,
            constants::CONFIGURED_TARGET
        )));
    }
    let pending = ds.get_prefix("", &Committed::Pending { tx: tx.to_string() })?;
    if pending.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("transaction '{tx}' has no pending settings to try"),
        ));
    }
    let mut changes = Vec::new();
    for (key, new) in &pending {
        let old = ds.get_key(key, &Committed::Live)?;
        if old.as_ref() != Some(new) {
            changes.push(RecordChange {
                key: key.name().to_string(),
                old,
                new: Some(new.clone()),
            });
        }
    }
    if changes.is_empty() {
        ds.delete_transaction(tx)?;
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "every setting in transaction '{tx}' already has the value given; there is \
                 nothing to try (the transaction was dropped)"
            ),
        ));
    }
    let now = jiff::Timestamp::now();
    let timeout = i64::try_from(timeout_seconds).unwrap_or(i64::MAX);
    let deadline = now
        .checked_add(jiff::SignedDuration::from_secs(timeout))
        .map_err(|e| ApiError::bad_request(format!("the timeout is out of range: {e}")))?;
    let record = Record {
        transaction: tx.to_string(),
        changes,
        started: now.to_string(),
        deadline: deadline.to_string(),
        timeout_seconds,
        boot_id: boot_id.to_string(),
        deadline_boottime_ms: boottime_ms().saturating_add(timeout_seconds.saturating_mul(1000)),
        caller,
    };
    let mut values: BTreeMap<Key, Option<String>> = pending
        .into_iter()
        .map(|(key, value)| (key, Some(value)))
        .collect();
    values.insert(provisional_key(), Some(serialize(&record)?));
    ds.commit_values(tx, &values, Some(tx), record.caller.as_ref())?;
    tracing::info!(
        tx,
        keys = record.changes.len(),
        deadline = record.deadline,
        "committed a try-mode change; it is reverted unless confirmed"
    );
    Ok(record)
}

/// Keeps the pending try: removes its record in a commit of its own. Refused (409) when none
/// is pending or its deadline has passed.
pub fn confirm(
    ds: &mut (dyn DataStore + Send + Sync),
    boot_id: &str,
    caller: Option<&Caller>,
) -> Result<Record, ApiError> {
    let Some(record) = load(ds)? else {
        return Err(conflict(
            "no try is pending, so there is nothing to confirm (a try not confirmed in time has \
             been reverted: see `apiclient history`)",
        ));
    };
    if record.remaining_ms(boot_id) == 0 {
        return Err(conflict(format!(
            "the try of transaction {} expired at {} and is being reverted; set the values again \
             to keep them",
            record.transaction, record.deadline
        )));
    }
    let values = BTreeMap::from([(provisional_key(), None)]);
    ds.commit_values(CONFIRM_TX, &values, None, caller)?;
    tracing::info!(tx = record.transaction, "try-mode change confirmed");
    Ok(record)
}

/// Reverts the pending try, if any: every key whose live value is still the one the try gave
/// it gets its old value back (or is removed), and the record goes, in one commit. Returns the
/// record and the keys restored, with their restored values. `caller` (the server, named by
/// why it reverts) is recorded in the history.
pub fn revert(
    ds: &mut (dyn DataStore + Send + Sync),
    caller: &Caller,
) -> Result<Option<(Record, Vec<RecordChange>)>, ApiError> {
    let Some(record) = load(ds)? else {
        return Ok(None);
    };
    let mut values: BTreeMap<Key, Option<String>> = BTreeMap::new();
    let mut restored = Vec::new();
    for change in &record.changes {
        let key = Key::new(KeyType::Data, &change.key)?;
        let live = ds.get_key(&key, &Committed::Live)?;
        if live == change.new {
            values.insert(key, change.old.clone());
            restored.push(change.clone());
        } else {
            tracing::info!(
                key = change.key,
                "not reverting a key that was committed again during its try"
            );
        }
    }
    values.insert(provisional_key(), None);
    ds.commit_values(REVERT_TX, &values, None, Some(caller))?;
    tracing::warn!(
        tx = record.transaction,
        keys = restored.len(),
        "reverted a try-mode change: {}",
        caller.program.as_deref().unwrap_or("apiserver")
    );
    Ok(Some((record, restored)))
}

/// At start, before the socket exists: reverts a try made in an earlier boot (committed only;
/// the boot's settings-applier renders everything). Records the revert in the audit trail.
pub fn revert_from_earlier_boot(
    store: &SharedStore,
    try_mode: &TryMode,
    audit: &AuditLog,
) -> Result<(), ApiError> {
    let mut guard = store.write().unwrap_or_else(|p| p.into_inner());
    let Some(record) = load(&**guard)? else {
        return Ok(());
    };
    if record.boot_id == *try_mode.boot_id {
        tracing::info!(
            tx = record.transaction,
            deadline = record.deadline,
            "a try-mode change of this boot is pending; its revert is re-armed"
        );
        return Ok(());
    }
    tracing::warn!(
        tx = record.transaction,
        "the node rebooted while a try-mode change was pending; reverting it before serving"
    );
    let caller = server_caller(BOOT_CALLER);
    let outcome = revert(&mut **guard, &caller);
    audit_revert(audit, caller, &outcome);
    outcome.map(|_| ())
}

/// The server itself as the caller of a change it makes on its own, `program` saying why.
pub fn server_caller(program: &str) -> Caller {
    use std::os::unix::fs::MetadataExt;
    let (uid, gid) = std::fs::metadata("/proc/self")
        .map(|m| (m.uid(), m.gid()))
        .unwrap_or((0, 0));
    Caller {
        uid,
        gid,
        pid: Some(std::process::id()),
        program: Some(program.to_string()),
    }
}

/// The audit entry of a revert the server made by itself.
fn audit_revert(
    audit: &AuditLog,
    caller: Caller,
    outcome: &Result<Option<(Record, Vec<RecordChange>)>, ApiError>,
) {
    let (changes, status) = match outcome {
        Ok(Some((record, restored))) => {
            let mut changes =
                Changes::with_values(restored.iter().map(|c| (c.key.as_str(), c.old.as_deref())));
            // Keys the try changed that a later commit took over are listed without a value.
            let kept = record
                .keys()
                .filter(|k| !restored.iter().any(|c| c.key == *k));
            changes.changes.extend(Changes::keys(kept).changes);
            (changes, StatusCode::OK)
        }
        Ok(None) => return,
        Err(e) => (Changes::default(), e.status),
    };
    let path = match outcome {
        Ok(Some((record, _))) => {
            format!("{}?tx={}", api_types::provisional::PATH, record.transaction)
        }
        _ => api_types::provisional::PATH.to_string(),
    };
    audit.append(&AuditEntry {
        time: jiff::Timestamp::now().to_string(),
        caller: Some(caller),
        method: "REVERT".to_string(),
        path,
        changes: changes.changes,
        changes_omitted: changes.omitted,
        status: status.as_u16(),
    });
}

/// The timer: sleeps until the pending try's deadline (or until woken), then reverts it and
/// applies the restored keys. Runs for the life of the server.
pub async fn run_timer(state: AppState) {
    // The try being watched and how many health evaluations in a row failed for it.
    let mut strikes: (Option<(String, String)>, u32) = (None, 0);
    loop {
        let loaded = crate::server::read(&state, load).await;
        let record = match loaded {
            Ok(record) => record,
            Err(e) => {
                tracing::error!("cannot read the try-mode record: {}", e.message);
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
        };
        let Some(record) = record else {
            state.try_mode.wake.notified().await;
            continue;
        };
        let remaining = Duration::from_millis(record.remaining_ms(&state.try_mode.boot_id));
        let mut caller = server_caller(TIMEOUT_CALLER);
        if !remaining.is_zero() {
            let nap = remaining.min(state.try_mode.health_interval);
            tokio::select! {
                () = tokio::time::sleep(nap) => {}
                () = state.try_mode.wake.notified() => continue,
            }
            if nap < remaining {
                // Not the deadline yet: is the node still healthy?
                let this = Some((record.transaction.clone(), record.started.clone()));
                if strikes.0 != this {
                    strikes = (this, 0);
                }
                match health_failures(&state).await {
                    None => {
                        strikes.1 = 0;
                        continue;
                    }
                    Some(summary) => {
                        strikes.1 += 1;
                        tracing::warn!(
                            tx = record.transaction,
                            strike = strikes.1,
                            "a health check fails during a try: {summary}"
                        );
                        if strikes.1 < HEALTH_STRIKES {
                            continue;
                        }
                        caller = server_caller(&format!("{HEALTH_CALLER}: {summary})"));
                    }
                }
            }
        }
        let store = state.store.clone();
        let reverter = caller.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut guard = store.write().unwrap_or_else(|p| p.into_inner());
            // Confirmed or replaced while the timer slept: look again.
            match load(&**guard)? {
                Some(now) if now == record => revert(&mut **guard, &reverter),
                _ => Ok(None),
            }
        })
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("revert task failed: {e}"))));
        audit_revert(&state.audit, caller, &outcome);
        match outcome {
            Ok(Some((_, restored))) => {
                let keys: Vec<String> = restored.into_iter().map(|c| c.key).collect();
                if !keys.is_empty() {
                    if let Err(e) = state.applier.apply(Some(keys)) {
                        tracing::error!("cannot apply the reverted settings: {}", e.message);
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(
                    "reverting the try-mode change failed: {}; trying again in {} s",
                    e.message,
                    RETRY_DELAY.as_secs()
                );
                tokio::time::sleep(RETRY_DELAY).await;
            }
        }
    }
}

/// The failed health checks as one line (`unit x.service is failed; probe app answered 503`),
/// or `None` when every check passes (or none is set). Settings that do not parse count as
/// no checks: the model refused them when they were set, so this is only an older store.
async fn health_failures(state: &AppState) -> Option<String> {
    let tree = crate::server::read(state, |ds| {
        crate::controller::get_settings_prefix(ds, constants::HEALTH_KEY, &Committed::Live)
    })
    .await
    .ok()?;
    let settings =
        match models::parse_settings(&serde_json::json!({ "health": tree.get("health")? })) {
            Ok(settings) => settings.health?,
            Err(e) => {
                tracing::warn!("settings.health cannot be read, so no health check runs: {e}");
                return None;
            }
        };
    // Command probes reach the host containers where `GET /exec` does.
    let checker = health::Checker {
        systemctl: state.node.systemctl.argv().to_vec(),
        env: Vec::new(),
        containerd: health::HostContainerd {
            socket: state.exec.socket.clone(),
            namespace: state.exec.namespace.clone(),
        },
    };
    let report = tokio::task::spawn_blocking(move || checker.evaluate(&settings))
        .await
        .ok()?;
    if report.healthy() {
        return None;
    }
    let failures: Vec<String> = report.failures.iter().map(|f| f.to_string()).collect();
    Some(failures.join("; "))
}

/// The keys a try's start lists in the audit trail: the new values (secret ones left out).
pub fn start_changes(record: &Record) -> Changes {
    Changes::with_values(
        record
            .changes
            .iter()
            .map(|c| (c.key.as_str(), c.new.as_deref())),
    )
}

/// The keys a confirm lists in the audit trail.
pub fn confirm_changes(record: &Record) -> Changes {
    Changes::keys(record.keys())
}
