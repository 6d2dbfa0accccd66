//! `apiserver`: parses flags, sets up logging and runs [`apiserver::serve`].

use apiserver::updates::updater::CommandLine;
use apiserver::updates::UpdatesConfig;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Ballast's API server: settings over HTTP on a Unix socket.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The datastore directory (usually the `current` link).
    #[arg(long, default_value = constants::DATASTORE_CURRENT)]
    datastore_path: PathBuf,
    /// Where to listen.
    #[arg(long, default_value = constants::API_SOCKET)]
    socket_path: PathBuf,
    /// Group that owns the socket (mode 0660), e.g. the `api` group.
    #[arg(long)]
    socket_gid: Option<u32>,
    /// os-release file describing this OS for GET /os.
    #[arg(long, default_value = constants::OS_RELEASE)]
    os_release: PathBuf,
    /// Renderer run on apply: changed keys as a JSON array on stdin, or `--all`.
    #[arg(long)]
    apply_command: Option<PathBuf>,
    /// The updater the update actions run, with any leading arguments, split on spaces
    /// (e.g. "/usr/bin/updog --log-level warn"). It must follow updog's command-line contract.
    #[arg(long, default_value = "updog")]
    updater_command: CommandLine,
    /// Where the update status and the updater's progress file are kept (tmpfs on a node, so
    /// the status survives an API server restart but not a reboot).
    #[arg(long, default_value = "/run/cache/ballast-updates")]
    updater_status_dir: PathBuf,
    /// What POST /actions/reboot runs, split on spaces.
    #[arg(long, default_value = "systemctl reboot")]
    reboot_command: CommandLine,
    /// The journal directory GET /logs reads (journalctl's --directory); the system journal
    /// when not given.
    #[arg(long)]
    journal_dir: Option<PathBuf>,
    /// The journalctl program GET /logs runs.
    #[arg(long, default_value = "journalctl")]
    journalctl: PathBuf,
    /// The audit trail file (JSON lines); by default the file named as
    /// `constants::AUDIT_LOG_NAME` in the directory above --datastore-path.
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Most entries the audit file keeps; before it would hold more, it is trimmed to the
    /// newest three quarters.
    #[arg(long, default_value_t = apiserver::audit::DEFAULT_MAX_ENTRIES as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    audit_max_entries: u64,
    /// The systemctl GET /units and GET /status run, with any leading arguments, split on
    /// spaces (e.g. "systemctl --user").
    #[arg(long, default_value = "systemctl")]
    systemctl: CommandLine,
    /// The signpost GET /status runs for the A/B boot state, with any leading arguments, split
    /// on spaces (e.g. "signpost --disk disk.img --active A").
    #[arg(long, default_value = "signpost")]
    signpost_command: CommandLine,
    /// The directory GET /support-bundle and GET /report/cis read the node's files under (`/`
    /// on a node).
    #[arg(long, default_value = "/")]
    support_root: PathBuf,
    /// Also record readiness in the kernel log (/dev/kmsg), so the boot timeline in `dmesg`
    /// shows when the API started answering.
    #[arg(long)]
    kmsg_ready: bool,
    /// Where the kernel's boot id is read: a try-mode change made in another boot is reverted
    /// when the server starts (tests point this at a file of their own).
    #[arg(long, default_value = constants::BOOT_ID_FILE)]
    boot_id_file: PathBuf,
    /// Seconds between two evaluations of settings.health while a try-mode change is pending
    /// (a check failing twice in a row reverts the change).
    #[arg(long, default_value_t = apiserver::provisional::DEFAULT_HEALTH_INTERVAL.as_secs())]
    health_interval: u64,
    /// The host containerd's socket: GET /exec runs commands in the host containers' tasks there.
    #[arg(long, default_value = constants::HOST_CONTAINERD_SOCKET)]
    exec_socket_path: PathBuf,
    /// The containerd namespace of the host containers.
    #[arg(long, default_value = constants::HOST_CONTAINERD_NAMESPACE)]
    exec_namespace: String,
    /// Where GET /exec makes the FIFOs of each process (containerd's shim must be able to open
    /// them).
    #[arg(long, default_value = apiserver::exec::DEFAULT_FIFO_DIR)]
    exec_fifo_dir: PathBuf,
    /// trace, debug, info, warn or error.
    #[arg(long, default_value = "info")]
    log_level: logging::LevelFilter,
}

/// Most async worker threads: two keep both cores of a small node busy; more only add memory
/// (each has its own stack and malloc arena) to a server whose requests take microseconds.
const MAX_WORKERS: usize = 2;
/// Most threads for blocking work (reads that wait for a writer, writes, commits): enough for
/// eight committers waiting to join one group commit, plus the renderer and updater.
const MAX_BLOCKING_THREADS: usize = 16;
/// An idle blocking thread ends after this long, giving back its stack.
const BLOCKING_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(2);
/// glibc malloc arenas: one per thread by default (up to 8 per core), each keeping freed memory
/// for its thread; two suffice for two workers and the blocking threads' short jobs.
const MALLOC_ARENAS: i32 = 2;

fn main() -> ExitCode {
    // SAFETY: mallopt only changes an allocator setting; it is called before any other thread
    // exists, and a failure (return 0) just leaves the default in place.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_WORKERS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("apiserver: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let args = Args::parse();
    logging::init(args.log_level);
    let audit_log = args
        .audit_log
        .unwrap_or_else(|| apiserver::audit::AuditConfig::beside_datastore(&args.datastore_path));
    let config = apiserver::ServerConfig {
        datastore_path: args.datastore_path,
        socket_path: args.socket_path,
        socket_gid: args.socket_gid,
        os_release: args.os_release,
        apply_command: args.apply_command,
        updates: UpdatesConfig {
            updater: args.updater_command,
            status_dir: args.updater_status_dir,
            reboot: args.reboot_command,
        },
        journal: apiserver::logs::JournalConfig {
            journalctl: args.journalctl,
            dir: args.journal_dir,
        },
        audit: apiserver::audit::AuditConfig {
            path: audit_log,
            max_entries: usize::try_from(args.audit_max_entries)
                .unwrap_or(apiserver::audit::DEFAULT_MAX_ENTRIES),
        },
        node: apiserver::node_status::NodeConfig {
            systemctl: args.systemctl,
            signpost: args.signpost_command,
        },
        bundle: apiserver::support_bundle::BundleConfig {
            root: args.support_root,
        },
        exec: apiserver::exec::ExecConfig {
            socket: args.exec_socket_path,
            namespace: args.exec_namespace,
            fifo_dir: args.exec_fifo_dir,
        },
        kmsg_ready: args.kmsg_ready,
        boot_id_file: args.boot_id_file,
        health_interval: std::time::Duration::from_secs(args.health_interval.max(1)),
    };
    match apiserver::serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apiserver: {e}");
            ExitCode::FAILURE
        }
    }
}
