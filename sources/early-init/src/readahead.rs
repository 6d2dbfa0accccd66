//! Warming the page cache for the first programs of the new root.
//!
//! Under software emulation, the first start of systemd and of the API server is dominated by
//! page faults on the root: each 4 KiB page is read, hashed by dm-verity and decompressed by
//! erofs on demand, one fault at a time. The image lists the files those programs load
//! (`/usr/share/ballast/boot-readahead`, written by the build); right after mounting the root,
//! init forks a helper that reads them in order on the other CPU while init finishes its own
//! work and systemd starts, so most of their pages are already cached when they are needed.
//! The helper is best effort: a missing list or file is skipped silently, and it never delays
//! the boot (init does not wait for it; systemd reaps it when it exits).

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{fork, ForkResult};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// Where the build puts the list, relative to the root.
pub const LIST_PATH: &str = constants::READAHEAD_LIST_IN_IMAGE;

/// The relative paths in a read-ahead list: one per line, blank lines and `#` comments
/// skipped, absolute paths and `..` refused (the list must stay inside the root).
pub fn parse_list(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| !l.starts_with('/') && !l.split('/').any(|part| part == ".."))
        .collect()
}

/// Starts the helper for the root mounted at `root`; returns whether it started.
pub fn start(root: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(root.join(LIST_PATH)) else {
        return false;
    };
    let Ok(dir) = nix::fcntl::open(
        root,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    // SAFETY: open returned a fresh descriptor that nothing else owns.
    let dir = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(dir) };
    // SAFETY: init is single-threaded here, so the child may run ordinary code after fork.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            // Lower priority than init and the programs it starts.
            // SAFETY: nice(2) has no memory-safety preconditions.
            unsafe { libc::nice(10) };
            read_all(&dir, &parse_list(&text));
            // SAFETY: _exit ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { .. }) => true,
        Err(_) => false,
    }
}

/// Reads every file of `list` under the directory `dir` to its end.
fn read_all(dir: &OwnedFd, list: &[&str]) {
    let mut buf = vec![0u8; 256 * 1024];
    for rel in list {
        let Ok(fd) = openat(
            Some(dir.as_raw_fd()),
            *rel,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        // SAFETY: openat returned a fresh descriptor that nothing else owns.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        while let Ok(n) = nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            if n == 0 {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_entries_stay_inside_the_root() {
        let text =
            "usr/lib/systemd/systemd\n\n# comment\n/etc/shadow\nusr/../../x\n usr/bin/apiserver \n";
        assert_eq!(
            parse_list(text),
            vec!["usr/lib/systemd/systemd", "usr/bin/apiserver"]
        );
    }

    #[test]
    fn reads_listed_files_and_skips_missing_ones() {
        let dir = std::env::temp_dir().join(format!("readahead-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("usr/bin")).unwrap();
        std::fs::write(dir.join("usr/bin/a"), vec![7u8; 300_000]).unwrap();
        let fd =
            nix::fcntl::open(&dir, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty()).unwrap();
        // SAFETY: fresh descriptor.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        read_all(&fd, &["usr/bin/a", "usr/bin/missing"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
