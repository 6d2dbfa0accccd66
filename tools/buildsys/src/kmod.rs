//! Kernel modules: running depmod on the staged tree, and the load order of the variant's
//! modules from the index it writes (read by the `kmod-index` crate, which the VM tests use
//! too).

use crate::error::{Error, Result, ToolFailedSnafu, ToolSpawnSnafu, UnknownModuleSnafu};
pub use kmod_index::ModuleIndex;
use snafu::ResultExt;
use std::path::Path;
use std::process::Command;

/// The module index of the kernel `kernel_version` in `modules_dir`
/// (`.../lib/modules/<kernel_version>`, after [`depmod`]).
pub fn load_index(modules_dir: &Path, kernel_version: &str) -> Result<ModuleIndex> {
    ModuleIndex::load(modules_dir).map_err(|source| module_error(source, kernel_version))
}

/// The modules needed for `names` in load order (dependencies first), as paths relative to the
/// modules directory; see [`ModuleIndex::closure`].
pub fn closure(index: &ModuleIndex, names: &[String], kernel_version: &str) -> Result<Vec<String>> {
    index
        .closure(names)
        .map_err(|source| module_error(source, kernel_version))
}

fn module_error(source: kmod_index::Error, kernel_version: &str) -> Error {
    match source {
        kmod_index::Error::UnknownModule { module } => UnknownModuleSnafu {
            module,
            kernel_version,
            hint: " (check the name against modules.dep and modules.builtin of the kernel package)",
        }
        .build(),
        source => Error::Modules {
            kernel_version: kernel_version.to_string(),
            source,
        },
    }
}

/// Runs `depmod -b base version`, which (re)writes `base/lib/modules/<version>/modules.*`.
pub fn depmod(base: &Path, version: &str) -> Result<()> {
    let mut command = Command::new("depmod");
    command.arg("-b").arg(base).arg(version);
    run_tool(&mut command, "kmod")
}

/// Runs a host tool, turning a missing program or a failure into an error with its stderr.
pub(crate) fn run_tool(command: &mut Command, package: &str) -> Result<()> {
    let shown = format!("{command:?}");
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .output()
        .context(ToolSpawnSnafu { program, package })?;
    snafu::ensure!(
        output.status.success(),
        ToolFailedSnafu {
            command: shown,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_modules_name_the_kernel() {
        let index = ModuleIndex::from_depmod(
            "kernel/fs/erofs/erofs.ko: kernel/lib/libcrc32c.ko\nkernel/lib/libcrc32c.ko:\n",
            "kernel/fs/ext4/ext4.ko\n",
            "",
        );
        assert_eq!(
            closure(&index, &["erofs".into(), "ext4".into()], "6.1").unwrap(),
            ["kernel/lib/libcrc32c.ko", "kernel/fs/erofs/erofs.ko"]
        );
        let err = closure(&index, &["nope".into()], "6.1").unwrap_err();
        assert!(matches!(err, Error::UnknownModule { .. }), "{err}");
        let err = err.to_string();
        assert!(
            err.contains("'nope'") && err.contains("kernel 6.1") && err.contains("modules.dep"),
            "{err}"
        );
    }
}
