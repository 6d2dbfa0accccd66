//! `updog`: Ballast's node updater. It finds an update for the running image in the signed
//! update repository, writes it to the inactive partition set, and tells the boot loader to try
//! it once.
//!
//! # Background
//!
//! A Ballast disk has two partition sets, A and B (`disk_layout`); the running system uses one,
//! and an update goes to the other (DESIGN.md, "Update"). The repository is a TUF repository
//! made by `tools/repo`: its `manifest.json` target lists the versions per variant and arch,
//! their images (`boot`, `root`, `hash`, zstd-compressed), waves and settings migrations
//! (`update_metadata`). This crate is the node side, after Bottlerocket's updog:
//!
//! 1. tough's client loads the repository against the `root.json` shipped in the image,
//!    checking signatures, versions and expiry of every role ([`tuf`]);
//! 2. the update is chosen from the signed manifest for the running variant, arch and version,
//!    the version lock, `max_version` and this node's wave ([`select`]);
//! 3. the signed metadata, the manifest and the migrations the new version needs are saved for
//!    the migrator ([`mirror`]);
//! 4. signpost clears the inactive set (its GPT entry is written before any image byte), then
//!    each image streams through tough (length and sha256 of the compressed bytes checked
//!    against the signed metadata) and a zstd decoder onto its inactive partition ([`image`]),
//!    and only when all three are written, flushed and verified does signpost mark the set
//!    valid. Any failure leaves the inactive set unbootable and the running set untouched;
//! 5. `update-apply` gives the inactive set one try at the next boot; a boot that is never
//!    marked successful falls back to the old set, which `status` then reports as a failed
//!    update ([`state`]).
//!
//! # Usage
//!
//! ```text
//! updog [--config /etc/updog.toml] [--os-release /etc/os-release]
//!       [--root-json /usr/share/updates/root.json] [--cache-dir /var/lib/updog]
//!       [--migrations-dir /var/lib/ballast/migrations] [--disk PATH --active A|B]
//!       [--json] [--log-level LEVEL] [--reboot-command "systemctl reboot"]
//!   check-update [--all] [--ignore-waves]
//!   update-image [--image VERSION] [--ignore-waves] [--allow-downgrade] [--progress-file PATH]
//!   update-apply [--reboot]
//!   update-revert
//!   update [--image VERSION] [--ignore-waves] [--allow-downgrade] [--reboot]
//!   status
//! ```
//!
//! Without `--disk`/`--active`, the boot disk and running set come from signpost's discovery
//! (`ballast.root=` on the kernel command line). Exit status: 0 success, 1 error (the message on
//! stderr), 3 when `update-image` or `update` finds nothing to do.
//!
//! ## `/etc/updog.toml`
//!
//! Rendered from `settings.updates` (template `updog-toml` of the `updater` package):
//!
//! ```toml
//! metadata_base_url = "https://updates.example.com/metadata/"  # TUF metadata (required)
//! targets_base_url = "https://updates.example.com/targets/"    # TUF targets (required)
//! seed = 1234                  # this node's place in the waves, 0-2047 (required)
//! version_lock = "latest"      # or a version, "1.2.0" or "v1.2.0"
//! ignore_waves = false         # take updates before this node's wave
//! https_proxy = "http://proxy.example.com:3128"   # optional
//! no_proxy = ["localhost", ".internal"]           # optional; also "a,b" as one string
//! ```
//!
//! URLs may be `http://`, `https://` or `file://`; a missing final `/` is added. Unknown keys
//! are refused, so a typo does not silently turn a setting off.
//!
//! ## JSON output
//!
//! `check-update --json`:
//! `{"running": {"variant","arch","version","build_id"}, "chosen": <manifest entry>|null,
//! "updates": [<allowed entries, newest first>]}`; with `--all` older allowed versions are
//! listed too.
//!
//! `update-image --json`: `{"set": "B", "image": {"variant","arch","version","build_id"},
//! "migrations": ["migrate_v1.1.0_x", ...]}`.
//!
//! `status --json` (also printed by `update-apply --json` and `update-revert --json`):
//! `{"running": {...}, "active_set": "A", "next_boot": "A"|"B", "inactive": {"set": "B",
//! "image": {...}|null, "valid": bool, "bootable": bool, "successful": bool},
//! "failed_update": {"version": "1.1.0", "set": "B"}|null}`.
//!
//! `update --json`: `{"written": <update-image object>, "status": <status object>}`.
//!
//! ## The migrations mirror
//!
//! `update-image` replaces `--migrations-dir` (by default `/var/lib/ballast/migrations`) with a
//! copy of the repository that tough can load from `file://` URLs:
//!
//! ```text
//! <migrations-dir>/
//!   metadata/
//!     1.root.json              the trusted root the client started from (its own version)
//!     N.root.json ...          every newer root fetched on the way (the root chain)
//!     timestamp.json           exactly as fetched
//!     N.snapshot.json          exactly as fetched (consistent-snapshot name)
//!     N.targets.json           exactly as fetched (consistent-snapshot name)
//!   targets/
//!     <sha256>.manifest.json   the signed manifest
//!     <sha256>.migrate_v...    each migration between the running and the new version
//! ```
//!
//! The migrations are those of the manifest's `migrations` pairs on the way from the running
//! version to the new one (`Manifest::migrations_between`: forward in order for an upgrade, the
//! same list reversed for a downgrade). Each target is saved through tough (length and sha256
//! checked), the new mirror is loaded back with tough before it is used, and it replaces the
//! old one with a single `renameat2(RENAME_EXCHANGE)`, so the migrator sees the old mirror or
//! the new one, never a mix.
//!
//! ## State
//!
//! `--cache-dir` holds `sets.json` (what each set holds, the pending try, a failed update; see
//! [`state`]), `updog.lock` (one updater at a time changes the node) and `tuf/`, tough's record
//! of the newest metadata seen (which refuses a repository rolled back to older metadata).
//!
//! # Current limitations
//!
//! * A stalled HTTP download is only noticed by the whole-request timeout of tough's HTTP
//!   transport ([`tuf::HTTP_TIMEOUT`], then resumed with a range request, [`tuf::HTTP_TRIES`]
//!   attempts).
//! * A node on a release whose `max_version` was lowered is not walked back automatically
//!   (Bottlerocket's updog does that); `update-image --image V --allow-downgrade` does it by
//!   hand.
//! * The proxy settings reach the HTTP client through `HTTPS_PROXY`/`NO_PROXY`, which the
//!   binary sets from the configuration before it starts; library callers set them themselves.
//! * No telemetry query parameters (Bottlerocket adds seed and version to its requests).
//! * Old bytes after the end of a new, smaller image stay in its partition (dm-verity only
//!   reads the blocks the hash tree covers).
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod error;
pub mod image;
pub mod mirror;
pub mod progress;
pub mod select;
pub mod state;
pub mod tuf;

pub use cli::{Args, Command, ImageArgs};
pub use config::{Config, ImageId};
pub use error::{Error, Result};

use crate::image::Destination;
use crate::progress::Progress;
use crate::select::Policy;
use crate::state::{Lock, Pending, State};
use disk_layout::{BootSet, PartitionRole};
use serde::Serialize;
use signpost::{Operation, Signpost};
use snafu::{ensure, ResultExt};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use update_metadata::{Timestamp, Update};

/// Exit status of a failed command.
pub const EXIT_ERROR: i32 = 1;
/// Exit status of `update-image` and `update` when there is nothing to do.
pub const EXIT_NO_UPDATE: i32 = 3;
/// Directory of tough's metadata cache inside the cache directory.
pub const TUF_DATASTORE: &str = "tuf";
/// Mozilla's certificate authorities in the image (Debian's ca-certificates, one PEM file each).
pub const SYSTEM_CA_DIR: &str = "/usr/share/ca-certificates/mozilla";
/// The bundle thar-be-settings renders from settings.pki (the operator's own authorities).
pub const USER_CA_BUNDLE: &str = constants::CA_BUNDLE;

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// `update-image` or `update` found no update to apply.
    NoUpdate,
}

impl Outcome {
    /// The process exit status.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Done => 0,
            Outcome::NoUpdate => EXIT_NO_UPDATE,
        }
    }
}

/// Runs the command of `args`, printing its result to `out`.
pub async fn run(args: &Args, out: &mut dyn Write) -> Result<Outcome> {
    match &args.command {
        Command::CheckUpdate { all, ignore_waves } => {
            let mut node = Node::open(args, false)?;
            let config = Config::load(&args.config)?;
            let report = check_update(&mut node, &config, *all, *ignore_waves).await?;
            print(out, args.json, &report, || report.text())?;
            Ok(Outcome::Done)
        }
        Command::UpdateImage {
            image,
            progress_file,
        } => {
            let mut node = Node::open(args, true)?;
            let config = Config::load(&args.config)?;
            match update_image(&mut node, &config, image, progress_file.clone()).await? {
                Some(written) => {
                    print(out, args.json, &written, || written.text())?;
                    Ok(Outcome::Done)
                }
                None => Ok(Outcome::NoUpdate),
            }
        }
        Command::UpdateApply { reboot } => {
            let mut node = Node::open(args, true)?;
            let status = update_apply(&mut node)?;
            print(out, args.json, &status, || status.text())?;
            if *reboot {
                run_reboot(&args.reboot_command)?;
            }
            Ok(Outcome::Done)
        }
        Command::UpdateRevert => {
            let mut node = Node::open(args, true)?;
            let status = update_revert(&mut node)?;
            print(out, args.json, &status, || status.text())?;
            Ok(Outcome::Done)
        }
        Command::Update { image, reboot } => {
            let mut node = Node::open(args, true)?;
            let config = Config::load(&args.config)?;
            let Some(written) = update_image(&mut node, &config, image, None).await? else {
                return Ok(Outcome::NoUpdate);
            };
            let status = update_apply(&mut node)?;
            #[derive(Serialize)]
            struct Both<'a> {
                written: &'a Written,
                status: &'a StatusReport,
            }
            let both = Both {
                written: &written,
                status: &status,
            };
            print(out, args.json, &both, || {
                format!("{}\n{}", written.text(), status.text())
            })?;
            if *reboot {
                run_reboot(&args.reboot_command)?;
            }
            Ok(Outcome::Done)
        }
        Command::Status => {
            let node = Node::open(args, false)?;
            let status = node.report();
            print(out, args.json, &status, || status.text())?;
            Ok(Outcome::Done)
        }
    }
}

fn print<T: Serialize>(
    out: &mut dyn Write,
    json: bool,
    value: &T,
    text: impl FnOnce() -> String,
) -> Result<()> {
    let stdout = PathBuf::from("standard output");
    let mut text = if json {
        serde_json::to_string_pretty(value).context(error::JsonSnafu { what: "the result" })?
    } else {
        text()
    };
    text.push('\n');
    out.write_all(text.as_bytes()).context(error::IoSnafu {
        action: "write to",
        path: stdout,
    })
}

/// The node a command works on: what runs, the disk and its A/B state, the updater's state.
struct Node {
    paths: config::Paths,
    signpost: Signpost,
    running: ImageId,
    status: signpost::Status,
    state: State,
    /// Held by commands that change the node; read-only commands may run without it.
    lock: Option<Lock>,
}

impl Node {
    /// Reads the running image and the disk's state, brings `sets.json` up to date (saved when
    /// the lock could be taken). `need_lock` fails when another updater holds the lock.
    fn open(args: &Args, need_lock: bool) -> Result<Node> {
        let paths = args.paths();
        let running = ImageId::from_os_release(&paths.os_release)?;
        let signpost = match (&args.disk, args.active) {
            (Some(disk), Some(active)) => Signpost::new(disk, active),
            _ => Signpost::on_this_node().context(error::FindDiskSnafu)?,
        };
        let lock = if need_lock {
            Some(Lock::take(&paths.cache_dir)?)
        } else {
            Lock::try_take(&paths.cache_dir)?
        };
        let status = signpost.status().context(error::SignpostSnafu {
            operation: "read the boot state",
            disk: signpost.disk(),
        })?;
        let mut state = State::load(&paths.cache_dir);
        state.observe(&running, &status);
        state.note_health(api_types::health::read_boot_failure(&paths.health_failure).as_ref());
        let node = Node {
            paths,
            signpost,
            running,
            status,
            state,
            lock,
        };
        node.save_state()?;
        Ok(node)
    }

    fn save_state(&self) -> Result<()> {
        if self.lock.is_some() {
            self.state.save(&self.paths.cache_dir)?;
        }
        Ok(())
    }

    fn active(&self) -> BootSet {
        self.signpost.active()
    }

    fn apply(&mut self, operation: Operation) -> Result<()> {
        self.status = self
            .signpost
            .apply(operation)
            .context(error::SignpostSnafu {
                operation: operation.name(),
                disk: self.signpost.disk(),
            })?;
        Ok(())
    }

    /// tough's metadata cache: the persistent one when this process holds the lock, else a
    /// temporary one (kept alive by the returned guard).
    fn datastore(&self) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
        if self.lock.is_some() {
            return Ok((self.paths.cache_dir.join(TUF_DATASTORE), None));
        }
        let dir = tempfile::tempdir().context(error::IoSnafu {
            action: "create a temporary metadata cache for",
            path: &self.paths.cache_dir,
        })?;
        Ok((dir.path().to_path_buf(), Some(dir)))
    }

    async fn load_repo(&self, config: &Config) -> Result<tuf::Loaded> {
        let (datastore, _guard) = self.datastore()?;
        tuf::load(
            &config.metadata_base_url,
            &config.targets_base_url,
            &self.paths.root_json,
            &datastore,
        )
        .await
    }

    fn report(&self) -> StatusReport {
        let inactive = self.active().other();
        let flags = self.status.set(inactive);
        StatusReport {
            running: self.running.clone(),
            active_set: self.active(),
            next_boot: self.status.next,
            inactive: InactiveReport {
                set: inactive,
                image: self.state.image(inactive).cloned(),
                valid: self.status.inactive_valid,
                bootable: self.status.inactive_bootable,
                successful: flags.successful,
            },
            failed_update: self.state.failed_update.clone(),
        }
    }
}

/// The result of `check-update`.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub running: ImageId,
    pub chosen: Option<Update>,
    pub updates: Vec<Update>,
}

impl CheckReport {
    fn text(&self) -> String {
        let mut text = format!("Running: {}\n", self.running);
        match &self.chosen {
            Some(u) => text.push_str(&format!("Update available: {} {}", u.variant, u.version)),
            None => text.push_str("No update available"),
        }
        if !self.updates.is_empty() {
            let versions: Vec<String> =
                self.updates.iter().map(|u| u.version.to_string()).collect();
            text.push_str(&format!("\nAllowed versions: {}", versions.join(", ")));
        }
        text
    }
}

async fn check_update(
    node: &mut Node,
    config: &Config,
    all: bool,
    ignore_waves: bool,
) -> Result<CheckReport> {
    let loaded = node.load_repo(config).await?;
    let manifest = loaded.manifest().await?;
    let policy = Policy {
        seed: config.seed,
        ignore_waves: config.ignore_waves || ignore_waves,
        version_lock: config.version_lock.clone(),
        all,
        now: Timestamp::now(),
    };
    let selection = select::select(&manifest, &node.running, &policy);
    Ok(CheckReport {
        running: node.running.clone(),
        chosen: selection.chosen.cloned(),
        updates: selection.updates.into_iter().cloned().collect(),
    })
}

/// The result of `update-image`.
#[derive(Debug, Serialize)]
pub struct Written {
    #[serde(with = "state::set_letter")]
    pub set: BootSet,
    pub image: ImageId,
    pub migrations: Vec<String>,
}

impl Written {
    fn text(&self) -> String {
        format!(
            "Wrote {} to set {}; `updog update-apply` boots it next",
            self.image, self.set
        )
    }
}

async fn update_image(
    node: &mut Node,
    config: &Config,
    args: &ImageArgs,
    progress_file: Option<PathBuf>,
) -> Result<Option<Written>> {
    let loaded = node.load_repo(config).await?;
    let manifest = loaded.manifest().await?;
    let running = node.running.clone();
    let chosen = match &args.image {
        Some(version) => select::pick(&manifest, &running, version, args.allow_downgrade)?,
        None => {
            let policy = Policy {
                seed: config.seed,
                ignore_waves: config.ignore_waves || args.ignore_waves,
                version_lock: config.version_lock.clone(),
                all: false,
                now: Timestamp::now(),
            };
            let chosen = select::select(&manifest, &running, &policy).chosen;
            if let Some(update) = chosen {
                select::check_direction(update, &running, args.allow_downgrade)?;
            }
            chosen
        }
    };
    let Some(update) = chosen else {
        tracing::info!("no update to apply to {running}");
        return Ok(None);
    };
    let image = ImageId::of_update(update);
    tracing::info!("updating from {running} to {image}");

    // Everything that can be checked before the disk is touched.
    for (kind, name) in [
        ("boot", &update.images.boot),
        ("root", &update.images.root),
        ("hash", &update.images.hash),
    ] {
        ensure!(
            loaded.has_target(name),
            error::ImageNotSignedSnafu {
                name,
                kind,
                version: update.version.clone(),
            }
        );
    }
    let migrations = manifest
        .migrations_between(&running.version, &update.version)
        .context(error::ManifestSnafu)?;
    for name in &migrations {
        ensure!(
            loaded.has_target(name),
            error::MigrationNotSignedSnafu { name }
        );
    }
    let disk = node.signpost.disk().to_path_buf();
    let layout = disk_layout::read_layout(&disk).context(error::LayoutSnafu { disk: &disk })?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk)
        .context(error::OpenDiskSnafu { disk: &disk })?;
    let file = Arc::new(file);
    let inactive = node.active().other();
    let destinations: Vec<(&str, Destination)> = [
        (&update.images.boot, PartitionRole::Boot(inactive)),
        (&update.images.root, PartitionRole::Root(inactive)),
        (&update.images.hash, PartitionRole::Hash(inactive)),
    ]
    .into_iter()
    .map(|(name, role)| {
        let p = layout
            .partition(role)
            .expect("read_layout finds every role");
        (
            name.as_str(),
            Destination {
                file: Arc::clone(&file),
                disk: disk.clone(),
                partition: p.name,
                offset: p.offset,
                size: p.size,
            },
        )
    })
    .collect();

    mirror::save(&loaded, &migrations, &node.paths.migrations_dir).await?;

    // From here on the inactive set is unbootable until all three images are in place.
    node.state.failed_update = None;
    node.state.pending = None;
    node.state.set_image(inactive, None);
    node.save_state()?;
    node.apply(Operation::ClearInactive)?;

    let progress = Progress::new(progress_file, destinations.len() as u32);
    let written = write_all(node, &loaded, &destinations, &progress).await;
    if let Err(e) = written {
        progress.failed();
        return Err(error::Error::Incomplete {
            set: inactive,
            source: Box::new(e),
        });
    }
    progress.done()?;
    node.state.set_image(inactive, Some(image.clone()));
    node.save_state()?;
    tracing::info!("{image} is in set {inactive}; update-apply boots it next");
    Ok(Some(Written {
        set: inactive,
        image,
        migrations,
    }))
}

async fn write_all(
    node: &mut Node,
    loaded: &tuf::Loaded,
    destinations: &[(&str, Destination)],
    progress: &Arc<Progress>,
) -> Result<()> {
    {
        let _reporter = progress.spawn_reporter();
        for (name, dest) in destinations {
            image::write_target(loaded, name, dest, progress).await?;
        }
    }
    node.apply(Operation::MarkInactiveValid)
}

/// The result of `status`, `update-apply` and `update-revert`. Its JSON is
/// `api_types::updater::NodeStatus`, the document the API server reads.
#[derive(Debug)]
pub struct StatusReport {
    pub running: ImageId,
    pub active_set: BootSet,
    pub next_boot: BootSet,
    pub inactive: InactiveReport,
    pub failed_update: Option<state::FailedUpdate>,
}

/// The inactive set in [`StatusReport`].
#[derive(Debug)]
pub struct InactiveReport {
    pub set: BootSet,
    pub image: Option<ImageId>,
    /// It holds a complete update with a try left.
    pub valid: bool,
    pub bootable: bool,
    /// It booted successfully before.
    pub successful: bool,
}

fn image_info(image: &ImageId) -> api_types::updater::ImageInfo {
    api_types::updater::ImageInfo {
        variant: image.variant.clone(),
        arch: image.arch.clone(),
        version: image.version.to_string(),
        build_id: image.build_id.clone(),
    }
}

impl StatusReport {
    /// The document printed with `--json`.
    pub fn document(&self) -> api_types::updater::NodeStatus {
        let i = &self.inactive;
        api_types::updater::NodeStatus {
            running: image_info(&self.running),
            active_set: self.active_set.letter().to_string(),
            next_boot: self.next_boot.letter().to_string(),
            inactive: api_types::updater::InactiveSet {
                set: i.set.letter().to_string(),
                image: i.image.as_ref().map(image_info),
                valid: i.valid,
                bootable: i.bootable,
                successful: i.successful,
            },
            failed_update: self
                .failed_update
                .as_ref()
                .map(|f| api_types::update::FailedUpdate {
                    version: f.version.clone(),
                    set: f.set.letter().to_string(),
                    health: f.health.clone(),
                }),
        }
    }
}

impl Serialize for StatusReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.document().serialize(s)
    }
}

impl StatusReport {
    fn text(&self) -> String {
        let i = &self.inactive;
        let image = i
            .image
            .as_ref()
            .map_or("unknown image".to_string(), ToString::to_string);
        let mut text = format!(
            "Running:   {} on set {}\nNext boot: set {}\nSet {}:     {image}; {}, {}{}",
            self.running,
            self.active_set,
            self.next_boot,
            i.set,
            if i.valid { "valid" } else { "not valid" },
            if i.bootable {
                "bootable"
            } else {
                "not bootable"
            },
            if i.successful {
                ", booted successfully before"
            } else {
                ""
            },
        );
        if let Some(failed) = &self.failed_update {
            text.push_str(&format!(
                "\nFailed update: {} in set {} did not boot successfully; the node went back to \
                 set {}",
                failed.version, failed.set, self.active_set
            ));
            if let Some(health) = &failed.health {
                text.push_str(&format!(" ({health})"));
            }
        }
        text
    }
}

fn update_apply(node: &mut Node) -> Result<StatusReport> {
    node.apply(Operation::UpgradeToInactive)?;
    let inactive = node.active().other();
    node.state.pending = Some(Pending {
        set: inactive,
        version: node.state.image(inactive).map(|i| i.version.clone()),
    });
    node.save_state()?;
    tracing::info!("set {inactive} boots next, once");
    Ok(node.report())
}

fn update_revert(node: &mut Node) -> Result<StatusReport> {
    node.apply(Operation::CancelUpgrade)?;
    node.state.pending = None;
    node.save_state()?;
    tracing::info!("set {} boots next", node.active());
    Ok(node.report())
}

/// Runs the reboot command (split at spaces, no shell).
fn run_reboot(command: &str) -> Result<()> {
    let mut parts = command.split_whitespace();
    let program = parts.next().ok_or(error::Error::EmptyRebootCommand)?;
    tracing::info!("rebooting: {command}");
    let status = std::process::Command::new(program)
        .args(parts)
        .status()
        .context(error::RebootSpawnSnafu { command })?;
    ensure!(
        status.success(),
        error::RebootFailedSnafu { command, status }
    );
    Ok(())
}
