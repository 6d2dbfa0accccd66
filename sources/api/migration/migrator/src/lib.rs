//! Moves the settings datastore from one OS version to another, forward or back, by running
//! signed migrations on a copy and switching to it atomically.
//!
//! # Background
//!
//! A datastore belongs to the OS version that wrote it: `<base>/current -> v<version>` names
//! that version (Bottlerocket's rule since 2020: datastore version = OS version). After an
//! update or a rollback the OS expects another version; its settings may have been added,
//! renamed or removed since. Each such change ships as a migration program named
//! `migrate_v<version>_<name>`, which belongs to the version it migrates *to* (see the
//! `migration-helpers` crate for the program side). The migrator runs at boot
//! (`migrator.service`), before storewolf and the API server read any setting.
//!
//! # Where migrations come from
//!
//! Only from signed metadata. During an update the updater saves a `file://` mirror of the
//! update repository's parts the migrator needs into `/var/lib/ballast/migrations`:
//! `metadata/` (the root chain, `timestamp.json`, `N.snapshot.json`, `N.targets.json`) and
//! `targets/` (`manifest.json` and the migrations under their consistent-snapshot names
//! `<sha256>.<name>`); a repository directory made by the `repo` tool has the same layout. The
//! migrator ([`signed`]):
//!
//! 1. loads the mirror with tough's client against the root of trust in the image
//!    (`/usr/share/updates/root.json`), checking every signature, threshold and version but
//!    **not expiration**: a node that was off for months must still boot, and the metadata it
//!    saved at update time is what it has;
//! 2. reads `manifest.json` through tough and takes the migrations of every consecutive
//!    `"(a, b)"` pair between the store's version and the target version from its `migrations`
//!    map, in order going forward, reversed and run with `--backward` going back;
//! 3. reads each listed migration through tough, which checks its length and sha256 against the
//!    targets metadata signed by the targets key, into a memory file (`memfd_create`) that is
//!    then sealed against any change and hashed again ([`sealed`]), and runs it from there
//!    through `/proc/self/fd/<n>` (with argv\[0\] set to its name). A sealed memory file was
//!    chosen over a private directory under /run because the kernel, not file permissions,
//!    guarantees that the verified bytes are the ones executed, and because it leaves nothing
//!    behind when the migrator is killed.
//!
//! Every migration on the path is verified before the first one runs: one that is listed but
//! missing, not signed, or whose bytes differ from its signed hash refuses the whole run and
//! nothing is changed. A file in the mirror that the manifest does not list is never run. When
//! the manifest lists nothing between the two versions, the store still moves to the target
//! version (a copy, no program run). When the mirror directory does not exist at all, no update
//! saved one, so there is nothing signed to run: the store moves without migrations, with a
//! warning in the log.
//!
//! For development only, `--unsigned-migrations-dir DIR` runs every `migrate_v*` file of a plain
//! directory whose version lies on the way ([`find_migrations`], [`plan`]) without any
//! verification. Images never use it: `migrator.service` passes the signed mirror.
//!
//! # What a run does
//!
//! `migrator --datastore-path BASE --repo-dir DIR --root-json ROOT --target-version V`:
//!
//! 1. No `BASE/current` yet (first boot, before storewolf made the store): nothing to do.
//! 2. Takes `BASE/migrator.lock` (one migrator at a time; the migrations it runs hold it too,
//!    so after a crash the next run waits, up to ten seconds, for a migration that is still
//!    exiting instead of deleting its copy under it), removes leftovers of an interrupted
//!    run (`.migrating-*` copies, `.trash-*` directories, `.tmp-current-*` links, `.tuf-*`
//!    scratch directories), and reads the store's version F from the name of the directory
//!    `current` points at. Versions are dotted numbers compared numerically (`1.10.0` >
//!    `1.9.2`, `1.2` = `1.2.0`).
//! 3. F = V: nothing to do. Otherwise loads and verifies the migrations between F and V as
//!    above.
//! 4. Opens the old store with the datastore crate, which finishes a commit a crash may have
//!    interrupted and holds the store's lock (so no API server writes to it meanwhile).
//! 5. For each migration: copies the previous state's `live/` and `migration-saved/` into a new
//!    `BASE/.migrating-v<V>-<random>` directory and runs the migration with
//!    `--source-datastore <previous> --target-datastore <copy> (--forward|--backward)`. The
//!    intermediate copy of the step before is deleted. A failing migration fails the run: its
//!    copy is deleted and `current` and the old store are untouched.
//! 6. Flushes every file and directory of the final copy, moves it to `BASE/v<V>` (an older
//!    directory of that name, never the current one, is moved aside first), flushes `BASE`,
//!    writes a new link `.tmp-current-<random> -> v<V>` and renames it over `current`, and flushes
//!    `BASE` again. The rename is the switch: before it `current` names the complete old store,
//!    after it the complete new one.
//! 7. Deletes every other `v*` directory except the previous version's (kept for a rollback),
//!    each renamed to a trash name first so that none is ever seen half deleted.
//!
//! On failure the binary prints one line ([`console_line`]) naming the move, the migration and
//! what happens next; the unit sends it to the console. The boot then stops before storewolf,
//! is never marked successful, and the boot deadline sends the node back to the previous OS
//! version.
//!
//! # On-disk decisions
//!
//! - Pending transactions are not copied: storewolf drops them at every boot anyway.
//! - The settings history (and journal) is not copied: its records name keys and values of the
//!   old version, so undoing one of them after the migration would write old-schema settings
//!   behind the migration's back. Each version directory keeps its own history; the previous
//!   version's stays with its directory.
//! - `migration-saved/` holds values that a migration removed, so a later downgrade can restore
//!   them; it travels with every copy.
//! - tough's own bookkeeping goes into a scratch directory inside `BASE` (on the data partition,
//!   which is mounted and writable whenever the migrator runs, unlike /tmp early in the boot).
//!
//! # Current limitations
//!
//! - A migration gets no time limit (the boot deadline is the limit).
//! - The kernel must allow executing memory files (`vm.memfd_noexec` 0 or 1 on Linux 6.3+).
//! - A migration must be an ELF program: a script cannot run from a close-on-exec descriptor.
//! - Versions on the signed path have at most three numbers (the manifest's semantic versions).
//! - Pairs of the manifest that straddle the store's version (a store at a version the
//!   repository never published) are not on the path and are not run.

pub mod error;
pub mod sealed;
pub mod signed;

pub use error::{Error, Result};

use datastore::FilesystemDataStore;
use error::{
    BadMigrationNameSnafu, InvalidVersionSnafu, IoSnafu, LockedSnafu, MigrationFailedSnafu,
    MoveSnafu, NoVersionIdSnafu, NotExecutableSnafu, OpenCopySnafu, OpenSourceSnafu,
    OsReleaseSyntaxSnafu, ReadMigrationsDirSnafu, ReadOsReleaseSnafu, SpawnSnafu,
    UnversionedStoreSnafu,
};
use nix::fcntl::{Flock, FlockArg};
use sealed::SealedProgram;
use snafu::{ensure, ResultExt};
use std::cmp::Ordering;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tracing::{debug, info, warn};

/// The link naming the store in use.
pub const CURRENT: &str = "current";
/// The lock file that keeps two migrators apart.
pub const LOCK_FILE: &str = "migrator.lock";

/// How long a migrator waits for the lock before it gives up with [`Error::Locked`].
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// Values removed by migrations, kept for a downgrade.
pub const SAVED_DIR: &str = constants::MIGRATION_SAVED_DIR;
/// The part of a store that is copied from version to version, besides [`SAVED_DIR`].
const LIVE: &str = "live";
const STAGING_PREFIX: &str = ".migrating-";
const TRASH_PREFIX: &str = ".trash-";
const TMP_LINK_PREFIX: &str = ".tmp-current-";
/// File name prefix of a migration program.
pub const MIGRATION_PREFIX: &str = constants::MIGRATION_PREFIX;
/// What happens after the migrator fails at boot; the end of every [`console_line`].
pub const AFTER_FAILURE: &str = "the datastore is unchanged; this boot stops and the node goes \
     back to the previous OS version after the boot deadline";

/// A datastore/OS version: dotted numbers, compared numerically with missing parts taken as 0.
#[derive(Debug, Clone)]
pub struct Version {
    text: String,
    parts: Vec<u64>,
}

impl Version {
    pub fn parse(text: &str) -> Result<Self> {
        let fail = |reason: &str| {
            InvalidVersionSnafu {
                version: text,
                reason,
            }
            .fail()
        };
        if text.is_empty() {
            return fail("it is empty");
        }
        let mut parts = Vec::new();
        for part in text.split('.') {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return fail("use dotted numbers such as 1.2.0");
            }
            match part.parse() {
                Ok(n) => parts.push(n),
                Err(_) => return fail("a number is too large"),
            }
        }
        Ok(Version {
            text: text.to_string(),
            parts,
        })
    }

    /// The version as written (used in directory names).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn significant(&self) -> &[u64] {
        let len = self
            .parts
            .iter()
            .rposition(|p| *p != 0)
            .map_or(0, |i| i + 1);
        &self.parts[..len]
    }

    /// The name of this version's store directory.
    pub fn dir_name(&self) -> String {
        format!("v{}", self.text)
    }

    /// The same version as a semantic version (missing numbers are 0), as the update manifest
    /// writes them; `None` with more than three significant numbers.
    pub fn to_semver(&self) -> Option<update_metadata::Version> {
        match *self.significant() {
            [] => Some(update_metadata::Version::new(0, 0, 0)),
            [major] => Some(update_metadata::Version::new(major, 0, 0)),
            [major, minor] => Some(update_metadata::Version::new(major, minor, 0)),
            [major, minor, patch] => Some(update_metadata::Version::new(major, minor, patch)),
            _ => None,
        }
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Version {}
impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.significant().cmp(other.significant())
    }
}
impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The `VERSION_ID` of an os-release file: the version the running OS expects its store at.
pub fn version_from_os_release(path: &Path) -> Result<Version> {
    let text = fs::read_to_string(path).context(ReadOsReleaseSnafu { path })?;
    let fields = os_release::OsRelease::parse(&text).context(OsReleaseSyntaxSnafu { path })?;
    match fields.non_empty(os_release::VERSION_ID) {
        Some(v) => Version::parse(v),
        None => NoVersionIdSnafu { path }.fail(),
    }
}

/// Which way migrations run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

impl Direction {
    fn flag(self) -> &'static str {
        match self {
            Direction::Forward => "--forward",
            Direction::Backward => "--backward",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Forward => "forward",
            Direction::Backward => "backward",
        })
    }
}

/// A migration program found in a plain, unverified migrations directory (development only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFile {
    /// The version it migrates to.
    pub version: Version,
    /// Its file name, `migrate_v<version>_<name>`.
    pub name: String,
    pub path: PathBuf,
}

/// Parses `migrate_v<version>_<name>`; None for a file that is not a migration at all.
pub fn parse_migration_name(path: &Path) -> Result<Option<(Version, String)>> {
    let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(None);
    };
    let Some(rest) = file_name.strip_prefix(MIGRATION_PREFIX) else {
        return Ok(None);
    };
    let Some((version, name)) = rest.split_once('_') else {
        return BadMigrationNameSnafu {
            path,
            reason: "there is no '_' between the version and the name",
        }
        .fail();
    };
    ensure!(
        !name.is_empty(),
        BadMigrationNameSnafu {
            path,
            reason: "the name after the version is empty",
        }
    );
    let version = Version::parse(version).map_err(|e| {
        BadMigrationNameSnafu {
            path,
            reason: e.to_string(),
        }
        .build()
    })?;
    Ok(Some((version, file_name.to_string())))
}

/// Every migration in the unverified directory `dir`, sorted by version then name. Files that
/// do not start with `migrate_v` are ignored.
pub fn find_migrations(dir: &Path) -> Result<Vec<MigrationFile>> {
    let entries = fs::read_dir(dir).context(ReadMigrationsDirSnafu { dir })?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.context(IoSnafu { path: dir })?;
        let path = entry.path();
        if let Some((version, name)) = parse_migration_name(&path)? {
            found.push(MigrationFile {
                version,
                name,
                path,
            });
        } else {
            debug!(path = %path.display(), "not a migration; ignored");
        }
    }
    found.sort_by(|a, b| a.version.cmp(&b.version).then_with(|| a.name.cmp(&b.name)));
    Ok(found)
}

/// The migrations of an unverified directory that take a store from `from` to `to`, in the
/// order to run them: versions in (from, to] going forward, in (to, from] in reverse going
/// backward.
pub fn plan(
    from: &Version,
    to: &Version,
    all: &[MigrationFile],
) -> (Direction, Vec<MigrationFile>) {
    if from <= to {
        let steps = all
            .iter()
            .filter(|m| *from < m.version && m.version <= *to)
            .cloned()
            .collect();
        (Direction::Forward, steps)
    } else {
        let steps = all
            .iter()
            .rev()
            .filter(|m| *to < m.version && m.version <= *from)
            .cloned()
            .collect();
        (Direction::Backward, steps)
    }
}

/// Where the migrations come from.
#[derive(Debug, Clone)]
pub enum MigrationSource {
    /// The signed mirror of the update repository (`metadata/` and `targets/` in `repo_dir`),
    /// verified against the root of trust `root_json`. What images use.
    Signed {
        repo_dir: PathBuf,
        root_json: PathBuf,
    },
    /// A plain directory of programs, run without any verification. Development only.
    UnsignedDir(PathBuf),
}

/// What to migrate and where to.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory holding `current` and the `v<version>` directories (or its `current`
    /// link).
    pub datastore_path: PathBuf,
    pub source: MigrationSource,
    pub target_version: Version,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// There is no datastore yet (first boot); storewolf creates it at the right version.
    NoDatastore { link: PathBuf },
    /// The store was already at the target version.
    AlreadyCurrent { version: Version },
    Migrated {
        from: Version,
        to: Version,
        direction: Direction,
        /// Names of the migrations run, in order.
        migrations: Vec<String>,
    },
}

/// A migration ready to run.
#[derive(Debug)]
struct Step {
    name: String,
    program: Program,
}

#[derive(Debug)]
enum Program {
    /// Verified and sealed in memory.
    Sealed(SealedProgram),
    /// A file of an unverified directory (development only).
    File(PathBuf),
}

impl Step {
    fn command(&self) -> Command {
        match &self.program {
            Program::Sealed(program) => program.command(),
            Program::File(path) => {
                let mut command = Command::new(path);
                command.arg0(&self.name);
                command
            }
        }
    }
}

/// The store directory `current` points at under `base`, and its version; `None` when there
/// is no `current` link.
pub fn current_store(base: &Path) -> Result<Option<(PathBuf, Version)>> {
    let link = base.join(CURRENT);
    match fs::symlink_metadata(&link) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context(IoSnafu { path: link }),
    }
    let dir = fs::canonicalize(&link).context(IoSnafu { path: &link })?;
    let version = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix('v'))
        .and_then(|v| Version::parse(v).ok());
    match version {
        Some(version) => Ok(Some((dir, version))),
        None => UnversionedStoreSnafu { path: dir }.fail(),
    }
}

/// Accepts the datastore base or its `current` link (Bottlerocket passes `.../current`).
fn base_dir(path: &Path) -> PathBuf {
    let is_current_link = path.file_name().is_some_and(|n| n == CURRENT)
        && fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    match path.parent() {
        Some(parent) if is_current_link => parent.to_path_buf(),
        _ => path.to_path_buf(),
    }
}

/// Migrates the store under `options.datastore_path` to `options.target_version`. On error
/// the datastore is as it was.
pub fn run(options: &Options) -> Result<Outcome> {
    let base = base_dir(&options.datastore_path);
    // Without a store there is nothing to lock (and no place for the lock file).
    if current_store(&base)?.is_none() {
        let link = base.join(CURRENT);
        info!(link = %link.display(), "no datastore yet (first boot); nothing to migrate");
        return Ok(Outcome::NoDatastore { link });
    }
    let lock = lock_base(&base)?;
    remove_leftovers(&base)?;
    let Some((from_dir, from)) = current_store(&base)? else {
        // Removed while we took the lock: whoever did that owns the store now.
        let link = base.join(CURRENT);
        return Ok(Outcome::NoDatastore { link });
    };
    let to = options.target_version.clone();
    if from == to {
        info!(version = %from, "datastore already at the target version");
        return Ok(Outcome::AlreadyCurrent { version: from });
    }
    migrate(&base, &lock, &from_dir, &from, &options.source, &to).context(MoveSnafu {
        from: from.clone(),
        to: to.clone(),
    })
}

/// The migrations between `from` and `to`, verified where they come from the signed mirror.
fn load_steps(
    base: &Path,
    source: &MigrationSource,
    from: &Version,
    to: &Version,
) -> Result<(Direction, Vec<Step>)> {
    let direction = if from <= to {
        Direction::Forward
    } else {
        Direction::Backward
    };
    match source {
        MigrationSource::Signed {
            repo_dir,
            root_json,
        } => {
            if fs::symlink_metadata(repo_dir).is_err() {
                warn!(
                    dir = %repo_dir.display(),
                    "no signed migration metadata: no update saved any, so there is no \
                     migration to run; moving the datastore without migrations"
                );
                return Ok((direction, Vec::new()));
            }
            let verified = signed::load_migrations(repo_dir, root_json, base, from, to)?;
            let steps = verified
                .into_iter()
                .map(|m| Step {
                    name: m.program.name().to_string(),
                    program: Program::Sealed(m.program),
                })
                .collect();
            Ok((direction, steps))
        }
        MigrationSource::UnsignedDir(dir) => {
            warn!(
                dir = %dir.display(),
                "running migrations from an unverified directory (development only)"
            );
            let all = find_migrations(dir)?;
            let (direction, files) = plan(from, to, &all);
            let mut steps = Vec::with_capacity(files.len());
            for file in files {
                let executable = fs::metadata(&file.path)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
                ensure!(executable, NotExecutableSnafu { path: &file.path });
                steps.push(Step {
                    name: file.name,
                    program: Program::File(file.path),
                });
            }
            Ok((direction, steps))
        }
    }
}

/// Everything after the store's version is known: load the migrations, migrate a copy, switch.
fn migrate(
    base: &Path,
    lock: &Flock<File>,
    from_dir: &Path,
    from: &Version,
    source: &MigrationSource,
    to: &Version,
) -> Result<Outcome> {
    let (direction, steps) = load_steps(base, source, from, to)?;
    info!(
        %from, %to, %direction,
        migrations = ?steps.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        "migrating datastore"
    );

    // Finishes an interrupted commit and keeps every other writer out until the switch.
    let source = FilesystemDataStore::open(from_dir).context(OpenSourceSnafu { path: from_dir })?;

    let staged = stage(base, lock, from_dir, to, direction, &steps)?;
    let target_dir = base.join(to.dir_name());
    if let Err(e) = install(base, &staged, &target_dir, to) {
        let _ = remove_dir(base, &staged);
        return Err(e);
    }
    drop(source);
    info!(%from, %to, "datastore switched to the new version");
    prune(base, &[to.dir_name().as_str(), dir_file_name(from_dir)]);
    Ok(Outcome::Migrated {
        from: from.clone(),
        to: to.clone(),
        direction,
        migrations: steps.into_iter().map(|m| m.name).collect(),
    })
}

/// The one line the binary prints when a run fails: what failed and what happens next.
pub fn console_line(error: &Error) -> String {
    let text = error.to_string();
    let one_line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    format!("migrator: {one_line}; {AFTER_FAILURE}")
}

fn dir_file_name(dir: &Path) -> &str {
    dir.file_name().and_then(|n| n.to_str()).unwrap_or_default()
}

/// Takes the base's lock. A holder may be a migration of a migrator that was just killed and
/// is still exiting, so a held lock is waited for, up to [`LOCK_WAIT`].
fn lock_base(base: &Path) -> Result<Flock<File>> {
    let lock = base.join(LOCK_FILE);
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut said = false;
    loop {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock)
            .context(IoSnafu { path: &lock })?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                if std::time::Instant::now() >= deadline {
                    return LockedSnafu { base, lock }.fail();
                }
                if !said {
                    info!(lock = %lock.display(), "waiting for another migrator or its migration to exit");
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err((_, errno)) => {
                return Err(Error::Io {
                    path: lock,
                    source: errno.into(),
                })
            }
        }
    }
}

fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Makes the final copy: one step per migration (or a plain copy when there is none).
/// Returns the staging directory holding the migrated store; on error nothing is left behind.
fn stage(
    base: &Path,
    lock: &Flock<File>,
    from_dir: &Path,
    to: &Version,
    direction: Direction,
    steps: &[Step],
) -> Result<PathBuf> {
    let new_staging = || {
        base.join(format!(
            "{STAGING_PREFIX}{}-{}",
            to.dir_name(),
            random_suffix()
        ))
    };
    let mut previous = from_dir.to_path_buf();
    let mut result = Ok(());
    for step in steps {
        let target = new_staging();
        result = copy_store(&previous, &target)
            .and_then(|()| run_migration(step, lock, direction, &previous, &target));
        if previous != from_dir {
            let _ = remove_dir(base, &previous);
        }
        previous = target;
        if result.is_err() {
            break;
        }
    }
    if steps.is_empty() {
        let target = new_staging();
        result = copy_store(from_dir, &target);
        previous = target;
    }
    let result = result.and_then(|()| finish_store(&previous));
    match result {
        Ok(()) => Ok(previous),
        Err(e) => {
            if previous != from_dir {
                let _ = remove_dir(base, &previous);
            }
            Err(e)
        }
    }
}

/// Copies what travels between versions (live data and metadata, kept values) from store `from`
/// into the new directory `to`. Hidden files (temporaries, trash) are skipped. Not flushed.
fn copy_store(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir(to).context(IoSnafu { path: to })?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o700)).context(IoSnafu { path: to })?;
    for part in [LIVE, SAVED_DIR] {
        let src = from.join(part);
        if src.is_dir() {
            copy_tree(&src, &to.join(part))?;
        }
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir(to).context(IoSnafu { path: to })?;
    for entry in fs::read_dir(from).context(IoSnafu { path: from })? {
        let entry = entry.context(IoSnafu { path: from })?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let file_type = entry.file_type().context(IoSnafu { path: &src })?;
        if file_type.is_dir() {
            copy_tree(&src, &dst)?;
        } else if file_type.is_file() {
            fs::copy(&src, &dst).context(IoSnafu { path: &dst })?;
        }
    }
    Ok(())
}

/// Runs one migration program on `target`, a fresh copy of `source`.
fn run_migration(
    step: &Step,
    lock: &Flock<File>,
    direction: Direction,
    source: &Path,
    target: &Path,
) -> Result<()> {
    info!(migration = %step.name, %direction, "running migration");
    let mut command = step.command();
    command
        .arg("--source-datastore")
        .arg(source)
        .arg("--target-datastore")
        .arg(target)
        .arg(direction.flag())
        .stdin(Stdio::null());
    // A killed migrator must leave no migration writing into a copy the next run deletes. The
    // migration dies with the migrator (parent-death signal; and if the migrator was already
    // gone before that was set, the child gives up at once). A dying process still finishes
    // the system call it is in, so the migration also shares the migrator's lock: the next
    // migrator waits until the last holder has really exited.
    let lock_fd = lock.as_raw_fd();
    let migrator_pid = nix::unistd::getpid();
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls (prctl, getppid, fcntl); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)?;
            if nix::unistd::getppid() != migrator_pid {
                return Err(std::io::Error::other("the migrator has exited"));
            }
            nix::fcntl::fcntl(
                lock_fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            )
            .map(|_| ())
            .map_err(std::io::Error::from)
        });
    }
    let output = command.output().context(SpawnSnafu { name: &step.name })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines = stderr.lines().filter(|l| !l.trim().is_empty());
    if output.status.success() {
        for line in lines {
            debug!(migration = %step.name, "{line}");
        }
        return Ok(());
    }
    for line in lines {
        warn!(migration = %step.name, "{line}");
    }
    MigrationFailedSnafu {
        name: &step.name,
        direction: direction.to_string(),
        status: output.status,
        message: last_words(&step.name, &stderr),
    }
    .fail()
}

/// The last line a failed migration wrote (its error message, without the `<name>: ` prefix
/// migration-helpers puts in front), cut to a length that fits a console line.
fn last_words(name: &str, stderr: &str) -> String {
    const MAX: usize = 300;
    let Some(line) = stderr.lines().map(str::trim).rfind(|l| !l.is_empty()) else {
        return "it wrote no error message".to_string();
    };
    let line = line
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(line);
    if line.len() <= MAX {
        return line.to_string();
    }
    let mut end = MAX;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &line[..end])
}

/// Gives the staged store everything a store has (opening it creates pending/, history/ and
/// an empty journal) and flushes all of it.
fn finish_store(dir: &Path) -> Result<()> {
    drop(FilesystemDataStore::open(dir).context(OpenCopySnafu { path: dir })?);
    fsync_tree(dir)
}

/// Flushes every file and directory under `dir`, and `dir` itself.
fn fsync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).context(IoSnafu { path: dir })? {
        let entry = entry.context(IoSnafu { path: dir })?;
        let path = entry.path();
        let file_type = entry.file_type().context(IoSnafu { path: &path })?;
        if file_type.is_dir() {
            fsync_tree(&path)?;
        } else if file_type.is_file() {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .context(IoSnafu { path: &path })?;
        }
    }
    fsync_dir(dir)
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .context(IoSnafu { path: dir })
}

/// Moves the complete, flushed store `staged` to `target_dir` and points `current` at it.
fn install(base: &Path, staged: &Path, target_dir: &Path, to: &Version) -> Result<()> {
    // A directory of the target's name is never the current store (the versions differ): it is
    // an older store of that version, or a copy installed by a run that crashed before switching.
    if fs::symlink_metadata(target_dir).is_ok() {
        info!(dir = %target_dir.display(), "replacing an older store of the target version");
        remove_dir(base, target_dir)?;
    }
    fs::rename(staged, target_dir).context(IoSnafu { path: target_dir })?;
    fsync_dir(base)?;

    let tmp = base.join(format!("{TMP_LINK_PREFIX}{}", random_suffix()));
    std::os::unix::fs::symlink(to.dir_name(), &tmp).context(IoSnafu { path: &tmp })?;
    if let Err(e) = fs::rename(&tmp, base.join(CURRENT)) {
        let _ = fs::remove_file(&tmp);
        return Err(e).context(IoSnafu {
            path: base.join(CURRENT),
        });
    }
    // The switch has happened. Should flushing it fail, a crash may bring back the old link,
    // which still names the complete old store: consistent either way, so not an error.
    if let Err(e) = fsync_dir(base) {
        warn!("cannot flush the switch to {}: {e}", to.dir_name());
    }
    Ok(())
}

/// Removes a directory so that it never appears half deleted: renamed to a trash name (and
/// that flushed) first.
fn remove_dir(base: &Path, dir: &Path) -> Result<()> {
    let trash = base.join(format!("{TRASH_PREFIX}{}", random_suffix()));
    fs::rename(dir, &trash).context(IoSnafu { path: dir })?;
    fsync_dir(base)?;
    fs::remove_dir_all(&trash).context(IoSnafu { path: &trash })
}

/// Deletes what an interrupted run left in `base`: staging copies, trash, temporary links,
/// tough's scratch directories.
fn remove_leftovers(base: &Path) -> Result<()> {
    for entry in fs::read_dir(base).context(IoSnafu { path: base })? {
        let entry = entry.context(IoSnafu { path: base })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let leftover_dir = [STAGING_PREFIX, TRASH_PREFIX, signed::TUF_SCRATCH_PREFIX]
            .iter()
            .any(|prefix| name.starts_with(prefix));
        if is_dir && leftover_dir {
            info!(path = %path.display(), "removing a copy left by an interrupted migration");
            fs::remove_dir_all(&path).context(IoSnafu { path: &path })?;
        } else if !is_dir && name.starts_with(TMP_LINK_PREFIX) {
            fs::remove_file(&path).context(IoSnafu { path: &path })?;
        }
    }
    Ok(())
}

/// Deletes every store directory except those named in `keep`. Failures are logged only: the
/// switch has happened, and the next migration tries again.
fn prune(base: &Path, keep: &[&str]) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_store = name
            .strip_prefix('v')
            .is_some_and(|v| Version::parse(v).is_ok())
            && entry.file_type().is_ok_and(|t| t.is_dir());
        if is_store && !keep.contains(&name.as_str()) {
            info!(dir = name, "pruning an older datastore");
            if let Err(e) = remove_dir(base, &entry.path()) {
                warn!(dir = name, "cannot prune an older datastore: {e}");
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(v("1.10.0") > v("1.9.2"));
        assert_eq!(v("1.2"), v("1.2.0"));
        assert!(v("2") > v("1.99.99"));
        for bad in [
            "",
            "1..2",
            "1.a",
            "v1",
            "1.2.3-rc1",
            "99999999999999999999999",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn migration_names() {
        let parse = |n: &str| parse_migration_name(Path::new(n));
        let (version, name) = parse("/m/migrate_v1.2.0_add-x").unwrap().unwrap();
        assert_eq!(
            (version, name.as_str()),
            (v("1.2.0"), "migrate_v1.2.0_add-x")
        );
        assert_eq!(parse("/m/README").unwrap(), None);
        for bad in ["migrate_v1.2.0", "migrate_v1.2.0_", "migrate_vx_y"] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn plans_forward_and_backward() {
        let all: Vec<MigrationFile> = ["1.1.0_a", "1.1.0_b", "1.2.0_c", "1.3.0_d"]
            .iter()
            .map(|n| {
                let path = PathBuf::from(format!("/m/migrate_v{n}"));
                let (version, name) = parse_migration_name(&path).unwrap().unwrap();
                MigrationFile {
                    version,
                    name,
                    path,
                }
            })
            .collect();
        let names = |steps: Vec<MigrationFile>| -> Vec<String> {
            steps.into_iter().map(|m| m.name[9..].to_string()).collect()
        };
        let (dir, steps) = plan(&v("1.0.0"), &v("1.2.0"), &all);
        assert_eq!(dir, Direction::Forward);
        assert_eq!(names(steps), ["1.1.0_a", "1.1.0_b", "1.2.0_c"]);
        let (dir, steps) = plan(&v("1.3.0"), &v("1.1"), &all);
        assert_eq!(dir, Direction::Backward);
        assert_eq!(names(steps), ["1.3.0_d", "1.2.0_c"]);
        let (_, steps) = plan(&v("1.3.0"), &v("2.0"), &all);
        assert!(steps.is_empty());
    }

    #[test]
    fn semantic_versions() {
        assert_eq!(
            v("1.2").to_semver(),
            Some(update_metadata::Version::new(1, 2, 0))
        );
        assert_eq!(
            v("1.2.3.0").to_semver(),
            Some(update_metadata::Version::new(1, 2, 3))
        );
        assert_eq!(v("1.2.3.4").to_semver(), None);
    }

    #[test]
    fn last_words_of_a_failed_migration() {
        let stderr = "INFO migrating\n\nmigrate_v1.2.0_x: Cannot rename a to b\n\n";
        assert_eq!(
            last_words("migrate_v1.2.0_x", stderr),
            "Cannot rename a to b"
        );
        assert_eq!(
            last_words("migrate_v1.2.0_x", ""),
            "it wrote no error message"
        );
        let long = "é".repeat(400);
        let words = last_words("m", &long);
        assert!(words.ends_with("...") && words.len() <= 303, "{words}");
    }

    #[test]
    fn console_line_is_one_line_and_says_what_happens_next() {
        let error = Error::Move {
            from: v("1.0.0"),
            to: v("1.1.0"),
            source: Box::new(Error::InvalidVersion {
                version: "x".into(),
                reason: "first\nsecond".into(),
            }),
        };
        let line = console_line(&error);
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with("migrator: Cannot move the datastore from version 1.0.0 to 1.1.0"));
        assert!(line.contains("first second"), "{line}");
        assert!(line.ends_with(AFTER_FAILURE), "{line}");
    }

    #[test]
    fn os_release_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("os-release");
        fs::write(&path, "NAME=Ballast\nVERSION_ID=\"1.4.0\"\n").unwrap();
        assert_eq!(version_from_os_release(&path).unwrap(), v("1.4.0"));
        fs::write(&path, "NAME=Ballast\n").unwrap();
        let err = version_from_os_release(&path).unwrap_err().to_string();
        assert!(err.contains("VERSION_ID"), "{err}");
        fs::write(&path, "NAME=Ballast OS\nVERSION_ID=1.4.0\n").unwrap();
        let err = version_from_os_release(&path).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("quotes"), "{err}");
    }
}
