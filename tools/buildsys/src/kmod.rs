//! Kernel modules: the dependency index depmod writes, the closure of a module list, and
//! running depmod itself.

use crate::error::{IoSnafu, Result, ToolFailedSnafu, ToolSpawnSnafu, UnknownModuleSnafu};
use snafu::ResultExt;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// The kernel treats `-` and `_` in module names alike; this crate always uses `_`.
pub fn normalize(name: &str) -> String {
    name.trim().replace('-', "_")
}

fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    normalize(file.split(".ko").next().unwrap_or(file))
}

/// Module dependencies of one kernel, read from depmod's output files.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    /// Module name -> (path relative to the modules directory, hard dependencies by name).
    pub modules: BTreeMap<String, (String, Vec<String>)>,
    /// Names of modules built into the kernel.
    pub builtin: BTreeSet<String>,
    /// Module name -> modules to load before it (`softdep ... pre:`).
    pub soft_pre: BTreeMap<String, Vec<String>>,
}

impl ModuleIndex {
    /// Reads `modules.dep`, `modules.builtin` and `modules.softdep` from `modules_dir`
    /// (`.../lib/modules/<version>`).
    pub fn load(modules_dir: &Path) -> Result<ModuleIndex> {
        let read = |name: &str| -> Result<String> {
            let path = modules_dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && name != "modules.dep" => {
                    Ok(String::new())
                }
                Err(source) => Err(source).context(IoSnafu {
                    action: "read",
                    path,
                }),
            }
        };
        let mut index = ModuleIndex::default();
        for line in read("modules.dep")?.lines() {
            let Some((path, deps)) = line.split_once(':') else {
                continue;
            };
            index.modules.insert(
                name_of(path.trim()),
                (
                    path.trim().to_string(),
                    deps.split_whitespace().map(name_of).collect(),
                ),
            );
        }
        index.builtin = read("modules.builtin")?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| name_of(l.trim()))
            .collect();
        for line in read("modules.softdep")?.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("softdep") {
                continue;
            }
            let Some(module) = words.next() else {
                continue;
            };
            let mut in_pre = false;
            for word in words {
                match word {
                    "pre:" => in_pre = true,
                    w if w.ends_with(':') => in_pre = false,
                    w if in_pre => index
                        .soft_pre
                        .entry(normalize(module))
                        .or_default()
                        .push(normalize(w)),
                    _ => {}
                }
            }
        }
        Ok(index)
    }

    /// The modules needed for `names`, dependencies first, as paths relative to the modules
    /// directory, without duplicates. Built-in modules are skipped; soft "pre" dependencies are
    /// included when they exist as modules. An unknown name is an error.
    pub fn closure(&self, names: &[String], kernel_version: &str) -> Result<Vec<String>> {
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        for name in names {
            self.visit(
                &normalize(name),
                true,
                kernel_version,
                &mut done,
                &mut order,
            )?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        required: bool,
        kernel_version: &str,
        done: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        if self.builtin.contains(name) || !done.insert(name.to_string()) {
            return Ok(());
        }
        let Some((path, deps)) = self.modules.get(name) else {
            if !required {
                return Ok(());
            }
            return UnknownModuleSnafu {
                module: name,
                kernel_version,
                hint: " (check the name against modules.dep and modules.builtin of the kernel package)",
            }
            .fail();
        };
        for pre in self.soft_pre.get(name).into_iter().flatten() {
            self.visit(pre, false, kernel_version, done, order)?;
        }
        for dep in deps {
            self.visit(dep, true, kernel_version, done, order)?;
        }
        order.push(path.clone());
        Ok(())
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
    fn closure_orders_dependencies_first() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        std::fs::write(
            dir.join("modules.dep"),
            "kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko\n\
             kernel/drivers/md/dm-bufio.ko:\n\
             kernel/drivers/md/dm-mod.ko:\n\
             kernel/fs/erofs/erofs.ko: kernel/lib/libcrc32c.ko\n\
             kernel/lib/libcrc32c.ko:\n\
             kernel/crypto/crc32c_generic.ko:\n",
        )
        .unwrap();
        std::fs::write(dir.join("modules.builtin"), "kernel/fs/ext4/ext4.ko\n").unwrap();
        std::fs::write(
            dir.join("modules.softdep"),
            "# comment\nsoftdep libcrc32c pre: crc32c crc32c_generic post: nothing\n",
        )
        .unwrap();
        let index = ModuleIndex::load(dir).unwrap();
        let order = index
            .closure(&["dm-verity".into(), "ext4".into(), "erofs".into()], "6.1")
            .unwrap();
        assert_eq!(
            order,
            [
                "kernel/drivers/md/dm-bufio.ko",
                "kernel/drivers/md/dm-mod.ko",
                "kernel/drivers/md/dm-verity.ko",
                "kernel/crypto/crc32c_generic.ko",
                "kernel/lib/libcrc32c.ko",
                "kernel/fs/erofs/erofs.ko",
            ]
        );
        let error = index.closure(&["nope".into()], "6.1").unwrap_err();
        assert!(error.to_string().contains("'nope'"), "{error}");
    }
}
