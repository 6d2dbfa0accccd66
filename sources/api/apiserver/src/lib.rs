//! # Background
//!
//! The API server is the only way settings change on a Ballast node, and the way an operator
//! (or an update operator such as brupop) drives OS updates. It holds the datastore,
//! speaks HTTP/1.1 on a Unix socket (default `/run/api.sock`, mode 0660, group from
//! `--socket-gid`) and follows Bottlerocket's route names and JSON shapes, so scripts written for
//! Bottlerocket's `apiclient raw` keep working. It sits after the defaults step (storewolf) in the
//! boot order and before everything that reads settings.
//!
//! A change goes: `PATCH /settings?tx=T` (validated against the typed model in the `models`
//! crate; a bad value is a 400 naming the key and nothing is written) -> `POST
//! /tx/commit_and_apply?tx=T` (the datastore moves the transaction to live all or nothing and
//! records it in the settings history) -> the changed keys go to the renderer command, which
//! re-renders the affected files and restarts the affected services.
//!
//! # Usage
//!
//! `apiserver --datastore-path /var/lib/ballast/datastore/current --socket-path /run/api.sock
//! --socket-gid 274 --apply-command /usr/bin/thar-be-settings`. `GET /openapi.json` describes
//! every route; the document is generated from the same declarations that build the router.
//!
//! ## Updates
//!
//! The update routes keep Bottlerocket's names, states and status document (its thar-be-updates
//! program is folded into this server; see [`updates`] for the states, the status document and
//! the contract with the updater):
//!
//! | route                             | updater run                                      | allowed in        |
//! |-----------------------------------|--------------------------------------------------|-------------------|
//! | `GET /updates/status`             | `updog --json status` (first request only)       | any               |
//! | `POST /actions/refresh-updates`   | `updog --json check-update --all`                | any               |
//! | `POST /actions/prepare-update`    | `updog update-image --image V --progress-file F` | Available, Staged |
//! | `POST /actions/activate-update`   | `updog update-apply`                             | Staged            |
//! | `POST /actions/deactivate-update` | `updog update-revert`                            | Ready             |
//! | `POST /actions/reboot`            | `--reboot-command`                               | no action running |
//!
//! The actions answer 204 at once and run in the background; a state that does not allow one is
//! a 409, and any action (or a reboot) while another runs is a 423, each with a sentence saying
//! what to do. Flags: `--updater-command` (default `updog`; split on spaces, so leading
//! arguments such as `--log-level warn` may be added), `--updater-status-dir` (default
//! `/run/cache/ballast-updates`: the saved status and the progress file) and `--reboot-command`
//! (default `systemctl reboot`). An updater or reboot command that cannot be started is a 503
//! naming the program and the flag that sets it.
//!
//! Where this differs from Bottlerocket: error bodies are this server's JSON `{"error": ...}`
//! rather than plain text; `GET /updates/status` is never refused while an action runs (it
//! shows the action as `Running`, with `progress` for a prepare) and builds the first status
//! from the updater instead of answering 404; `exit_status` is null while running; and
//! `progress` and `failed_update` are our own fields.
//!
//! # Current limitations
//!
//! - `/exec`, `/report` and `/actions/ephemeral-storage` are not served yet.
//! - Applies run in the background; their outcome is only in the journal, not in the answer.
//! - There is no authentication beyond the socket's owner, group and mode.
//! - The server puts no time limit on an update action: an updater that hangs keeps the other
//!   update actions (and the reboot route) at 423 until it is killed or the server restarts.
//! - Update actions are serialized inside this process only; an updater run by hand at the same
//!   time relies on the updater's own lock. The status notices such changes at the next action
//!   or restart, not at once.
//! - `--updater-command` and `--reboot-command` are split on whitespace, without quoting.

pub mod apply;
pub mod controller;
pub mod error;
pub mod server;
pub mod updates;

use error::*;
use snafu::ResultExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub datastore_path: PathBuf,
    pub socket_path: PathBuf,
    pub socket_gid: Option<u32>,
    pub os_release: PathBuf,
    pub apply_command: Option<PathBuf>,
    /// The updater, its status directory and the reboot command.
    pub updates: updates::UpdatesConfig,
    /// Write a readiness line to /dev/kmsg (on a node; never in tests).
    pub kmsg_ready: bool,
}

/// Opens the datastore, listens on the socket and serves until SIGTERM or SIGINT.
pub async fn serve(config: ServerConfig) -> Result<()> {
    let store = open_store(&config.datastore_path)?;
    let state = server::AppState {
        store: Arc::new(RwLock::new(Box::new(store))),
        os_release: config.os_release.clone(),
        applier: apply::Applier::start(config.apply_command.clone(), config.socket_path.clone()),
        updates: updates::Updates::new(config.updates.clone()),
    };
    let (app, _) = server::router(state);
    let listener = bind(&config.socket_path, config.socket_gid)?;
    tracing::info!("serving the API on {}", config.socket_path.display());
    notify_ready();
    if config.kmsg_ready {
        announce_in_kernel_log(&config.socket_path);
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context(ServeSnafu)
}

/// Opens the datastore, waiting up to ten seconds for its lock: after a crash, a renderer the
/// old server was starting can hold the lock file for a moment (between its fork and exec).
fn open_store(path: &Path) -> Result<datastore::FilesystemDataStore> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match datastore::FilesystemDataStore::open(path) {
            Err(datastore::Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other.context(OpenDatastoreSnafu { path }),
        }
    }
}

/// Creates the listening socket with mode 0660 and, when asked, the given group.
pub fn bind(path: &Path, gid: Option<u32>) -> Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).context(SocketDirSnafu { path: dir })?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).context(RemoveSocketSnafu { path }),
    }
    let listener = tokio::net::UnixListener::bind(path).context(BindSnafu { path })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .context(SocketModeSnafu { path })?;
    if let Some(gid) = gid {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
            .context(SocketPermissionsSnafu { path })?;
    }
    Ok(listener)
}

/// Tells systemd (Type=notify) that the socket is ready, when started by systemd.
/// The line `dmesg` shows once the API answers; `cargo xtask bench boot` reads its timestamp.
pub const KMSG_READY: &str = "apiserver: API ready on";

fn announce_in_kernel_log(socket: &Path) {
    use std::io::Write;
    let line = format!("<6>{KMSG_READY} {}\n", socket.display());
    let written = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .and_then(|mut kmsg| kmsg.write_all(line.as_bytes()));
    if let Err(e) = written {
        tracing::warn!("cannot write to /dev/kmsg: {e}");
    }
}

fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot notify systemd: {e}");
            return;
        }
    };
    let bytes = path.as_encoded_bytes();
    let result = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|addr| sock.send_to_addr(b"READY=1", &addr))
    } else {
        sock.send_to(b"READY=1", &path)
    };
    if let Err(e) = result {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("shutting down");
}
