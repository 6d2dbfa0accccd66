//! Kernel module dependencies on the build host, for putting a minimal set of modules into an
//! initramfs.
//!
//! A kernel package unpacked with `dpkg-deb -x` has no `modules.dep` (depmod runs at install
//! time, and depmod may not even be installed on the build host). So the index reads
//! `modules.dep` when it exists and otherwise reads the `depends=` and `softdep=` entries from
//! the `.modinfo` ELF section of every uncompressed `.ko` file. [`ModuleIndex::closure`] returns
//! the modules to load, dependencies first, ready to be written to `/etc/modules.order`.

use crate::error::{IoSnafu, ModuleSnafu, Result};
use snafu::ResultExt;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The kernel's module name: `-` and `_` are the same, so use `_`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// One module of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Path relative to the modules directory, e.g. `kernel/drivers/md/dm-verity.ko`.
    pub path: PathBuf,
    /// Hard dependencies (normalized names).
    pub depends: Vec<String>,
    /// `softdep` "pre:" modules, loaded first when available.
    pub soft_pre: Vec<String>,
}

/// The modules of one kernel, by normalized name.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    pub modules: BTreeMap<String, ModuleInfo>,
    pub builtin: BTreeSet<String>,
}

fn module_name_of(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    normalize(file.split(".ko").next().unwrap_or(&file))
}

impl ModuleIndex {
    /// Reads the index of `/lib/modules/<release>` (`modules_dir`).
    pub fn load(modules_dir: &Path) -> Result<Self> {
        let mut index = ModuleIndex::default();
        let builtin = modules_dir.join("modules.builtin");
        if let Ok(text) = std::fs::read_to_string(&builtin) {
            index.builtin = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| module_name_of(Path::new(l.trim())))
                .collect();
        }
        let dep = modules_dir.join("modules.dep");
        if dep.exists() {
            let text = std::fs::read_to_string(&dep).context(IoSnafu { path: &dep })?;
            index.modules = parse_modules_dep(&text);
        } else {
            let mut files = Vec::new();
            walk_ko(&modules_dir.join("kernel"), &mut files)?;
            for file in files {
                let bytes = std::fs::read(&file).context(IoSnafu { path: &file })?;
                let rel = file
                    .strip_prefix(modules_dir)
                    .unwrap_or(&file)
                    .to_path_buf();
                let name = module_name_of(&rel);
                let info = modinfo(&bytes).map_err(|reason| {
                    ModuleSnafu {
                        module: rel.display().to_string(),
                        reason,
                    }
                    .build()
                })?;
                let list = |key: &str| -> Vec<String> {
                    info.iter()
                        .filter(|(k, _)| k == key)
                        .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
                        .filter(|s| !s.is_empty())
                        .map(|s| normalize(&s))
                        .collect()
                };
                let soft_pre = info
                    .iter()
                    .filter(|(k, _)| k == "softdep")
                    .flat_map(|(_, v)| parse_softdep_pre(v))
                    .collect();
                index.modules.insert(
                    name,
                    ModuleInfo {
                        path: rel,
                        depends: list("depends"),
                        soft_pre,
                    },
                );
            }
        }
        Ok(index)
    }

    /// The modules needed for `names`, dependencies first, as paths relative to the modules
    /// directory. Built-in names are skipped; unknown names are an error. Soft "pre:"
    /// dependencies are included when they exist as modules.
    pub fn closure(&self, names: &[&str]) -> Result<Vec<PathBuf>> {
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        for name in names {
            self.visit(
                &normalize(name),
                &mut done,
                &mut Vec::new(),
                &mut order,
                true,
            )?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
        order: &mut Vec<PathBuf>,
        required: bool,
    ) -> Result<()> {
        if done.contains(name) || self.builtin.contains(name) {
            return Ok(());
        }
        let Some(info) = self.modules.get(name) else {
            if !required {
                return Ok(());
            }
            return ModuleSnafu {
                module: name,
                reason: "neither a module of this kernel nor built in".to_string(),
            }
            .fail();
        };
        if stack.iter().any(|s| s == name) {
            return ModuleSnafu {
                module: name,
                reason: format!("dependency cycle through {}", stack.join(" -> ")),
            }
            .fail();
        }
        stack.push(name.to_string());
        for pre in &info.soft_pre {
            self.visit(pre, done, stack, order, false)?;
        }
        for dep in &info.depends {
            self.visit(dep, done, stack, order, true)?;
        }
        stack.pop();
        done.insert(name.to_string());
        order.push(info.path.clone());
        Ok(())
    }
}

/// Parses depmod's `modules.dep` (`path: dep-path dep-path ...`).
pub fn parse_modules_dep(text: &str) -> BTreeMap<String, ModuleInfo> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(path, deps)| {
            let path = PathBuf::from(path.trim());
            let info = ModuleInfo {
                depends: deps
                    .split_whitespace()
                    .map(|d| module_name_of(Path::new(d)))
                    .collect(),
                soft_pre: Vec::new(),
                path: path.clone(),
            };
            (module_name_of(&path), info)
        })
        .collect()
}

/// The `pre:` modules of a `softdep=` value such as `pre: crc32c post: foo`.
fn parse_softdep_pre(value: &str) -> Vec<String> {
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
    let entries = std::fs::read_dir(dir).context(IoSnafu { path: dir })?;
    for entry in entries {
        let entry = entry.context(IoSnafu { path: dir })?;
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

/// The `key=value` strings of the `.modinfo` section of an ELF64 little-endian module.
pub fn modinfo(elf: &[u8]) -> std::result::Result<Vec<(String, String)>, String> {
    let u16_at = |at: usize| -> std::result::Result<usize, String> {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
            .ok_or_else(|| "truncated ELF file".to_string())
    };
    let u32_at = |at: usize| -> std::result::Result<usize, String> {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or_else(|| "truncated ELF file".to_string())
    };
    let u64_at = |at: usize| -> std::result::Result<usize, String> {
        elf.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
            .ok_or_else(|| "truncated ELF file".to_string())
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err("not an uncompressed little-endian ELF64 module".to_string());
    }
    let shoff = u64_at(0x28)?;
    let shentsize = u16_at(0x3a)?;
    let shnum = u16_at(0x3c)?;
    let shstrndx = u16_at(0x3e)?;
    let section = |i: usize| -> std::result::Result<(usize, usize, usize), String> {
        let base = shoff + i * shentsize;
        Ok((u32_at(base)?, u64_at(base + 24)?, u64_at(base + 32)?))
    };
    let (_, names_off, names_size) = section(shstrndx)?;
    let names = elf
        .get(names_off..names_off + names_size)
        .ok_or("section names out of range")?;
    for i in 0..shnum {
        let (name_off, off, size) = section(i)?;
        let name = names
            .get(name_off..)
            .and_then(|n| n.split(|&b| b == 0).next())
            .unwrap_or_default();
        if name == b".modinfo" {
            let data = elf.get(off..off + size).ok_or(".modinfo out of range")?;
            return Ok(data
                .split(|&b| b == 0)
                .filter_map(|entry| {
                    let text = String::from_utf8_lossy(entry);
                    let (k, v) = text.split_once('=')?;
                    Some((k.to_string(), v.to_string()))
                })
                .collect());
        }
    }
    Err("no .modinfo section".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(path: &str, deps: &[&str]) -> ModuleInfo {
        ModuleInfo {
            path: path.into(),
            depends: deps.iter().map(|d| d.to_string()).collect(),
            soft_pre: Vec::new(),
        }
    }

    fn index() -> ModuleIndex {
        let mut index = ModuleIndex::default();
        for (name, path, deps) in [
            ("dm_mod", "kernel/drivers/md/dm-mod.ko", &[][..]),
            ("dm_bufio", "kernel/drivers/md/dm-bufio.ko", &["dm_mod"][..]),
            (
                "reed_solomon",
                "kernel/lib/reed_solomon/reed_solomon.ko",
                &[][..],
            ),
            (
                "dm_verity",
                "kernel/drivers/md/dm-verity.ko",
                &["reed_solomon", "dm_mod", "dm_bufio"][..],
            ),
            ("erofs", "kernel/fs/erofs/erofs.ko", &["libcrc32c"][..]),
            ("libcrc32c", "kernel/lib/libcrc32c.ko", &[][..]),
        ] {
            index.modules.insert(name.into(), info(path, deps));
        }
        index.modules.get_mut("libcrc32c").unwrap().soft_pre = vec!["crc32c".into()];
        index.builtin.insert("ext4".into());
        index
    }

    #[test]
    fn closure_orders_dependencies_first_without_duplicates() {
        let order = index()
            .closure(&["dm-verity", "erofs", "ext4", "dm_mod"])
            .unwrap();
        let order: Vec<String> = order.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            order,
            [
                "kernel/lib/reed_solomon/reed_solomon.ko",
                "kernel/drivers/md/dm-mod.ko",
                "kernel/drivers/md/dm-bufio.ko",
                "kernel/drivers/md/dm-verity.ko",
                "kernel/lib/libcrc32c.ko",
                "kernel/fs/erofs/erofs.ko",
            ]
        );
    }

    #[test]
    fn unknown_modules_and_cycles_are_errors() {
        let mut idx = index();
        assert!(idx
            .closure(&["nope"])
            .unwrap_err()
            .to_string()
            .contains("nope"));
        idx.modules.get_mut("dm_mod").unwrap().depends = vec!["dm_verity".into()];
        let err = idx.closure(&["dm_verity"]).unwrap_err().to_string();
        assert!(err.contains("cycle"), "{err}");
    }

    #[test]
    fn parses_modules_dep_and_softdeps() {
        let deps = parse_modules_dep(
            "kernel/drivers/md/dm-verity.ko: kernel/lib/reed_solomon/reed_solomon.ko kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko\nkernel/drivers/md/dm-mod.ko:\n",
        );
        assert_eq!(
            deps["dm_verity"].depends,
            ["reed_solomon", "dm_bufio", "dm_mod"]
        );
        assert!(deps["dm_mod"].depends.is_empty());
        assert_eq!(
            parse_softdep_pre("pre: crc32c crc32-generic post: x"),
            ["crc32c", "crc32_generic"]
        );
        assert!(parse_softdep_pre("post: x").is_empty());
    }

    /// Builds a minimal ELF64 image with a `.modinfo` section.
    fn fake_elf(modinfo: &[u8]) -> Vec<u8> {
        let shstr = b"\0.shstrtab\0.modinfo\0";
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let modinfo_off = elf.len();
        elf.extend_from_slice(modinfo);
        let shstr_off = elf.len();
        elf.extend_from_slice(shstr);
        let shoff = elf.len();
        let mut header = |name: u32, off: usize, size: usize| {
            let mut sh = [0u8; 64];
            sh[0..4].copy_from_slice(&name.to_le_bytes());
            sh[24..32].copy_from_slice(&(off as u64).to_le_bytes());
            sh[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&sh);
        };
        header(0, 0, 0);
        header(1, shstr_off, shstr.len());
        header(11, modinfo_off, modinfo.len());
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        elf
    }

    #[test]
    fn reads_modinfo_and_scans_a_tree() {
        let elf = fake_elf(
            b"license=GPL\0depends=dm-mod,dm_bufio\0softdep=pre: crc32c\0name=dm_verity\0",
        );
        let info = modinfo(&elf).unwrap();
        assert!(info.contains(&("depends".into(), "dm-mod,dm_bufio".into())));
        assert!(modinfo(b"\x28\xb5\x2f\xfd").is_err());

        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("kernel/drivers/md");
        std::fs::create_dir_all(&md).unwrap();
        std::fs::write(md.join("dm-verity.ko"), &elf).unwrap();
        std::fs::write(md.join("dm-mod.ko"), fake_elf(b"depends=\0")).unwrap();
        std::fs::write(md.join("dm-bufio.ko"), fake_elf(b"depends=dm-mod\0")).unwrap();
        std::fs::write(
            dir.path().join("modules.builtin"),
            "kernel/crypto/crc32c_generic.ko\n",
        )
        .unwrap();
        let index = ModuleIndex::load(dir.path()).unwrap();
        assert_eq!(index.modules["dm_verity"].soft_pre, ["crc32c"]);
        let order = index.closure(&["dm_verity"]).unwrap();
        assert_eq!(
            order,
            [
                PathBuf::from("kernel/drivers/md/dm-mod.ko"),
                PathBuf::from("kernel/drivers/md/dm-bufio.ko"),
                PathBuf::from("kernel/drivers/md/dm-verity.ko"),
            ]
        );
    }
}
