//! # Background
//!
//! A FleetLock server (the protocol of the `fleetlock` crate, as Zincati speaks it) for
//! operators without one and for tests that need a real one: each group has N slots; a node
//! takes one with `POST /v1/pre-reboot` before it reboots into an update and gives it back with
//! `POST /v1/steady-state` once its new boot is healthy. A node that already holds a slot gets
//! it again (so a retried request is harmless); releasing a slot not held succeeds.
//!
//! The holders are kept in a JSON file, rewritten atomically (temporary file, fsync, rename,
//! fsync of the directory) before a request is answered, so a restarted server knows who holds
//! what.
//!
//! # Usage
//!
//! `fleetlock-server --listen 127.0.0.1:3333 --state /var/lib/fleetlock/state.json --slots 1`
//!
//! # Current limitations
//!
//! * Plain HTTP, no authentication: run it on a trusted network or behind a proxy.
//! * The slot count is the same for every group; a slot is never taken back from a node that
//!   disappeared (remove it from the file with the server stopped, or free it by posting
//!   steady-state with its id).
#![forbid(unsafe_code)]

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use fleetlock::{ErrorBody, LockRequest, PROTOCOL_HEADER, PROTOCOL_HEADER_VALUE};
use snafu::{ResultExt, Snafu};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Mutex;

/// Who holds the slots: group -> ids.
pub type Holders = BTreeMap<String, BTreeSet<String>>;

#[derive(Debug, Snafu)]
pub enum Error {
    #[snafu(display("Failed to read the lock state {}: {source}", path.display()))]
    ReadState {
        path: PathBuf,
        source: std::io::Error,
    },
    #[snafu(display("Lock state {} is not valid JSON ({source}); fix or remove it", path.display()))]
    ParseState {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[snafu(display("Failed to write the lock state {}: {source}", path.display()))]
    WriteState {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The lock table and its file.
pub struct Locks {
    path: PathBuf,
    slots: usize,
    holders: Mutex<Holders>,
}

impl Locks {
    /// Loads the state file (an absent file is an empty table).
    pub fn open(path: &Path, slots: usize) -> Result<Locks, Error> {
        let holders = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).context(ParseStateSnafu { path })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Holders::new(),
            Err(source) => {
                return Err(Error::ReadState {
                    path: path.into(),
                    source,
                })
            }
        };
        Ok(Locks {
            path: path.to_path_buf(),
            slots,
            holders: Mutex::new(holders),
        })
    }

    /// Who holds what now.
    pub async fn holders(&self) -> Holders {
        self.holders.lock().await.clone()
    }
}

/// Serves both routes on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, locks: Arc<Locks>) -> std::io::Result<()> {
    axum::serve(listener, router(locks)).await
}

/// The router serving both routes over `locks`.
pub fn router(locks: Arc<Locks>) -> Router {
    Router::new()
        .route(fleetlock::PRE_REBOOT_PATH, post(pre_reboot))
        .route(fleetlock::STEADY_STATE_PATH, post(steady_state))
        .with_state(locks)
}

fn refuse(status: StatusCode, kind: &str, value: String) -> Response {
    (
        status,
        Json(ErrorBody {
            kind: kind.to_string(),
            value,
        }),
    )
        .into_response()
}

/// Checks the protocol header and reads the body; a refusal is a 400 saying what is wrong.
fn parse(headers: &HeaderMap, body: &[u8]) -> Result<LockRequest, Box<Response>> {
    if headers.get(PROTOCOL_HEADER).and_then(|v| v.to_str().ok()) != Some(PROTOCOL_HEADER_VALUE) {
        return Err(Box::new(refuse(
            StatusCode::BAD_REQUEST,
            "missing_header",
            format!("the request must carry the header {PROTOCOL_HEADER}: {PROTOCOL_HEADER_VALUE}"),
        )));
    }
    let request: LockRequest = serde_json::from_slice(body).map_err(|e| {
        Box::new(refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the body must be {{\"client_params\": {{\"id\": ..., \"group\": ...}}}}: {e}"),
        ))
    })?;
    let params = &request.client_params;
    if params.id.is_empty() || params.group.is_empty() {
        return Err(Box::new(refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "id and group must not be empty".to_string(),
        )));
    }
    Ok(request)
}

async fn pre_reboot(
    State(locks): State<Arc<Locks>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request = match parse(&headers, &body) {
        Ok(r) => r,
        Err(refusal) => return *refusal,
    };
    let params = request.client_params;
    let mut holders = locks.holders.lock().await;
    let group = holders.entry(params.group.clone()).or_default();
    if group.contains(&params.id) {
        return StatusCode::OK.into_response();
    }
    if group.len() >= locks.slots {
        let held_by: Vec<&str> = group.iter().map(String::as_str).collect();
        return refuse(
            StatusCode::CONFLICT,
            "failed_lock",
            format!(
                "all {} slot(s) of group '{}' are held (by {})",
                locks.slots,
                params.group,
                held_by.join(", ")
            ),
        );
    }
    group.insert(params.id.clone());
    let saved = save(&locks.path, &holders);
    answer_after_save(
        saved,
        || {
            tracing::info!(id = %params.id, group = %params.group, "slot taken");
        },
        &mut holders,
        |h| {
            if let Some(g) = h.get_mut(&params.group) {
                g.remove(&params.id);
            }
        },
    )
}

async fn steady_state(
    State(locks): State<Arc<Locks>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request = match parse(&headers, &body) {
        Ok(r) => r,
        Err(refusal) => return *refusal,
    };
    let params = request.client_params;
    let mut holders = locks.holders.lock().await;
    let removed = holders
        .get_mut(&params.group)
        .is_some_and(|g| g.remove(&params.id));
    if !removed {
        return StatusCode::OK.into_response();
    }
    holders.retain(|_, ids| !ids.is_empty());
    let saved = save(&locks.path, &holders);
    answer_after_save(
        saved,
        || {
            tracing::info!(id = %params.id, group = %params.group, "slot given back");
        },
        &mut holders,
        |h| {
            h.entry(params.group.clone())
                .or_default()
                .insert(params.id.clone());
        },
    )
}

/// 200 when the new table is on disk; otherwise undoes the change in memory and answers 500.
fn answer_after_save(
    saved: Result<(), Error>,
    log: impl FnOnce(),
    holders: &mut Holders,
    undo: impl FnOnce(&mut Holders),
) -> Response {
    match saved {
        Ok(()) => {
            log();
            StatusCode::OK.into_response()
        }
        Err(e) => {
            undo(holders);
            tracing::error!("{e}");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "state_not_saved",
                e.to_string(),
            )
        }
    }
}

/// Writes the table atomically: temporary file, fsync, rename, fsync of the directory.
fn save(path: &Path, holders: &Holders) -> Result<(), Error> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let write = || -> std::io::Result<()> {
        let mut file = tempfile_in(dir)?;
        file.1
            .write_all(&serde_json::to_vec_pretty(holders).unwrap_or_default())?;
        file.1.sync_all()?;
        std::fs::rename(&file.0, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().context(WriteStateSnafu { path })
}

/// A new file beside the state file, named after this process.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let path = dir.join(format!(".fleetlock-state.{}.tmp", std::process::id()));
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}
