//! `cargo xtask repo ...`: the signed TUF update repository, made from built images with the
//! `repo` crate.
//!
//! ```text
//! cargo xtask repo keys [--separate]          development keys + root.json in build/repo-keys
//! cargo xtask repo add --variant dev          compress, list in manifest.json, sign (build/repo)
//! cargo xtask repo add-migrations --from 0.1.0 --to 0.2.0 migrate_v0.2.0_x ...
//!                                             add settings migrations between two versions
//! cargo xtask repo refresh-timestamp          sign a new timestamp.json
//! cargo xtask repo refresh                    sign targets, snapshot and timestamp again
//! cargo xtask repo validate                   read it back as a node would, verify everything
//! ```

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use repo::repository::{add_migrations_with, MigrationOptions};
use repo::{
    AddOptions, Expirations, ImageSet, KeyDir, KeyOptions, RepoDir, Span, Timestamp, Version,
    WavePolicy,
};
use std::path::{Path, PathBuf};
use xtask::host;

use xtask::image::{REPO_DIR, REPO_KEYS_DIR as KEYS_DIR};

#[derive(Debug, Args)]
pub struct RepoArgs {
    #[command(subcommand)]
    command: RepoCommand,
}

#[derive(Debug, Subcommand)]
enum RepoCommand {
    /// Make development signing keys and a signed root.json (never overwrites existing keys).
    Keys {
        #[command(flatten)]
        keys: KeysArg,
        /// One key per role (root, targets, snapshot, timestamp) instead of one for all.
        #[arg(long)]
        separate: bool,
        /// How long root.json is valid ("1 year", "6 months", ...).
        #[arg(long, default_value = "1 year")]
        root_expires: Span,
    },
    /// Add a build's boot, root and hash images to the repository and sign it.
    Add(AddArgs),
    /// Add settings migrations between two versions (files named migrate_v<TO>_<name>) and
    /// sign the repository; nodes run them, in the order given, when they move between the
    /// versions.
    AddMigrations(AddMigrationsArgs),
    /// Sign a new timestamp.json (only the timestamp key is needed).
    RefreshTimestamp {
        #[command(flatten)]
        paths: Paths,
        /// How long the new timestamp is valid.
        #[arg(long, default_value = "1 week")]
        timestamp_expires: Span,
    },
    /// Sign targets, snapshot and timestamp again with new expirations, changing no target.
    Refresh {
        #[command(flatten)]
        paths: Paths,
        #[command(flatten)]
        expires: ExpiryArgs,
    },
    /// Load the repository with tough's client, verify every target and the manifest.
    Validate {
        /// Repository directory (metadata/ and targets/).
        #[arg(long)]
        repo: Option<PathBuf>,
        /// The root of trust (default: root.json of the key directory).
        #[arg(long)]
        root: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct KeysArg {
    /// Key directory (root.json and keys/).
    #[arg(long)]
    keys_dir: Option<PathBuf>,
}

impl KeysArg {
    fn dir(&self) -> PathBuf {
        self.keys_dir
            .clone()
            .unwrap_or_else(|| host::root().join(KEYS_DIR))
    }
}

#[derive(Debug, Args)]
struct Paths {
    /// Repository directory (metadata/ and targets/).
    #[arg(long)]
    repo: Option<PathBuf>,
    #[command(flatten)]
    keys: KeysArg,
}

impl Paths {
    fn repo(&self) -> RepoDir {
        RepoDir::new(default_repo(&self.repo))
    }
}

fn default_repo(repo: &Option<PathBuf>) -> PathBuf {
    repo.clone().unwrap_or_else(|| host::root().join(REPO_DIR))
}

#[derive(Debug, Args)]
struct ExpiryArgs {
    /// How long targets.json is valid.
    #[arg(long, default_value = "2 weeks")]
    targets_expires: Span,
    /// How long snapshot.json is valid.
    #[arg(long, default_value = "2 weeks")]
    snapshot_expires: Span,
    /// How long timestamp.json is valid.
    #[arg(long, default_value = "1 week")]
    timestamp_expires: Span,
}

impl ExpiryArgs {
    fn expirations(&self) -> Expirations {
        Expirations {
            targets: self.targets_expires,
            snapshot: self.snapshot_expires,
            timestamp: self.timestamp_expires,
        }
    }
}

#[derive(Debug, Args)]
struct AddArgs {
    /// Variant of the build to add.
    #[arg(long, default_value = xtask::image::DEFAULT_VARIANT)]
    variant: String,
    /// Version of the build to add (default: the workspace version).
    #[arg(long)]
    version: Option<String>,
    /// The build directory (default: build/images/<variant>-<version>).
    #[arg(long)]
    build_dir: Option<PathBuf>,
    #[command(flatten)]
    paths: Paths,
    /// Highest version nodes may move to (default: the highest of this variant and arch).
    #[arg(long)]
    max_version: Option<Version>,
    /// Wave policy: "none" (everyone at once), "gradual" (Bottlerocket's default, 1% after an
    /// hour to 100% after 6 days) or a TOML wave file.
    #[arg(long, default_value = "none")]
    waves: String,
    /// When the waves count from (RFC 3339; default: now).
    #[arg(long)]
    wave_start: Option<Timestamp>,
    #[command(flatten)]
    expires: ExpiryArgs,
    /// zstd level of the image targets (1-22).
    #[arg(long, default_value_t = repo::DEFAULT_ZSTD_LEVEL, value_parser = clap::value_parser!(i32).range(1..=22))]
    zstd_level: i32,
    /// Replace an update of the same variant, arch and version.
    #[arg(long)]
    replace: bool,
}

#[derive(Debug, Args)]
struct AddMigrationsArgs {
    /// The version the migrations migrate from (the previous release).
    #[arg(long)]
    from: Version,
    /// The version they migrate to; every file must be named migrate_v<TO>_<name>.
    #[arg(long)]
    to: Version,
    /// The migration programs, in the order they run going forward.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    paths: Paths,
    #[command(flatten)]
    expires: ExpiryArgs,
    /// Replace the migrations already listed for the same two versions.
    #[arg(long)]
    replace: bool,
}

async fn add_migrations(args: &AddMigrationsArgs) -> Result<()> {
    let repo = args.paths.repo();
    let keys = KeyDir::new(args.paths.keys.dir());
    let options = MigrationOptions {
        expirations: args.expires.expirations(),
        now: Timestamp::now(),
        replace: args.replace,
    };
    let published = add_migrations_with(
        &repo,
        &keys,
        args.from.clone(),
        args.to.clone(),
        &args.files,
        &options,
    )
    .await?;
    println!(
        "added migrations ({}, {}) to {}:",
        args.from,
        args.to,
        repo.dir().display()
    );
    for name in &published.names {
        println!("  {name}");
    }
    println!(
        "signed: targets v{}, snapshot v{}, timestamp v{}",
        published.versions.targets, published.versions.snapshot, published.versions.timestamp
    );
    Ok(())
}

fn wave_policy(spec: &str) -> Result<WavePolicy> {
    Ok(match spec {
        "none" => WavePolicy::none(),
        "gradual" => WavePolicy::gradual(),
        path => WavePolicy::load(Path::new(path))?,
    })
}

async fn add(args: &AddArgs) -> Result<()> {
    let build_dir = match &args.build_dir {
        Some(dir) => dir.clone(),
        None => {
            let version = args
                .version
                .clone()
                .unwrap_or_else(xtask::image::default_version);
            xtask::image::variant_dir(&args.variant, &version)
        }
    };
    let images = ImageSet::from_build_dir(&build_dir)?;
    let options = AddOptions {
        max_version: args.max_version.clone(),
        waves: wave_policy(&args.waves)?,
        wave_start: args.wave_start,
        expirations: args.expires.expirations(),
        now: Timestamp::now(),
        zstd_level: args.zstd_level,
        replace: args.replace,
    };
    let repo = args.paths.repo();
    let keys = KeyDir::new(args.paths.keys.dir());
    let published = repo::add_images(&repo, &keys, &images, &options).await?;
    println!(
        "added {} {} {} (build {}) to {}:",
        images.variant,
        images.arch,
        images.version,
        images.build_id,
        repo.dir().display()
    );
    for name in published.images.names() {
        println!("  {name}");
    }
    println!(
        "signed: targets v{}, snapshot v{}, timestamp v{}",
        published.versions.targets, published.versions.snapshot, published.versions.timestamp
    );
    println!("metadata URL: {}", repo.metadata_url()?);
    println!("targets URL:  {}", repo.targets_url()?);
    Ok(())
}

async fn run_async(args: RepoArgs) -> Result<()> {
    match args.command {
        RepoCommand::Keys {
            keys,
            separate,
            root_expires,
        } => {
            let options = KeyOptions {
                separate,
                root_expires,
                now: Timestamp::now(),
            };
            let dir = KeyDir::generate(keys.dir(), &options).await?;
            println!("{}", dir.root_json().display());
            eprintln!(
                "xtask: the private keys are in {}: keep them secret and out of git",
                dir.dir().join(repo::keys::KEYS_SUBDIR).display()
            );
        }
        RepoCommand::Add(args) => add(&args).await?,
        RepoCommand::AddMigrations(args) => add_migrations(&args).await?,
        RepoCommand::RefreshTimestamp {
            paths,
            timestamp_expires,
        } => {
            let expires = repo::refresh_timestamp(
                &paths.repo(),
                &KeyDir::new(paths.keys.dir()),
                timestamp_expires,
                Timestamp::now(),
            )
            .await?;
            println!("timestamp.json signed, valid until {expires}");
        }
        RepoCommand::Refresh { paths, expires } => {
            let versions = repo::refresh(
                &paths.repo(),
                &KeyDir::new(paths.keys.dir()),
                &expires.expirations(),
                Timestamp::now(),
            )
            .await?;
            println!(
                "signed again: targets v{}, snapshot v{}, timestamp v{}",
                versions.targets, versions.snapshot, versions.timestamp
            );
        }
        RepoCommand::Validate { repo, root } => {
            let dir = RepoDir::new(default_repo(&repo));
            let root = root.unwrap_or_else(|| KeyDir::new(host::root().join(KEYS_DIR)).root_json());
            let checked = dir.validate(&root).await?;
            for target in &checked.targets {
                match target.decompressed {
                    Some(size) => println!(
                        "ok  {} ({} bytes, {size} decompressed)",
                        target.name, target.length
                    ),
                    None => println!("ok  {} ({} bytes)", target.name, target.length),
                }
            }
            for update in &checked.manifest.updates {
                println!(
                    "update {} {} {} (max_version {}, {} waves)",
                    update.variant,
                    update.arch,
                    update.version,
                    update.max_version,
                    update.waves.len()
                );
            }
            for ((from, to), names) in &checked.manifest.migrations {
                println!("migrations ({from}, {to}): {}", names.join(", "));
            }
            for (role, expires) in &checked.expires {
                println!("{role} expires {expires}");
            }
            println!(
                "{}: {} targets verified against {}",
                dir.dir().display(),
                checked.targets.len(),
                root.display()
            );
        }
    }
    Ok(())
}

/// Runs one `cargo xtask repo` command.
pub fn run(args: RepoArgs) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run_async(args))
}
