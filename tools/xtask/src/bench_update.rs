//! `cargo xtask bench update`: how long the release `updog update-image` takes to fetch, verify,
//! decompress and write an update into a disk image file, against the plain download of the
//! same compressed root target with `curl -s URL | tee FILE | sha256sum` in the same run.
//!
//! The repository is made with the `repo` crate from a root image of `--size` MiB of random
//! bytes (so zstd cannot shrink it and the decompressed and compressed sizes match), a 1 MiB
//! boot image and a hash image of the size dm-verity would need, and served by
//! `repo::serve::ServedDir` on 127.0.0.1. Both measurements read the same files from the same
//! server, in alternating order; each prints the median of `--rounds`.
//!
//! updog's time covers everything `update-image` does: loading and verifying the TUF metadata,
//! the migrations mirror, the three targets, and `fsync` of the disk image. The curl pipeline
//! does not flush what it writes, so the time of a `sync` of its output file is printed beside
//! it for reference.

use anyhow::{bail, Context, Result};
use disk_layout::{Layout, MIB};
use repo::serve::ServedDir;
use repo::{add_images, AddOptions, ImageFile, ImageSet, KeyDir, KeyOptions, RepoDir};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use xtask::host;

#[derive(Debug, clap::Args)]
pub struct BenchUpdateArgs {
    /// Size of the root image in MiB (random bytes, so its target is as large).
    #[arg(long, default_value_t = 1024)]
    pub size: u64,
    /// Measurements of each kind; the median is printed.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

/// The ratio updog / curl this bench is meant to stay under.
const TARGET_RATIO: f64 = 1.3;

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Writes `size` bytes from /dev/urandom to `path`.
fn random_file(path: &Path, size: u64) -> Result<()> {
    let mut random = std::fs::File::open("/dev/urandom").context("cannot open /dev/urandom")?;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let mut buf = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        let n = left.min(MIB) as usize;
        random.read_exact(&mut buf[..n])?;
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(())
}

/// A disk with room for the images, the fresh-image boot flags and the GRUB block.
fn make_disk(dir: &Path, layout: &Layout) -> Result<PathBuf> {
    let disk = dir.join("disk.img");
    imagebuilder::disk::make_fresh_boot_disk(
        &disk,
        layout,
        layout.min_disk_size(),
        b"bench update",
    )?;
    Ok(disk)
}

pub fn run(args: &BenchUpdateArgs) -> Result<()> {
    if args.rounds == 0 || args.size == 0 {
        bail!("--rounds and --size must be at least 1");
    }
    host::ensure_for("bench update")?;
    host::run(
        "cargo",
        &["build", "--release", "-p", "updog", "--bin", "updog"],
    )?;
    let updog = host::target_dir().join("release/updog");

    // Beside the build outputs: several GiB, more than a tmpfs /tmp may hold.
    let build = host::root().join("build");
    std::fs::create_dir_all(&build)?;
    let dir = tempfile::Builder::new()
        .prefix("bench-update-")
        .tempdir_in(&build)?;
    let path = |name: &str| dir.path().join(name);

    eprintln!(
        "bench update: making a repository with a {} MiB root image",
        args.size
    );
    let images = path("images");
    std::fs::create_dir_all(&images)?;
    let hash_mib = (args.size / 128 + 1).max(4);
    random_file(&images.join("boot.ext4"), MIB)?;
    random_file(&images.join("root.erofs"), args.size * MIB)?;
    random_file(&images.join("root.verity"), hash_mib * MIB / 2)?;
    let set = ImageSet {
        variant: "dev".into(),
        arch: "x86_64".into(),
        version: "2.0.0".parse()?,
        build_id: "bench".into(),
        boot: ImageFile::new(images.join("boot.ext4")),
        root: ImageFile::new(images.join("root.erofs")),
        hash: ImageFile::new(images.join("root.verity")),
    };
    let repo = RepoDir::new(path("repo"));
    let runtime = tokio::runtime::Runtime::new()?;
    let (keys, published) = runtime.block_on(async {
        let keys = KeyDir::generate(path("keys"), &KeyOptions::default()).await?;
        let options = AddOptions {
            // Random bytes do not compress; the fastest level keeps the setup short.
            zstd_level: 1,
            ..AddOptions::default()
        };
        let published = add_images(&repo, &keys, &set, &options).await?;
        anyhow::Ok((keys, published))
    })?;
    // The source images are not needed any more; the targets are.
    std::fs::remove_dir_all(&images)?;
    let root_target = std::fs::read_dir(repo.targets_dir())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(&format!(".{}", published.images.root)))
        .context("the root target is in the repository")?;
    let target_size = std::fs::metadata(repo.targets_dir().join(&root_target))?.len();
    let expected_sha = root_target
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string();

    let layout = Layout {
        root_mib: args.size + 8,
        hash_mib,
        ..Layout::small()
    };
    let disk = make_disk(dir.path(), &layout)?;
    let served = ServedDir::start(repo.dir())?;
    let url = served.url();
    std::fs::write(
        path("updog.toml"),
        format!(
            "metadata_base_url = \"{url}metadata/\"\ntargets_base_url = \"{url}targets/\"\n\
             seed = 0\nversion_lock = \"latest\"\nignore_waves = true\n"
        ),
    )?;
    std::fs::write(
        path("os-release"),
        "NAME=Ballast\nVERSION_ID=1.0.0\nVARIANT_ID=dev\nBUILD_ID=old\nARCH=x86_64\n",
    )?;
    let target_url = format!("{url}targets/{root_target}");
    let copy = path("curl-copy");

    let mut updog_times = Vec::new();
    let mut curl_times = Vec::new();
    let mut sync_times = Vec::new();
    let mut plain_times = Vec::new();
    for round in 0..args.rounds {
        let run_updog = |times: &mut Vec<Duration>| -> Result<()> {
            let started = Instant::now();
            let out = Command::new(&updog)
                .arg("--config")
                .arg(path("updog.toml"))
                .arg("--os-release")
                .arg(path("os-release"))
                .arg("--root-json")
                .arg(keys.root_json())
                .arg("--cache-dir")
                .arg(path("cache"))
                .arg("--migrations-dir")
                .arg(path("migrations"))
                .arg("--disk")
                .arg(&disk)
                .args(["--active", "A", "--log-level", "warn", "update-image"])
                .output()
                .context("cannot run updog")?;
            let elapsed = started.elapsed();
            if !out.status.success() {
                bail!(
                    "updog update-image failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            times.push(elapsed);
            Ok(())
        };
        let run_curl = |times: &mut Vec<Duration>,
                        plain: &mut Vec<Duration>,
                        syncs: &mut Vec<Duration>|
         -> Result<()> {
            let _ = std::fs::remove_file(&copy);
            let started = Instant::now();
            let out = Command::new("sh")
                .arg("-c")
                .arg("curl -s \"$1\" | tee \"$2\" | sha256sum")
                .arg("sh")
                .arg(&target_url)
                .arg(&copy)
                .output()
                .context("cannot run curl")?;
            let elapsed = started.elapsed();
            let printed = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() || !printed.starts_with(&expected_sha) {
                bail!("curl | tee | sha256sum did not fetch the target: {printed}");
            }
            times.push(elapsed);
            // The transfer alone, without tee and sha256sum (for reference).
            let _ = std::fs::remove_file(&copy);
            let started = Instant::now();
            let status = Command::new("curl")
                .args(["-s", "-o"])
                .arg(&copy)
                .arg(&target_url)
                .status()?;
            if status.success() {
                plain.push(started.elapsed());
            }
            let started = Instant::now();
            let status = Command::new("sync").arg(&copy).status()?;
            if status.success() {
                syncs.push(started.elapsed());
            }
            Ok(())
        };
        if round % 2 == 0 {
            run_updog(&mut updog_times)?;
            run_curl(&mut curl_times, &mut plain_times, &mut sync_times)?;
        } else {
            run_curl(&mut curl_times, &mut plain_times, &mut sync_times)?;
            run_updog(&mut updog_times)?;
        }
        eprintln!(
            "bench update: round {}: updog {:.2} s, curl {:.2} s",
            round + 1,
            secs(updog_times[round]),
            secs(curl_times[round])
        );
    }
    drop(served);

    let updog_median = median(&mut updog_times);
    let curl_median = median(&mut curl_times);
    let mib = target_size as f64 / MIB as f64;
    let ratio = secs(updog_median) / secs(curl_median);
    println!(
        "root target: {mib:.0} MiB compressed, {} MiB written; median of {} rounds",
        args.size, args.rounds
    );
    println!(
        "updog update-image (fetch + verify + zstd + write + fsync, 3 targets): {:.2} s ({:.0} MiB/s)",
        secs(updog_median),
        mib / secs(updog_median)
    );
    println!(
        "curl -s URL | tee FILE | sha256sum (root target only):             {:.2} s ({:.0} MiB/s)",
        secs(curl_median),
        mib / secs(curl_median)
    );
    if !plain_times.is_empty() {
        let plain = median(&mut plain_times);
        println!(
            "  (curl -s -o FILE alone, no hashing: {:.2} s, {:.0} MiB/s)",
            secs(plain),
            mib / secs(plain)
        );
    }
    if !sync_times.is_empty() {
        println!(
            "  (sync of curl's output file afterwards: {:.2} s)",
            secs(median(&mut sync_times))
        );
    }
    println!(
        "ratio updog / curl: {ratio:.2} (target <= {TARGET_RATIO}){}",
        if ratio <= TARGET_RATIO {
            ""
        } else {
            " ABOVE TARGET"
        }
    );
    Ok(())
}
