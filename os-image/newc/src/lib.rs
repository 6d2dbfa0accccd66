//! A writer for cpio "newc" archives, the format the Linux kernel unpacks as an initramfs.
//!
//! # Background
//!
//! Each entry is a 110-byte ASCII header (`070701` and thirteen 8-digit hex fields), the
//! NUL-terminated path padded to a multiple of four bytes, and the data padded likewise; the
//! archive ends with an entry named `TRAILER!!!`. The kernel does not create missing parent
//! directories while unpacking, so the writer adds them (mode 0755) before the first entry
//! below them. Entries are owned by root, carry mtime 0 and get inode numbers in the order they
//! are added, so the same calls always give the same bytes: archives are reproducible.
//!
//! The image builder (`imagebuilder`) uses it for the initramfs of every image, and the VM test
//! harness (`vmtest`, which re-exports it as `vmtest::cpio`) for test initramfs images.
//!
//! # Usage
//!
//! ```
//! use newc::CpioWriter;
//!
//! let mut w = CpioWriter::new(Vec::new());
//! w.char_device("dev/console", 0o600, 5, 1)?;
//! w.file("init", 0o755, b"#!/bin/true\n")?;
//! w.file("etc/modules.order", 0o644, b"kernel/fs/erofs/erofs.ko\n")?;
//! let archive: Vec<u8> = w.finish()?;
//! assert!(archive.starts_with(b"070701"));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Current limitations
//!
//! - Every entry is owned by root (uid and gid 0) with mtime 0; there are no hard links.
//! - One entry holds at most 4 GiB; data is passed in memory, not streamed.
//! - The writer does not compress; wrap the output (e.g. in a gzip encoder) for that.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::io::{self, Write};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Writes a newc archive to `W`.
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
    dirs: BTreeSet<String>,
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive written to `out`.
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            next_ino: 1,
            written: 0,
            dirs: BTreeSet::new(),
        }
    }

    /// Adds a directory (and any missing parents).
    pub fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        let path = clean(path)?;
        self.parents(&path)?;
        if self.dirs.insert(path.clone()) {
            self.entry(&path, S_IFDIR | (mode & 0o7777), 2, (0, 0), &[])?;
        }
        Ok(())
    }

    /// Adds a regular file.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let path = clean(path)?;
        self.parents(&path)?;
        self.entry(&path, S_IFREG | (mode & 0o7777), 1, (0, 0), data)
    }

    /// Adds a symbolic link pointing at `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let path = clean(path)?;
        self.parents(&path)?;
        self.entry(&path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// Adds a character device node, e.g. `dev/console` 5:1.
    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        let path = clean(path)?;
        self.parents(&path)?;
        self.entry(&path, S_IFCHR | (mode & 0o7777), 1, (major, minor), &[])
    }

    /// Writes the trailer and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn parents(&mut self, path: &str) -> io::Result<()> {
        let mut prefix = String::new();
        let components: Vec<&str> = path.split('/').collect();
        for component in &components[..components.len() - 1] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(component);
            if self.dirs.insert(prefix.clone()) {
                let dir = prefix.clone();
                self.entry(&dir, S_IFDIR | 0o755, 2, (0, 0), &[])?;
            }
        }
        Ok(())
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "entry larger than 4 GiB"))?;
        let ino = self.next_ino;
        self.next_ino += 1;
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            size,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // checksum (unused in newc)
        ];
        let mut header = String::with_capacity(110);
        header.push_str("070701");
        for field in fields {
            header.push_str(&format!("{field:08x}"));
        }
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(&[0])?;
        self.pad()?;
        self.write(data)?;
        self.pad()
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let rem = (self.written % 4) as usize;
        if rem != 0 {
            self.write(&[0; 3][..4 - rem])?;
        }
        Ok(())
    }
}

/// Strips leading `/` and rejects empty, `.` and `..` components.
fn clean(path: &str) -> io::Result<String> {
    let trimmed = path.trim_start_matches('/').trim_end_matches('/');
    if trimmed.is_empty()
        || trimmed
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad archive path {path:?}"),
        ));
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn header_layout() {
        let mut w = CpioWriter::new(Vec::new());
        w.file("init", 0o755, b"abc").unwrap();
        let bytes = w.finish().unwrap();
        let header = std::str::from_utf8(&bytes[..110]).unwrap();
        assert_eq!(&header[..6], "070701");
        assert_eq!(&header[6..14], "00000001"); // ino
        assert_eq!(&header[14..22], "000081ed"); // regular file 0755
        assert_eq!(&header[54..62], "00000003"); // size
        assert_eq!(&header[94..102], "00000005"); // "init" + NUL
                                                  // 110 + 5 = 115 -> padded to 116, then 3 data bytes padded to 4.
        assert_eq!(&bytes[110..116], b"init\0\0");
        assert_eq!(&bytes[116..120], b"abc\0");
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn rejects_bad_paths() {
        let mut w = CpioWriter::new(Vec::new());
        for bad in ["", "/", "a/../b", "a//b", "./a"] {
            assert!(w.file(bad, 0o644, b"").is_err(), "{bad}");
        }
    }

    /// GNU cpio (installed on Ballast's build hosts) must read the archive back.
    #[test]
    fn gnu_cpio_extracts_it() {
        if !hosttools::require_tool("cpio") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut w = CpioWriter::new(Vec::new());
        w.file("/lib/modules/6.1/kernel/a.ko", 0o644, b"module")
            .unwrap();
        w.dir("proc", 0o555).unwrap();
        w.symlink("bin/sh", "busybox").unwrap();
        w.file(
            constants::MODULES_ORDER_IN_INITRAMFS,
            0o644,
            b"kernel/a.ko\n",
        )
        .unwrap();
        let archive = w.finish().unwrap();
        let list = Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin_bytes(&archive);
        assert_eq!(
            list,
            "lib\nlib/modules\nlib/modules/6.1\nlib/modules/6.1/kernel\nlib/modules/6.1/kernel/a.ko\n\
             proc\nbin\nbin/sh\netc\netc/modules.order\n"
        );
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let mut child = Command::new("cpio")
            .args(["-i", "-d", "--quiet", "--no-absolute-filenames"])
            .current_dir(&out)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&archive).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(
            std::fs::read(out.join("lib/modules/6.1/kernel/a.ko")).unwrap(),
            b"module"
        );
        assert_eq!(
            std::fs::read_link(out.join("bin/sh")).unwrap(),
            std::path::PathBuf::from("busybox")
        );
    }

    trait StdinBytes {
        fn stdin_bytes(&mut self, input: &[u8]) -> String;
    }

    impl StdinBytes for Command {
        fn stdin_bytes(&mut self, input: &[u8]) -> String {
            let mut child = self
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(input).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap()
        }
    }
}
