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
//! re-renders the affected files and restarts the affected services. Commits that arrive while
//! another is being flushed are committed together with one flush (see [`group_commit`]).
//!
//! The boot's launch transaction ([`constants::LAUNCH_TX`]: defaults, user data, generated
//! values) is committed by settings-committer after this server already answers, so a user's
//! commit can come first. Committing it, this server keeps every key that another commit
//! changed after the key was staged there (the datastore's
//! `commit_transaction_keeping_newer`): a boot value never replaces a value committed after it
//! was staged. Any other transaction commits all its keys; the last commit wins.
//!
//! # Usage
//!
//! `apiserver --datastore-path /var/lib/ballast/datastore/current --socket-path /run/api.sock
//! --socket-gid 274 --apply-command /usr/bin/thar-be-settings`. `GET /openapi.json` describes
//! every route; the document is generated from the same declarations that build the router,
//! then finished by [`openapi`]: every operation lists the refusals any route can give (400,
//! 413, and 500/503 where a handler touches the datastore or a program), `PATCH /settings`
//! takes a schema that requires at least one setting, and the "key=value" strings of
//! `PATCH /settings/keypair` get a pattern built from the settings schema. Parameter schemas
//! come from the rules' homes: transaction names from the datastore, key patterns and lengths
//! from `settings-key`. `tests/conformance.rs` holds the document against the server with
//! generated requests (seeded; `CONFORMANCE_SEED` replays another seed).
//!
//! ## Query parameters
//!
//! They follow Bottlerocket where a script could notice: a prefix selects within each part of
//! the model ([`controller::prefix_within`]; `/?prefix=os.v` keeps `variant_id` and
//! `version_id`, `/os?prefix=arch` keeps `arch`); an empty `?prefix=`, `?keys=` or `?names=` is
//! a 400; an unknown name in `?names=` a 404; `PATCH /settings` with `{}` a 204 that stages
//! nothing. Kept on purpose, with reasons in the README ("Where Ballast differs"): 405 for a
//! known path with another method, 400 for an unknown query parameter or an empty `?tx=`, and
//! a prefix naming no part of the model read as a settings prefix.
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
//! ## Logs
//!
//! `GET /logs` is the node's journal (Ballast's own route; see [`logs`]): journalctl is run
//! with an argument vector built from checked query parameters (unit, priority, since, until,
//! boot, grep, lines, follow) and its JSON lines become `api_types::logs::LogEntry`. A plain
//! answer gets 10 s and 16 MiB; `follow=true` streams `application/x-ndjson` until the client
//! leaves, and the journalctl child goes with the stream. Flags: `--journal-dir` (journalctl's
//! `--directory`; the system journal by default) and `--journalctl` (default `journalctl`).
//!
//! ## Audit
//!
//! Every request that may change something (any method but GET, HEAD and OPTIONS, except
//! `POST /tx/dry-run`), and `GET /support-bundle`, which hands out the node's state, is recorded once its answer is ready, whatever its status (see
//! [`audit`]): the caller's uid, gid and pid from the connection's `SO_PEERCRED` (read once per
//! connection in [`listen`] and put on each request as an extension) with the program from
//! `/proc/PID/comm`, the method and path (query values of unknown parameters replaced), the
//! keys the handler reports as a response extension ([`audit::Changes`]: staged keys with their
//! values, committed, dropped, applied or undone keys) with secret values left out
//! ([`models::secret`]), and the status. Entries go to a JSON-lines file beside the datastore
//! (`--audit-log`, default [`constants::AUDIT_LOG_NAME`] above `--datastore-path`), trimmed
//! before it exceeds `--audit-max-entries` (10,000) entries or 16 MiB, and to the journal as a
//! line starting `MESSAGE_ID=`[`constants::AUDIT_MESSAGE_ID`]. `GET /audit?since=&lines=`
//! answers with the newest entries. The line is written (one `write`, page cache) before the
//! answer leaves; `fdatasync` runs on a background thread, off the commit path.
//! ## The node's state
//!
//! `GET /units` (see [`units`]) runs `systemctl list-units --all --output=json` and answers
//! with every unit (`api_types::status::Unit`); each failed unit carries its 10 newest journal
//! entries, read with the same journal reader as `GET /logs`. `GET /status` (see
//! [`node_status`]) reads four parts at once: the units (counts and the failed ones), the A/B
//! boot state from `signpost status --json`, the running version from the os-release file and
//! the update status the server keeps. A part that cannot be read is `{"error": ...}` in its
//! place, never a failed request. Flags: `--systemctl` (default `systemctl`) and
//! `--signpost-command` (default `signpost`), both split on spaces like `--updater-command`.
//!
//! `GET /report/boot` (see [`boot_report`]) says where the boot's time went, from the same
//! `--systemctl`: the phases (firmware, loader, kernel, initrd, userspace, total) from the
//! manager's timestamps (`systemctl show`), null where systemd does not know one, and for
//! `apiserver.service` and `configured.target` (or `?target=UNIT`) the chain of units each
//! waited for, built like `systemd-analyze critical-chain` by following the `After=`
//! dependency that became active last, at most 32 units deep.
//!
//! `GET /report/cis?level=1|2&format=json|text` checks the node against the CIS Bottlerocket
//! Benchmark with the `cis` crate: the files under `--support-root` and unit states from
//! `--systemctl`. Level 1 by default, level 2 includes level 1; JSON by default
//! (`api_types::cis::CisReport`), or text for a person. Always a 200 once the query is valid: a
//! check that cannot read what it needs fails, and its evidence says why.
//!
//! ## Support bundle
//!
//! `GET /support-bundle` (see [`support_bundle`]) answers with a gzip-compressed tar archive:
//! the journal of the current boot, the `GET /status` and `GET /units` documents, the settings
//! and the settings history with every secret value replaced ([`models::secret::redact_tree`]),
//! the audit trail, mounts and their disk usage, network state, the kernel's command line,
//! version and log, and a `MANIFEST.json` with each part's size or the error that kept it out.
//! It is audited although it is a GET. `--support-root` (default `/`) is where `/proc`, `/etc`
//! and `/dev` are read.
//!
//! ## Try mode
//!
//! `POST /tx/provisional?tx=T&timeout=120s` commits and applies a transaction provisionally:
//! unless `POST /tx/confirm` comes before the deadline, the server restores the previous values
//! (removing keys that had none) and applies them; `GET /tx/provisional` shows the pending try
//! (404 when none), secret values replaced. The record of the try (keys, old and new values,
//! deadline, boot id, caller) is kept in the datastore under [`constants::PROVISIONAL_KEY`]
//! and committed in the same commit as the change; a timer task re-arms from it when the
//! server restarts, and a server that starts in another boot (`--boot-id-file`, default
//! [`constants::BOOT_ID_FILE`]) reverts it before binding its
//! socket. One try at a time (a second is a 409 naming the first); a key committed again
//! during its try is not reverted. While a try is pending, the server also evaluates
//! `settings.health` every `--health-interval` seconds with the `health` crate (units through
//! `--systemctl`, URL probes on loopback, command probes in host containers through the exec
//! socket and namespace) and reverts the try at once when they fail
//! [`provisional::HEALTH_STRIKES`] times running, naming the failed checks as the revert's
//! caller in the audit trail and the history. See [`provisional`].
//!
//! ## Exec
//!
//! `GET /exec` (see [`exec`]; the wire types are `api_types::exec`) upgrades to a WebSocket
//! and runs a command in the running task of a host container: `apiclient exec admin -- sh`.
//! The server is a client of the host containerd (`--exec-socket-path`, default
//! [`constants::HOST_CONTAINERD_SOCKET`]; `--exec-namespace`, default
//! [`constants::HOST_CONTAINERD_NAMESPACE`]), through the `ctr-client` crate (the containerd
//! connection host-ctr uses too): Tasks.Exec with the container's own process spec and the
//! command as its arguments, stdio through FIFOs under `--exec-fifo-dir` (default
//! [`exec::DEFAULT_FIFO_DIR`], the unit's runtime directory), a pseudo-terminal when the client
//! asks for one. Binary frames carry stdin and output, text frames JSON control messages; the
//! Close frame's reason is `exit N` or `error: SENTENCE`. A plain GET (no upgrade) is a 400.
//! The upgrade is recorded in the audit trail like a change (the target and command go to the
//! journal, not the audit entry).
//!
//! ## Connections and limits
//!
//! The server runs its own accept loop over hyper (see [`listen`]) rather than `axum::serve`,
//! so that every connection is bounded:
//!
//! - A connection must send a complete request head within 10 s of connecting or of its previous
//!   answer ([`listen::HEADER_READ_TIMEOUT`]); this is also the keep-alive idle timeout. Its
//!   body must follow within 10 s of the head ([`listen::REQUEST_BODY_TIMEOUT`]), else 400.
//! - At most half the descriptor limit in connections, never more than 4,096
//!   ([`listen::max_connections`]); at the cap the connection idle the longest (quiet for at
//!   least 50 ms) is closed to make room, and when all are busy new clients wait in the backlog.
//! - At start the soft `RLIMIT_NOFILE` is raised to the hard limit (the unit sets
//!   `LimitNOFILE=16384`). Accept errors such as EMFILE are logged at most once a second; the
//!   loop closes an idle connection and pauses 10 ms, and never stops.
//! - Request heads are at most 64 KiB. A request with both `Transfer-Encoding` and
//!   `Content-Length`, or with two `Host` headers, is a 400 and ends the connection; a
//!   `Content-Length` over 1 MiB is a 413 before any `100 Continue`. A chunked request ends its
//!   connection after the answer.
//! - A key, prefix or name too long for the filesystem is a 400. A 5xx body names no file; the
//!   log has the path.
//! - The socket is bound in a private 0700 directory next to its path, given mode 0660 and its
//!   group there and renamed into place, so it never exists with other permissions, whatever
//!   the umask. SIGTERM and SIGINT stop accepting, let requests in progress finish (up to 10 s)
//!   and remove the socket. The update status directory is 0700 and its file 0600.
//! - A server that finds the datastore locked says so every 2 s, naming the holder's PID from
//!   `/proc/locks`, and gives up after 10 s.
//!
//! # Current limitations
//!
//! - Try mode: an undo of a try's confirm (or of its revert) brings the record back
//!   with its past deadline, so the timer reverts at once. A try is refused while the boot's
//!   launch transaction is pending. Whether a later commit took a key over is judged by value:
//!   a key set again to the very value the try gave it is still reverted. The revert after a
//!   reboot is committed but not applied by the server: the boot's settings-applier renders
//!   every file right after.
//! - A request in progress is never evicted, and a handler has no time limit: slow renderer
//!   dry-runs count against the cap for as long as they run.
//! - With a hard descriptor limit of 1024, the cap is 512 connections, and a client that
//!   connects and stays quiet for 50 ms while 512 others are open may be closed to make room.
//! - `/report` (other than `/report/boot` and `/report/cis`), `/report/cis-k8s`, `/report/fips`
//!   and `/actions/ephemeral-storage` are not served yet.
//! - Exec: stdout and stderr arrive merged (both are binary frames, as in Bottlerocket's
//!   protocol). The end of stdin is containerd's CloseIO, which closes the process's stdin at
//!   once; the server first waits until the shim has read the FIFO empty (up to 5 s) and 50 ms
//!   more, so input still in the shim's copy buffer at that moment could in theory be lost.
//!   After the process exits, its output has 2 s to drain (a background child holding stdout
//!   open is cut off). Sessions are not counted against the connection cap (the upgraded
//!   connection leaves the accept loop's registry), and their number is not limited. The
//!   process runs as the container's main process does (same user, capabilities and cgroup);
//!   the audit entry does not name the target or command.
//! - Applies run in the background; their outcome is only in the journal, not in the answer.
//! - There is no authentication beyond the socket's owner, group and mode.
//! - The server puts no time limit on an update action: an updater that hangs keeps the other
//!   update actions (and the reboot route) at 423 until it is killed or the server restarts.
//! - Update actions are serialized inside this process only; an updater run by hand at the same
//!   time relies on the updater's own lock. The status notices such changes at the next action
//!   or restart, not at once.
//! - `--updater-command` and `--reboot-command` are split on whitespace, without quoting.
//! - A `GET /logs?follow=true` answer never ends by itself: it counts as an idle connection
//!   once its head is sent (so it may be chosen to make room at the connection cap, though the
//!   close waits for the stream), it holds a shutdown for the full 10 s, and the number of
//!   followers is not limited beyond the connection cap. A follower sees entries appended to
//!   the journal files journalctl has open (journald's own files); in tests, a journal file
//!   added to `--journal-dir` later was not seen.
//! - journalctl's meaning is read from its stderr ("Bad pattern", "specified boot") and, with
//!   `grep`, from exit status 1 with nothing on stderr (no match); another journalctl version
//!   may word them differently, which would turn those 400/404s into 500s.
//! - Audit: requests refused before routing (ambiguous framing, a `Content-Length` over the
//!   limit) are not recorded, nor is a request whose connection closed before it was answered.
//!   A power cut can lose the last entries written before the background flush. The program
//!   name is read while the request is answered, so a client that forks and exits, or a reused
//!   PID, can give a wrong or missing name; uid, gid and pid are the kernel's. A refused PATCH
//!   records no keys (its error message, which may quote a value, is never recorded). The
//!   line is written on the async worker that answers the request (a few microseconds); the
//!   trim that keeps the file bounded (every quarter of `--audit-max-entries`) rewrites up to
//!   16 MiB there too, holding that one answer for its duration.
//! - `GET /history` does not name who made a commit: the caller would have to travel through
//!   group commit into the datastore's commit record and journal format. The audit trail's
//!   commit entries (same keys, same moment) say who; the history still shows secret values.
//! - `GET /units` and `GET /status` run systemctl on every request (no cache), and the journal
//!   of at most 32 failed units. A failed unit's entries are found by `journalctl --unit`,
//!   which matches the unit's own processes (`_SYSTEMD_UNIT`) and systemd's messages about
//!   it; unit names holding glob characters or `\x` escapes may match less. A failed user
//!   unit (under `user@.service`) is not listed: only the system manager's units are asked.
//! - `GET /report/boot` shows each unit's latest activation: a unit restarted since the boot
//!   shows its restart, and a dependency that became active after the unit itself is not
//!   followed. A chain is one path (the dependency active last), not critical-chain's tree of
//!   equals. The phases of the user manager (tests) have no firmware, loader, kernel or initrd.
//! - The support bundle is built in memory (up to about 16 MiB of journal, 4 MiB per file read,
//!   4 MiB of kernel log) before the first byte is sent, and a stuck mount point would hold
//!   its `statvfs` (and the request) as long as the mount stays stuck. Its journal is the
//!   newest boot in the journal (journalctl's `--boot=0`), the node's current one. Network
//!   state is the server's own network namespace. Values are redacted by key (the settings
//!   model's list): a secret pasted into a setting that is not on the list, or into a unit's
//!   log line, is not found. Age encryption (`?recipient=`) is not implemented.
//! - The document's patterns describe a subset of what the server takes where a regular
//!   expression cannot say it all: quoted key segments of printable ASCII only, URLs without
//!   query strings, PEM bundles that start with a certificate, and no list or map values in
//!   the keypair pattern (the server takes them as JSON). What the patterns allow is accepted.

pub mod apply;
pub mod audit;
pub mod boot_report;
pub mod command;
pub mod controller;
pub mod error;
pub mod exec;
pub mod group_commit;
pub mod listen;
pub mod logs;
pub mod node_status;
pub mod openapi;
pub mod provisional;
pub mod server;
pub mod support_bundle;
pub mod units;
pub mod updates;

use error::*;
use snafu::ResultExt;
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
    /// Where `GET /logs` reads the journal, and with what.
    pub journal: logs::JournalConfig,
    /// Where the audit trail is kept, and how many entries.
    pub audit: audit::AuditConfig,
    /// What `GET /units` and `GET /status` run: systemctl and signpost.
    pub node: node_status::NodeConfig,
    /// Where `GET /support-bundle` reads the node's files.
    pub bundle: support_bundle::BundleConfig,
    /// Where `GET /exec` finds the host containers.
    pub exec: exec::ExecConfig,
    /// Write a readiness line to /dev/kmsg (on a node; never in tests).
    pub kmsg_ready: bool,
    /// Where the boot id is read (try-mode changes are reverted after a reboot).
    pub boot_id_file: PathBuf,
    /// How often a pending try-mode change looks at `settings.health`.
    pub health_interval: std::time::Duration,
}

/// Opens the datastore, listens on the socket and serves until SIGTERM or SIGINT, then removes
/// the socket.
pub async fn serve(config: ServerConfig) -> Result<()> {
    let nofile = listen::raise_nofile_limit();
    let store = open_store(&config.datastore_path)?;
    let audit = audit::AuditLog::open(&config.audit).context(OpenAuditSnafu {
        path: &config.audit.path,
    })?;
    let store: server::SharedStore = Arc::new(RwLock::new(Box::new(store)));
    let try_mode = provisional::TryMode::new(&config.boot_id_file)
        .with_health_interval(config.health_interval);
    // Before the socket exists: a try left by an earlier boot is reverted before anyone can
    // read or write a setting.
    if let Err(e) = provisional::revert_from_earlier_boot(&store, &try_mode, &audit) {
        tracing::error!(
            "cannot revert the try-mode change left by an earlier boot: {}; it stays pending and is reverted by the timer",
            e.message
        );
    }
    let state = server::AppState {
        store,
        os_release: config.os_release.clone(),
        applier: apply::Applier::start(config.apply_command.clone(), config.socket_path.clone()),
        commits: group_commit::CommitQueue::new(),
        updates: updates::Updates::new(config.updates.clone()),
        journal: Arc::new(config.journal.clone()),
        audit,
        node: Arc::new(config.node.clone()),
        bundle: Arc::new(config.bundle.clone()),
        exec: Arc::new(config.exec.clone()),
        try_mode,
    };
    tokio::spawn(provisional::run_timer(state.clone()));
    let (app, _) = server::router(state);
    release_startup_memory();
    let shutdown = shutdown_signal();
    let (listener, socket) =
        listen::bind_socket(&config.socket_path, config.socket_gid).context(BindSnafu {
            path: &config.socket_path,
        })?;
    let max_connections = listen::max_connections(nofile);
    tracing::info!(
        "serving the API on {} (up to {max_connections} connections, descriptor limit {nofile})",
        config.socket_path.display()
    );
    notify_ready();
    if config.kmsg_ready {
        announce_in_kernel_log(&config.socket_path);
    }
    listen::serve(listener, app, max_connections, shutdown).await;
    socket.remove();
    Ok(())
}

/// Gives back to the kernel the heap pages freed after startup: building the router and its
/// OpenAPI document allocates and frees about a megabyte, which glibc would otherwise keep
/// resident for the server's whole life.
fn release_startup_memory() {
    // SAFETY: malloc_trim only returns free heap memory to the kernel; it reads and changes
    // nothing this program holds.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How long a server waits for the datastore lock before giving up.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How often a server waiting for the datastore lock says so.
const LOCK_WAIT_REPORT: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens the datastore, waiting up to [`LOCK_WAIT`] for its lock: after a crash, a renderer the
/// old server was starting can hold the lock file for a moment (between its fork and exec).
/// While it waits it says so every [`LOCK_WAIT_REPORT`], naming the holder when it can.
fn open_store(path: &Path) -> Result<datastore::FilesystemDataStore> {
    let start = std::time::Instant::now();
    let mut next_report = start;
    loop {
        match datastore::FilesystemDataStore::open(path) {
            Err(datastore::Error::Locked { .. }) if start.elapsed() < LOCK_WAIT => {
                if std::time::Instant::now() >= next_report {
                    tracing::warn!(
                        "waiting for the datastore lock at {}: {} (giving up after {} s)",
                        path.display(),
                        lock_holder(path),
                        LOCK_WAIT.as_secs()
                    );
                    next_report += LOCK_WAIT_REPORT;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(source @ datastore::Error::Locked { .. }) => {
                return Err(Error::DatastoreLocked {
                    path: path.to_path_buf(),
                    holder: lock_holder(path),
                    source,
                })
            }
            other => return other.context(OpenDatastoreSnafu { path }),
        }
    }
}

/// Who holds the datastore's lock, from /proc/locks (which lists the PID of each `flock`
/// holder): "held by PID 123 (apiserver)", or a sentence saying it is unknown.
fn lock_holder(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    // The datastore's lock file: `lock` in the version directory `path` resolves to.
    let lock = std::fs::canonicalize(path)
        .map(|dir| dir.join("lock"))
        .and_then(std::fs::metadata);
    let (Ok(lock), Ok(locks)) = (lock, std::fs::read_to_string("/proc/locks")) else {
        return "its holder is unknown".to_string();
    };
    let dev = lock.dev();
    // /proc/locks names a file as MAJOR:MINOR:INODE, the device numbers in hex.
    let id = format!(
        "{:02x}:{:02x}:{}",
        libc::major(dev),
        libc::minor(dev),
        lock.ino()
    );
    let holders: Vec<String> = locks
        .lines()
        .filter(|line| line.split_whitespace().any(|field| field == id))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // "1: FLOCK ADVISORY WRITE <pid> <file> ..."; "->" marks a waiter.
            let pid = fields.get(4).filter(|_| fields.get(1) != Some(&"->"))?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            Some(format!("PID {pid} ({})", comm.trim()))
        })
        .collect();
    if holders.is_empty() {
        "its holder is unknown".to_string()
    } else {
        format!("held by {}", holders.join(", "))
    }
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

/// Resolves on the first SIGTERM or SIGINT. The handlers are installed here, when it is called,
/// not when the future is first polled: the server calls it before its socket exists, so a
/// signal sent the moment a client sees the socket (or systemd sees READY) still stops it cleanly
/// instead of killing it with the socket left behind.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("cannot install the SIGTERM/SIGINT handlers: {e}");
                std::future::pending::<()>().await;
            }
        }
        tracing::info!("shutting down");
    }
}
