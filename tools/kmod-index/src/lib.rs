//! Kernel module dependencies on the build host: which modules a list of module names needs,
//! in load order.
//!
//! # Background
//!
//! An initramfs (and a trimmed root image) carries only some of a kernel's modules, and they
//! must be loaded dependencies first. The build (`buildsys`) and the VM tests (`vmtest` and the
//! image builder's boot tests) both need that order. They see kernels in two states:
//!
//! * after `depmod`: `modules.dep`, `modules.softdep` and `modules.builtin` describe every
//!   module (buildsys runs depmod on the staged tree);
//! * a kernel package unpacked with `dpkg-deb -x`: depmod has not run (and may not be installed
//!   on the host), so the dependencies are read from the `depends=` and `softdep=` entries of
//!   the `.modinfo` ELF section of every `.ko` file (parsed with `goblin`).
//!
//! [`ModuleIndex::load`] reads whichever is there; [`ModuleIndex::closure`] returns the modules
//! to load for a list of names, dependencies first, ready for `/etc/modules.order`.
//!
//! # Usage
//!
//! ```no_run
//! use kmod_index::ModuleIndex;
//! use std::path::Path;
//!
//! let index = ModuleIndex::load(Path::new("/lib/modules/6.1.0-28-cloud-amd64"))?;
//! for path in index.closure(&["dm_verity", "erofs"])? {
//!     println!("{path}"); // e.g. kernel/drivers/md/dm-bufio.ko
//! }
//! # Ok::<(), kmod_index::Error>(())
//! ```
//!
//! # Current limitations
//!
//! * Without `modules.dep`, only uncompressed `.ko` files are read; compressed modules
//!   (`.ko.xz`, `.ko.zst`) need depmod.
//! * Module aliases (`modules.alias`) are not resolved: names must be module names.
//! * Soft "post:" dependencies are ignored; soft "pre:" dependencies are loaded first when they
//!   exist as modules.
#![forbid(unsafe_code)]

mod error;

pub use error::{Error, Result};

use error::{DependencyCycleSnafu, IoSnafu, ModinfoSnafu, UnknownModuleSnafu};
use snafu::ResultExt;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The kernel treats `-` and `_` in module names alike; this crate always uses `_`.
pub fn normalize(name: &str) -> String {
    name.trim().replace('-', "_")
}

/// The module name of a module file path (`kernel/drivers/md/dm-mod.ko` -> `dm_mod`).
fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    normalize(file.split(".ko").next().unwrap_or(file))
}

/// One module of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Path relative to the modules directory, e.g. `kernel/drivers/md/dm-verity.ko`.
    pub path: String,
    /// Hard dependencies (normalized names).
    pub depends: Vec<String>,
    /// `softdep` "pre:" modules (normalized names), loaded first when they exist.
    pub soft_pre: Vec<String>,
}

/// The modules of one kernel, by normalized name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleIndex {
    /// Loadable modules.
    pub modules: BTreeMap<String, ModuleInfo>,
    /// Names of modules built into the kernel.
    pub builtin: BTreeSet<String>,
}

impl ModuleIndex {
    /// Reads the index of `modules_dir` (`.../lib/modules/<release>`): depmod's files when
    /// `modules.dep` exists, otherwise the `.modinfo` sections of the `.ko` files under
    /// `kernel/`. `modules.builtin` is read when present.
    pub fn load(modules_dir: &Path) -> Result<ModuleIndex> {
        let read_optional = |name: &str| -> Result<String> {
            let path = modules_dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
                Err(source) => Err(source).context(IoSnafu { path }),
            }
        };
        let builtin = read_optional("modules.builtin")?;
        if modules_dir.join("modules.dep").exists() {
            let dep = modules_dir.join("modules.dep");
            let dep = std::fs::read_to_string(&dep).context(IoSnafu { path: dep })?;
            let softdep = read_optional("modules.softdep")?;
            return Ok(ModuleIndex::from_depmod(&dep, &builtin, &softdep));
        }
        let mut index = ModuleIndex {
            builtin: parse_builtin(&builtin),
            ..ModuleIndex::default()
        };
        let mut files = Vec::new();
        walk_ko(&modules_dir.join("kernel"), &mut files)?;
        for file in files {
            let bytes = std::fs::read(&file).context(IoSnafu { path: &file })?;
            let rel = file
                .strip_prefix(modules_dir)
                .unwrap_or(&file)
                .to_string_lossy()
                .into_owned();
            let entries = modinfo(&bytes).map_err(|reason| {
                ModinfoSnafu {
                    path: &file,
                    reason,
                }
                .build()
            })?;
            let depends = entries
                .iter()
                .filter(|(key, _)| key == "depends")
                .flat_map(|(_, value)| value.split(','))
                .filter(|name| !name.trim().is_empty())
                .map(normalize)
                .collect();
            let soft_pre = entries
                .iter()
                .filter(|(key, _)| key == "softdep")
                .flat_map(|(_, value)| softdep_pre(value))
                .collect();
            index.modules.insert(
                name_of(&rel),
                ModuleInfo {
                    path: rel,
                    depends,
                    soft_pre,
                },
            );
        }
        Ok(index)
    }

    /// The index described by the text of depmod's `modules.dep` (`path: dep-path ...`),
    /// `modules.builtin` (one path a line) and `modules.softdep` (`softdep NAME pre: ...`).
    pub fn from_depmod(dep: &str, builtin: &str, softdep: &str) -> ModuleIndex {
        let mut modules: BTreeMap<String, ModuleInfo> = dep
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(path, deps)| {
                let path = path.trim().to_string();
                let info = ModuleInfo {
                    depends: deps.split_whitespace().map(name_of).collect(),
                    soft_pre: Vec::new(),
                    path: path.clone(),
                };
                (name_of(&path), info)
            })
            .collect();
        for line in softdep.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("softdep") {
                continue;
            }
            let Some(module) = words.next() else {
                continue;
            };
            let rest: Vec<&str> = words.collect();
            if let Some(info) = modules.get_mut(&normalize(module)) {
                info.soft_pre.extend(softdep_pre(&rest.join(" ")));
            }
        }
        ModuleIndex {
            modules,
            builtin: parse_builtin(builtin),
        }
    }

    /// The modules needed for `names`, dependencies first, as paths relative to the modules
    /// directory, without duplicates. Built-in modules are skipped; soft "pre:" dependencies
    /// are included when they exist as modules. An unknown name or a cycle of hard
    /// dependencies is an error.
    pub fn closure<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<String>> {
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        for name in names {
            self.visit(
                &normalize(name.as_ref()),
                true,
                &mut done,
                &mut Vec::new(),
                &mut order,
            )?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        required: bool,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        if done.contains(name) || self.builtin.contains(name) {
            return Ok(());
        }
        let Some(info) = self.modules.get(name) else {
            if !required {
                return Ok(());
            }
            return UnknownModuleSnafu { module: name }.fail();
        };
        if stack.iter().any(|s| s == name) {
            // A soft dependency only orders loading; one that loops back is dropped.
            if !required {
                return Ok(());
            }
            stack.push(name.to_string());
            return DependencyCycleSnafu {
                module: name,
                chain: stack.join(" -> "),
            }
            .fail();
        }
        stack.push(name.to_string());
        for pre in &info.soft_pre {
            self.visit(pre, false, done, stack, order)?;
        }
        for dep in &info.depends {
            self.visit(dep, true, done, stack, order)?;
        }
        stack.pop();
        done.insert(name.to_string());
        order.push(info.path.clone());
        Ok(())
    }
}

fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| name_of(l.trim()))
        .collect()
}

/// The `pre:` modules of a softdep value such as `pre: crc32c post: foo`.
fn softdep_pre(value: &str) -> Vec<String> {
    let mut pre = Vec::new();
    let mut in_pre = false;
    for word in value.split_whitespace() {
        match word {
            "pre:" => in_pre = true,
            w if w.ends_with(':') => in_pre = false,
            w if in_pre => pre.push(normalize(w)),
            _ => {}
        }
    }
    pre
}

fn walk_ko(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .and_then(|entries| entries.collect::<std::io::Result<Vec<_>>>())
        .context(IoSnafu { path: dir })?;
    // Sorted, so that which of two same-named modules wins does not depend on the directory.
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type().context(IoSnafu { path: &path })?;
        if kind.is_dir() {
            walk_ko(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "ko") {
            out.push(path);
        }
    }
    Ok(())
}

/// The `key=value` strings of the `.modinfo` section of an ELF module (either class and byte
/// order); an error text when it is not ELF or has no such section.
pub fn modinfo(elf: &[u8]) -> std::result::Result<Vec<(String, String)>, String> {
    let elf_file = goblin::elf::Elf::parse(elf)
        .map_err(|e| format!("not an uncompressed ELF module ({e})"))?;
    let section = elf_file
        .section_headers
        .iter()
        .find(|sh| elf_file.shdr_strtab.get_at(sh.sh_name) == Some(".modinfo"))
        .ok_or("no .modinfo section")?;
    let data = section
        .file_range()
        .and_then(|range| elf.get(range))
        .ok_or(".modinfo lies outside the file")?;
    Ok(data
        .split(|&b| b == 0)
        .filter_map(|entry| {
            let text = String::from_utf8_lossy(entry);
            let (key, value) = text.split_once('=')?;
            Some((key.to_string(), value.to_string()))
        })
        .collect())
}

#[cfg(test)]
mod tests;
