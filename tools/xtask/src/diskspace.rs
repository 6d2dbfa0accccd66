//! Free disk space, checked before a long command starts: a full disk otherwise shows up
//! twenty minutes in, as a linker killed by SIGBUS or a truncated image, far from its cause.
//!
//! What a command needs is a budget for a cold start (an empty target directory and no built
//! images), measured on a clean clone. What the target and build directories already hold
//! counts against that budget, since a warm run rewrites much of it in place.

use anyhow::{bail, Context, Result};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// GiB that `cargo xtask test` fills from a cold start: about 14 GiB of target and build
/// directories on a clean clone, plus the VM tests' temporary disks.
pub const TEST_BUDGET_GIB: u64 = 20;

/// The smallest free space any long command is started with, however warm its directories.
pub const FLOOR_GIB: u64 = 4;

const GIB: u64 = 1 << 30;

/// Fails, naming what is free, what is needed and what can be removed, when the filesystem
/// holding `dirs` has less room than `budget_gib` minus what `dirs` already hold.
pub fn ensure(command: &str, budget_gib: u64, dirs: &[PathBuf]) -> Result<()> {
    let Some(anchor) = dirs.iter().find_map(|d| existing_ancestor(d)) else {
        return Ok(());
    };
    let stat = nix::sys::statvfs::statvfs(&anchor)
        .with_context(|| format!("cannot read the free space of {}", anchor.display()))?;
    let free = stat.blocks_available() * stat.fragment_size();
    let held: u64 = dirs.iter().map(|d| disk_usage(d)).sum();
    let needed = needed_bytes(budget_gib, held);
    if free < needed {
        bail!(
            "`cargo xtask {command}` needs about {:.1} GiB free on the filesystem of {}, and {:.1} GiB is free \
             ({:.1} GiB already held by {}); free some space (for example `cargo clean`, or remove old \
             clones and their target directories) and retry",
            needed as f64 / GIB as f64,
            anchor.display(),
            free as f64 / GIB as f64,
            held as f64 / GIB as f64,
            dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(" and "),
        );
    }
    Ok(())
}

/// Bytes still to be found free: the budget less what is already held, never below the floor.
pub fn needed_bytes(budget_gib: u64, held: u64) -> u64 {
    (budget_gib * GIB).saturating_sub(held).max(FLOOR_GIB * GIB)
}

fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors().find(|p| p.exists()).map(Path::to_path_buf)
}

/// Bytes allocated under `path` (0 when absent). Symlinks are not followed.
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let own = meta.blocks() * 512;
    if !meta.is_dir() {
        return own;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return own;
    };
    own + entries
        .flatten()
        .map(|e| disk_usage(&e.path()))
        .sum::<u64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_held_counts_against_the_budget_down_to_the_floor() {
        assert_eq!(needed_bytes(20, 0), 20 * GIB);
        assert_eq!(needed_bytes(20, 6 * GIB), 14 * GIB);
        assert_eq!(needed_bytes(20, 30 * GIB), FLOOR_GIB * GIB);
    }

    #[test]
    fn usage_adds_up_the_files_of_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/f"), vec![1u8; 1 << 20]).unwrap();
        let used = disk_usage(dir.path());
        assert!(used >= 1 << 20, "{used}");
        assert_eq!(disk_usage(&dir.path().join("absent")), 0);
    }

    #[test]
    fn an_impossible_budget_is_refused_with_the_figures() {
        let dir = tempfile::tempdir().unwrap();
        let err = ensure("test", 1 << 30, &[dir.path().to_path_buf()]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("needs about") && msg.contains("is free"),
            "{msg}"
        );
    }
}
