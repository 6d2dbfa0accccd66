//! The host programs the build runs, where to find them, and how they are run.

use crate::error::{self, Result};
use snafu::ResultExt;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A program on the build host and the Debian package that installs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostTool {
    /// Program name, looked up in `PATH`, `/usr/sbin` and `/sbin`.
    pub program: &'static str,
    /// Debian package to install when it is missing.
    pub package: &'static str,
}

pub const MKFS_EROFS: HostTool = HostTool {
    program: "mkfs.erofs",
    package: "erofs-utils",
};
pub const MKFS_EXT4: HostTool = HostTool {
    program: "mkfs.ext4",
    package: "e2fsprogs",
};
pub const DEBUGFS: HostTool = HostTool {
    program: "debugfs",
    package: "e2fsprogs",
};
pub const MKFS_FAT: HostTool = HostTool {
    program: "mkfs.fat",
    package: "dosfstools",
};
pub const MMD: HostTool = HostTool {
    program: "mmd",
    package: "mtools",
};
pub const MCOPY: HostTool = HostTool {
    program: "mcopy",
    package: "mtools",
};
pub const GRUB_MKIMAGE: HostTool = HostTool {
    program: "grub-mkimage",
    package: "grub-efi-amd64-bin",
};
pub const QEMU_IMG: HostTool = HostTool {
    program: "qemu-img",
    package: "qemu-utils",
};

/// Every tool a build with only the raw format needs.
pub const BASE_TOOLS: &[HostTool] = &[
    MKFS_EROFS,
    MKFS_EXT4,
    DEBUGFS,
    MKFS_FAT,
    MMD,
    MCOPY,
    GRUB_MKIMAGE,
];

/// The full path of `program`, searching `PATH` and then the sbin directories (which are not
/// always on an unprivileged user's `PATH`).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Fails with one message naming every missing tool and the `apt-get` line that installs them.
pub fn check(tools: &[HostTool]) -> Result<()> {
    let missing: Vec<HostTool> = tools
        .iter()
        .copied()
        .filter(|t| find_program(t.program).is_none())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: BTreeSet<&str> = missing.iter().map(|t| t.package).collect();
    error::MissingToolsSnafu {
        missing: missing
            .iter()
            .map(|t| t.program)
            .collect::<Vec<_>>()
            .join(", "),
        verb: if missing.len() == 1 { "is" } else { "are" },
        packages: packages.into_iter().collect::<Vec<_>>().join(" "),
    }
    .fail()
}

/// A command for `tool` with a clean, reproducible environment: C locale, UTC, and the
/// build's timestamp in `SOURCE_DATE_EPOCH` (read by mtools, mkfs.erofs and newer e2fsprogs)
/// and `E2FSPROGS_FAKE_TIME` (read by e2fsprogs).
pub fn command(tool: HostTool, epoch: u64) -> Result<Command> {
    let program = find_program(tool.program).ok_or_else(|| error::Error::MissingTools {
        missing: tool.program.to_string(),
        verb: "is",
        packages: tool.package.to_string(),
    })?;
    let mut cmd = Command::new(program);
    cmd.env("LC_ALL", "C")
        .env("TZ", "UTC")
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        // mtools otherwise refuses images whose geometry it finds odd.
        .env("MTOOLS_SKIP_CHECK", "1")
        .env_remove("MKE2FS_CONFIG")
        .env_remove("MTOOLSRC");
    Ok(cmd)
}

/// `command` as a readable string for error messages.
pub fn show(command: &Command) -> String {
    let mut out = Path::new(command.get_program())
        .file_name()
        .unwrap_or(command.get_program())
        .to_string_lossy()
        .into_owned();
    for arg in command.get_args() {
        out.push(' ');
        out.push_str(&quote(arg));
    }
    out
}

fn quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `command` to completion and returns its standard output; a non-zero exit becomes an
/// error carrying the command line and its standard error.
pub fn run(command: &mut Command) -> Result<String> {
    let shown = show(command);
    tracing::debug!(command = %shown, "running");
    let output = command
        .output()
        .context(error::ToolStartSnafu { command: &shown })?;
    if !output.status.success() {
        return error::ToolFailedSnafu {
            command: shown,
            status: output.status,
            stderr: tail(&String::from_utf8_lossy(&output.stderr)),
        }
        .fail();
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The last lines of a tool's error output, enough to see the problem.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    let start = lines.len().saturating_sub(20);
    lines[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_name_the_packages() {
        let fake = HostTool {
            program: "ballast-no-such-tool",
            package: "ballast-no-such-package",
        };
        let err = check(&[fake, MKFS_EXT4, fake]).unwrap_err().to_string();
        assert_eq!(
            err,
            "the image build needs ballast-no-such-tool, which is not installed on this host; \
             install with: apt-get install -y --no-install-recommends ballast-no-such-package"
        );
    }

    #[test]
    fn commands_are_shown_quoted() {
        let mut cmd = Command::new("/usr/bin/mcopy");
        cmd.args(["-i", "a b.img", "it's", "::/EFI"]);
        assert_eq!(show(&cmd), r"mcopy -i 'a b.img' 'it'\''s' ::/EFI");
    }
}
