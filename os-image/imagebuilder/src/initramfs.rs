//! The initramfs: Ballast's early init as `/init`, the console device node, and the kernel
//! modules it loads, in a gzip-compressed newc archive.

use crate::error::{self, Result};
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use newc::CpioWriter;
use snafu::ensure;
use std::io::Write;
use std::path::Path;

/// The list of modules the early init loads, inside the initramfs.
pub const MODULES_ORDER: &str = constants::MODULES_ORDER_IN_INITRAMFS;

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> error::Error {
    let path = path.to_path_buf();
    move |source| error::Error::Io {
        action,
        path,
        source,
    }
}

/// Checks that a module path is relative and stays inside the modules directory.
pub fn check_module_path(module: &str) -> Result<()> {
    // Check the raw segments: Path::components() would hide "." in the middle.
    ensure!(
        !module.is_empty()
            && !module.contains('\n')
            && module
                .split('/')
                .all(|segment| !segment.is_empty() && segment != "." && segment != ".."),
        error::InvalidInputSnafu {
            reason: format!(
                "initramfs module {module:?} must be a path relative to \
                 usr/lib/modules/<kernel version>, without '.' or '..'"
            )
        }
    );
    Ok(())
}

/// Builds the compressed archive.
///
/// * `init`: the static early-init binary, installed as `/init`;
/// * `modules_dir`: `<root>/usr/lib/modules/<kernel version>`; each of `modules` (relative
///   paths, in load order) is copied from there to `/lib/modules/<kernel version>/` and listed
///   in `/etc/modules.order`.
pub fn build(
    init: &Path,
    kernel_version: &str,
    modules_dir: &Path,
    modules: &[String],
) -> Result<Vec<u8>> {
    let io_err = |e: std::io::Error| error::Error::Io {
        action: "write the initramfs archive",
        path: init.to_path_buf(),
        source: e,
    };
    let gz: GzEncoder<Vec<u8>> = GzBuilder::new()
        .mtime(0)
        .operating_system(3) // Unix, whatever the build host
        .write(Vec::new(), Compression::best());
    let mut w = CpioWriter::new(gz);
    for dir in ["dev", "proc", "sys", "run", "sysroot", "etc"] {
        w.dir(dir, 0o755).map_err(io_err)?;
    }
    w.char_device("dev/console", 0o600, 5, 1).map_err(io_err)?;
    let init_bytes = std::fs::read(init).map_err(io("read the early init", init))?;
    w.file("init", 0o755, &init_bytes).map_err(io_err)?;

    let mut order = String::from("# Kernel modules for the early init, in load order.\n");
    for module in modules {
        check_module_path(module)?;
        let source = modules_dir.join(module);
        let data = match std::fs::read(&source) {
            Ok(data) => data,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return error::MissingModuleSnafu {
                    module: module.clone(),
                    path: source,
                }
                .fail()
            }
            Err(e) => return Err(io("read the kernel module", &source)(e)),
        };
        w.file(
            &format!("lib/modules/{kernel_version}/{module}"),
            0o644,
            &data,
        )
        .map_err(io_err)?;
        order.push_str(module);
        order.push('\n');
    }
    w.file(MODULES_ORDER, 0o644, order.as_bytes())
        .map_err(io_err)?;
    let mut gz = w.finish().map_err(io_err)?;
    gz.flush().map_err(io_err)?;
    gz.finish().map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    #[test]
    fn archive_holds_init_console_and_modules() {
        let dir = tempfile::tempdir().unwrap();
        let init = dir.path().join("init");
        std::fs::write(&init, b"\x7fELF init").unwrap();
        let modules_dir = dir.path().join("usr/lib/modules/6.1.0-test");
        std::fs::create_dir_all(modules_dir.join("kernel/fs/erofs")).unwrap();
        std::fs::write(modules_dir.join("kernel/fs/erofs/erofs.ko"), b"erofs").unwrap();
        let modules = vec!["kernel/fs/erofs/erofs.ko".to_string()];

        let a = build(&init, "6.1.0-test", &modules_dir, &modules).unwrap();
        let b = build(&init, "6.1.0-test", &modules_dir, &modules).unwrap();
        assert_eq!(a, b, "reproducible");
        assert_eq!(&a[..2], &[0x1f, 0x8b]);
        let mut cpio = Vec::new();
        GzDecoder::new(&a[..]).read_to_end(&mut cpio).unwrap();
        let text = String::from_utf8_lossy(&cpio);
        for needle in [
            "dev/console",
            "lib/modules/6.1.0-test/kernel/fs/erofs/erofs.ko",
            "kernel/fs/erofs/erofs.ko\n",
            "\x7fELF init",
            "TRAILER!!!",
        ] {
            assert!(text.contains(needle), "{needle:?}");
        }

        let err = build(&init, "6.1.0-test", &modules_dir, &["nope.ko".to_string()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nope.ko") && err.contains("not in the root tree"),
            "{err}"
        );
        for bad in ["../x.ko", "/abs.ko", "a/./b.ko", ""] {
            assert!(check_module_path(bad).is_err(), "{bad:?}");
        }
    }
}
