//! Speed of `verity::format_file` against `veritysetup format --no-superblock`.
//!
//! ```text
//! cargo run --release -p verity --example bench [-- --size-mib 1024 --rounds 3]
//! ```
//!
//! Creates a pseudo-random file (1 GiB by default) in a temporary directory, reads it once so
//! both tools start from a warm page cache, then times both tools in alternating order and keeps
//! the best of each. It checks that the two hash files and root hashes are identical and prints
//! the figures and the ratio ours/veritysetup (below 1 means we are faster). It asserts nothing
//! about time; only a mismatch between the outputs makes it fail.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};
use verity::VerityParams;

struct Options {
    size_mib: u64,
    rounds: u32,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        size_mib: 1024,
        rounds: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|v| *v > 0)
                .ok_or(format!("{name} needs a positive number"))
        };
        match arg.as_str() {
            "--size-mib" => options.size_mib = value("--size-mib")?,
            "--rounds" => options.rounds = value("--rounds")? as u32,
            other => {
                return Err(format!(
                    "unknown argument '{other}'; usage: bench [--size-mib N] [--rounds N]"
                ))
            }
        }
    }
    Ok(options)
}

/// Fill `path` with `size` bytes from a xorshift generator: incompressible, cheap to make.
fn write_data(path: &Path, size: u64) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(4 << 20, File::create(path)?);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut chunk = vec![0u8; 4 << 20];
    let mut left = size;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(chunk.len() as u64) as usize;
        out.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    // Write everything back now, so that writeback does not run during the timed rounds.
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

fn warm_cache(path: &Path) -> std::io::Result<()> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 4 << 20];
    while file.read(&mut buf)? > 0 {}
    Ok(())
}

fn veritysetup_present() -> bool {
    Command::new("veritysetup")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Run veritysetup and return its time and the root hash it printed.
fn run_veritysetup(data: &Path, hash: &Path, salt: &str) -> Result<(Duration, String), String> {
    let _ = std::fs::remove_file(hash);
    let start = Instant::now();
    let output = Command::new("veritysetup")
        .args([
            "format",
            "--no-superblock",
            "--hash=sha256",
            "--data-block-size=4096",
            "--hash-block-size=4096",
        ])
        .arg(format!("--salt={salt}"))
        .arg(data)
        .arg(hash)
        .output()
        .map_err(|e| format!("cannot run veritysetup: {e}"))?;
    let elapsed = start.elapsed();
    if !output.status.success() {
        return Err(format!(
            "veritysetup failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let root = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(|r| r.trim().to_string())
        .ok_or("veritysetup printed no root hash")?;
    Ok((elapsed, root))
}

fn run_ours(data: &Path, hash: &Path, params: &VerityParams) -> Result<(Duration, String), String> {
    let _ = std::fs::remove_file(hash);
    let start = Instant::now();
    let output = verity::format_file(data, hash, params).map_err(|e| e.to_string())?;
    Ok((start.elapsed(), output.root_hash_hex()))
}

fn mib_per_s(size_mib: u64, time: Duration) -> f64 {
    size_mib as f64 / time.as_secs_f64()
}

fn run() -> Result<(), String> {
    let options = parse_args()?;
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let data = dir.path().join("data.img");
    let ours_hash = dir.path().join("ours.hash");
    let theirs_hash = dir.path().join("veritysetup.hash");
    let size = options.size_mib << 20;

    println!(
        "writing {} MiB of pseudo-random data to {}",
        options.size_mib,
        data.display()
    );
    write_data(&data, size).map_err(|e| format!("cannot write the data file: {e}"))?;
    warm_cache(&data).map_err(|e| format!("cannot read the data file: {e}"))?;

    let params = VerityParams::new((0u8..32).collect());
    let salt = verity::to_hex(&params.salt);
    let with_veritysetup = veritysetup_present();
    if !with_veritysetup {
        println!("veritysetup not found: timing our builder only (apt-get install cryptsetup-bin)");
    }

    let mut best_ours = Duration::MAX;
    let mut best_theirs = Duration::MAX;
    let mut roots = (String::new(), String::new());
    for round in 0..options.rounds {
        // Alternate which tool goes first, so neither always runs on a hotter machine.
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for ours in order {
            if ours {
                let (time, root) = run_ours(&data, &ours_hash, &params)?;
                println!(
                    "round {}: ours        {:.3} s",
                    round + 1,
                    time.as_secs_f64()
                );
                best_ours = best_ours.min(time);
                roots.0 = root;
            } else if with_veritysetup {
                let (time, root) = run_veritysetup(&data, &theirs_hash, &salt)?;
                println!(
                    "round {}: veritysetup {:.3} s",
                    round + 1,
                    time.as_secs_f64()
                );
                best_theirs = best_theirs.min(time);
                roots.1 = root;
            }
        }
    }

    println!();
    println!(
        "data: {} MiB, warm page cache, best of {} rounds, {} threads available",
        options.size_mib,
        options.rounds,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "ours (verity::format_file):          {:.3} s  ({:.0} MiB/s)",
        best_ours.as_secs_f64(),
        mib_per_s(options.size_mib, best_ours)
    );
    if !with_veritysetup {
        return Ok(());
    }
    println!(
        "veritysetup format --no-superblock:  {:.3} s  ({:.0} MiB/s)",
        best_theirs.as_secs_f64(),
        mib_per_s(options.size_mib, best_theirs)
    );
    println!(
        "ratio ours/veritysetup: {:.2}",
        best_ours.as_secs_f64() / best_theirs.as_secs_f64()
    );

    let ours = std::fs::read(&ours_hash).map_err(|e| e.to_string())?;
    let theirs = std::fs::read(&theirs_hash).map_err(|e| e.to_string())?;
    if roots.0 != roots.1 || ours != theirs {
        return Err(format!(
            "OUTPUTS DIFFER: root hash ours {} veritysetup {}, hash files {} vs {} bytes",
            roots.0,
            roots.1,
            ours.len(),
            theirs.len()
        ));
    }
    println!(
        "outputs identical: root hash {}, hash tree {} bytes",
        roots.0,
        ours.len()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}
