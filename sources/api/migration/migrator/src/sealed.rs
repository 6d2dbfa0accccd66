//! Migration programs held in sealed memory files, so that what runs is exactly what was
//! verified.
//!
//! A verified migration is written into an anonymous memory file (`memfd_create`), which is then
//! sealed against any write, shrink or growth and against removing the seals, and hashed again
//! from the sealed file. It is run through `/proc/self/fd/<n>`. Nothing is ever written to a
//! path another process could replace between the check and the `execve`, and the memory file
//! disappears with the migrator, even when the migrator is killed. (The other way, a private
//! 0700 directory under /run removed afterwards, leaves a file behind after a SIGKILL and
//! protects the bytes by permissions only, not by the kernel's seals.)
//!
//! The kernel must allow executing memory files: `vm.memfd_noexec` (Linux 6.3 and later) must be
//! 0 or 1. The file is created with `MFD_EXEC` where the kernel knows that flag, so that a
//! setting of 1 does not get in the way; a setting of 2 forbids what the migrator needs.

use crate::error::{self, MemoryFileSnafu, SealMismatchSnafu, SealSnafu, WriteMemoryFileSnafu};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use sha2::{Digest, Sha256};
use snafu::{ensure, ResultExt};
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::process::Command;

/// `MFD_EXEC` of `<linux/memfd.h>` (Linux 6.3): the file may be executed even when
/// `vm.memfd_noexec` is 1. Older kernels refuse the flag with EINVAL.
const MFD_EXEC: u32 = 0x0010;

/// The seals that make the contents final.
fn final_seals() -> SealFlag {
    SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL
}

/// A memory file being filled with a migration program, not yet sealed.
#[derive(Debug)]
pub struct MemoryFile {
    name: String,
    file: File,
}

impl MemoryFile {
    /// A new, empty memory file for the migration `name` (the name shows in
    /// `/proc/<pid>/exe` as `/memfd:<name>`).
    pub fn new(name: &str) -> error::Result<MemoryFile> {
        let c_name = CString::new(name.replace('\0', "_")).expect("NUL bytes were replaced");
        let base = MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING;
        let fd = match memfd_create(&c_name, base | MemFdCreateFlag::from_bits_retain(MFD_EXEC)) {
            Err(Errno::EINVAL) => memfd_create(&c_name, base),
            other => other,
        }
        .context(MemoryFileSnafu { name })?;
        Ok(MemoryFile {
            name: name.to_string(),
            file: File::from(fd),
        })
    }

    /// Appends `bytes`.
    pub fn write(&mut self, bytes: &[u8]) -> error::Result<()> {
        self.file
            .write_all(bytes)
            .context(WriteMemoryFileSnafu { name: &self.name })
    }

    /// Seals the file and checks that the sealed contents have `length` bytes and the sha256
    /// `sha256`; only then is it a program that may run.
    pub fn seal(self, length: u64, sha256: &[u8]) -> error::Result<SealedProgram> {
        let name = self.name;
        let mut file = self.file;
        fcntl(file.as_raw_fd(), FcntlArg::F_ADD_SEALS(final_seals()))
            .context(SealSnafu { name: &name })?;
        let seals = fcntl(file.as_raw_fd(), FcntlArg::F_GET_SEALS)
            .map(SealFlag::from_bits_truncate)
            .context(SealSnafu { name: &name })?;
        ensure!(
            seals.contains(final_seals()),
            SealMismatchSnafu {
                name: &name,
                reason: "the kernel did not keep the seals",
            }
        );
        // Hash what is in the sealed file now: that, and nothing else, is what will run.
        file.seek(SeekFrom::Start(0))
            .context(WriteMemoryFileSnafu { name: &name })?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = file
                .read(&mut buffer)
                .context(WriteMemoryFileSnafu { name: &name })?;
            if n == 0 {
                break;
            }
            total += n as u64;
            hasher.update(&buffer[..n]);
        }
        let actual = hasher.finalize();
        ensure!(
            total == length && actual.as_slice() == sha256,
            SealMismatchSnafu {
                name: &name,
                reason: format!(
                    "the sealed copy has {total} bytes with sha256 {}, the signed target {length} \
                     bytes with sha256 {}",
                    hex::encode(actual),
                    hex::encode(sha256)
                ),
            }
        );
        Ok(SealedProgram { name, file })
    }
}

/// A verified migration program in a sealed memory file.
#[derive(Debug)]
pub struct SealedProgram {
    name: String,
    file: File,
}

impl SealedProgram {
    /// The migration's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs the program from memory (argv\[0\] is the migration's name). The
    /// file descriptor is close-on-exec: the child opens the file through the path while it
    /// still has the descriptor, and the program it becomes does not keep it.
    pub fn command(&self) -> Command {
        let mut command = Command::new(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
        std::os::unix::process::CommandExt::arg0(&mut command, &self.name);
        command
    }

    /// The sealed file, for tests that try to change it.
    pub fn file(&self) -> &File {
        &self.file
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn sha256(bytes: &[u8]) -> Vec<u8> {
        Sha256::digest(bytes).to_vec()
    }

    #[test]
    fn sealed_contents_cannot_change() {
        let script = b"#!/bin/sh\nexit 0\n";
        let mut file = MemoryFile::new("migrate_v1.0.0_test").unwrap();
        file.write(script).unwrap();
        let program = file.seal(script.len() as u64, &sha256(script)).unwrap();
        let mut f = program.file();
        assert!(f.write_all(b"x").is_err(), "write after sealing");
        assert!(
            f.write_at(b"#!/bin/false", 0).is_err(),
            "overwrite after sealing"
        );
        assert!(program.file().set_len(1).is_err(), "truncate after sealing");
        // The seals themselves are sealed.
        let unseal = fcntl(
            program.file().as_raw_fd(),
            FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_WRITE),
        );
        assert_eq!(unseal, Err(Errno::EPERM));
        // Also through the path a process would use to reopen it.
        let reopened = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", program.file().as_raw_fd()))
            .unwrap();
        assert!(reopened.write_at(b"X", 0).is_err());
    }

    #[test]
    fn a_copy_that_differs_from_the_signed_hash_is_refused() {
        let mut file = MemoryFile::new("migrate_v1.0.0_test").unwrap();
        file.write(b"echo evil").unwrap();
        let err = file.seal(9, &sha256(b"echo good")).unwrap_err().to_string();
        assert!(err.contains("migrate_v1.0.0_test"), "{err}");
        assert!(err.contains(&hex::encode(sha256(b"echo good"))), "{err}");

        let mut file = MemoryFile::new("migrate_v1.0.0_test").unwrap();
        file.write(b"echo good").unwrap();
        assert!(file.seal(10, &sha256(b"echo good")).is_err(), "length");
    }

    #[test]
    fn an_elf_program_runs_from_memory() {
        // Any ELF program will do; migrations are ELF programs (a script could not run from a
        // close-on-exec descriptor: its interpreter opens the path after the exec).
        let echo = std::fs::read("/bin/echo").expect("/bin/echo is a program on the test host");
        let mut file = MemoryFile::new("migrate_v1.0.0_echo").unwrap();
        file.write(&echo).unwrap();
        let program = file.seal(echo.len() as u64, &sha256(&echo)).unwrap();
        let out = program.command().arg("ran from memory").output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ran from memory\n");
    }
}
