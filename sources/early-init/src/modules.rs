//! Loading the kernel modules listed in the initramfs's `/etc/modules.order`.
//!
//! The image builder resolves dependencies on the build host and writes one module path per line,
//! relative to `/lib/modules/<kernel release>/`, dependencies first. Blank lines and lines
//! starting with `#` are ignored. Modules are loaded with `finit_module(2)`; a module that is
//! already loaded (`EEXIST`) counts as success, and a listed module whose file is missing but that
//! the kernel already knows (built in, visible under `/sys/module/<name>`) is skipped.
//!
//! Compressed modules (`.ko.xz`, `.ko.zst`, `.ko.gz`) are handed to the kernel with
//! `MODULE_INIT_COMPRESSED_FILE`, which works only when the kernel was built with
//! `CONFIG_MODULE_DECOMPRESS`. Debian 12's kernels ship uncompressed modules, so the image builder
//! should copy them as they are.

use crate::error::{
    ModuleLoadSnafu, ModuleMissingSnafu, ModuleOpenSnafu, ModulesOrderSnafu, Result,
};
use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};
use snafu::ResultExt;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Where the module list lives inside the initramfs.
pub const MODULES_ORDER: &str = constants::MODULES_ORDER;

/// `MODULE_INIT_COMPRESSED_FILE` from linux/module.h (not exported by nix 0.29).
const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

/// How a module file is compressed, judged by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Xz,
    Zstd,
    Gzip,
}

/// Parses the text of `modules.order`: one relative path per line, each naming a module file.
pub fn parse_modules_order(text: &str) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |reason: &str| {
            ModulesOrderSnafu {
                line: index + 1,
                reason: format!("{line:?}: {reason}"),
            }
            .fail()
        };
        let path = PathBuf::from(line);
        // Path::components() hides inner "." segments, so check the raw segments.
        if line
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        {
            return fail("expected a relative path without . or .. components");
        }
        if compression_of(&path).is_none() {
            return fail("expected a file ending in .ko, .ko.xz, .ko.zst or .ko.gz");
        }
        paths.push(path);
    }
    Ok(paths)
}

/// The compression of a module file, or `None` when the name does not look like a module.
pub fn compression_of(path: &Path) -> Option<Compression> {
    let name = path.file_name()?.to_str()?;
    [
        (".ko", Compression::None),
        (".ko.xz", Compression::Xz),
        (".ko.zst", Compression::Zstd),
        (".ko.gz", Compression::Gzip),
    ]
    .into_iter()
    .find(|(suffix, _)| name.len() > suffix.len() && name.ends_with(suffix))
    .map(|(_, compression)| compression)
}

/// The kernel's name for a module file: the file name without extension, `-` replaced by `_`
/// (`kernel/drivers/md/dm-verity.ko` becomes `dm_verity`).
pub fn module_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.split(".ko").next().unwrap_or(&name);
    stem.replace('-', "_")
}

/// What happened to one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadOutcome {
    Loaded,
    AlreadyLoaded,
    BuiltIn,
}

/// Loads one module file (an absolute path); see the module documentation for the rules.
pub fn load_module(path: &Path, sys_module: &Path) -> Result<LoadOutcome> {
    let compression = compression_of(path).unwrap_or(Compression::None);
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if sys_module.join(module_name(path)).exists() {
                return Ok(LoadOutcome::BuiltIn);
            }
            return ModuleMissingSnafu { path }.fail();
        }
        Err(source) => return Err(source).context(ModuleOpenSnafu { path }),
    };
    let flags = if compression == Compression::None {
        ModuleInitFlags::empty()
    } else {
        ModuleInitFlags::from_bits_retain(MODULE_INIT_COMPRESSED_FILE)
    };
    match finit_module(&file, c"", flags) {
        Ok(()) => Ok(LoadOutcome::Loaded),
        Err(Errno::EEXIST) => Ok(LoadOutcome::AlreadyLoaded),
        Err(source) => {
            let hint = match (source, compression) {
                (Errno::EINVAL | Errno::EOPNOTSUPP, c) if c != Compression::None => {
                    "; this kernel cannot decompress modules (CONFIG_MODULE_DECOMPRESS), \
                     so the image builder must store it uncompressed"
                }
                (Errno::ENOEXEC, _) => "; the module does not match the running kernel",
                (Errno::ENOENT, _) => {
                    "; a module it depends on is not loaded (check the order in /etc/modules.order)"
                }
                _ => "",
            };
            Err(source).context(ModuleLoadSnafu {
                path,
                hint: hint.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_paths_skipping_blanks_and_comments() {
        let text = "# dependencies first\n\nkernel/drivers/md/dm-mod.ko\n  kernel/drivers/md/dm-bufio.ko  \nkernel/fs/erofs/erofs.ko.zst\n";
        assert_eq!(
            parse_modules_order(text).unwrap(),
            vec![
                PathBuf::from("kernel/drivers/md/dm-mod.ko"),
                PathBuf::from("kernel/drivers/md/dm-bufio.ko"),
                PathBuf::from("kernel/fs/erofs/erofs.ko.zst"),
            ]
        );
        assert!(parse_modules_order("").unwrap().is_empty());
    }

    #[test]
    fn rejects_escaping_or_odd_lines_with_line_numbers() {
        for bad in [
            "/lib/modules/x.ko",
            "../x.ko",
            "kernel/./x.ko",
            "kernel/README",
            "kernel/.ko",
        ] {
            let text = format!("kernel/a.ko\n{bad}\n");
            let err = parse_modules_order(&text).unwrap_err();
            assert!(err.to_string().contains("line 2"), "{bad}: {err}");
        }
    }

    #[test]
    fn names_and_compression() {
        let p = Path::new("kernel/drivers/md/dm-verity.ko");
        assert_eq!(module_name(p), "dm_verity");
        assert_eq!(compression_of(p), Some(Compression::None));
        let p = Path::new("kernel/drivers/virtio/virtio_pci.ko.xz");
        assert_eq!(module_name(p), "virtio_pci");
        assert_eq!(compression_of(p), Some(Compression::Xz));
        assert_eq!(
            compression_of(Path::new("a/erofs.ko.zst")),
            Some(Compression::Zstd)
        );
        assert_eq!(
            compression_of(Path::new("a/x.ko.gz")),
            Some(Compression::Gzip)
        );
        assert_eq!(compression_of(Path::new("a/x.kox")), None);
    }

    #[test]
    fn missing_file_of_builtin_module_is_skipped() {
        let dir = std::env::temp_dir().join(format!("early-init-mod-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sys/dm_mod")).unwrap();
        let outcome = load_module(&dir.join("lib/dm-mod.ko"), &dir.join("sys")).unwrap();
        assert_eq!(outcome, LoadOutcome::BuiltIn);
        let err = load_module(&dir.join("lib/dm-verity.ko"), &dir.join("sys")).unwrap_err();
        assert!(err.to_string().contains("not in the initramfs"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
