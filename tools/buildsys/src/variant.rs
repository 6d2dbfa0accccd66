//! Variant definitions: `variants/<name>/variant.toml`.

use crate::error::{
    InvalidDefinitionSnafu, MissingRequiredPackageSnafu, ParseDefinitionSnafu, ReadDefinitionSnafu,
    Result, UnknownPackageSnafu, UnknownVariantSnafu,
};
use crate::package::{list_definition_dirs, list_packages, load_package, Package, PACKAGE_FILE};
use crate::PACKAGES_DIR;
use serde::{Deserialize, Serialize};
use snafu::{ensure, ResultExt};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Directory of variant definitions, relative to the repository root.
pub const VARIANTS_DIR: &str = "variants";
/// Name of a variant's definition file.
pub const VARIANT_FILE: &str = "variant.toml";

/// A variant: which packages make up the image, its kernel command line, output formats,
/// default settings and disk layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// Directory name under `variants/`; becomes `VARIANT_ID` in os-release.
    pub name: String,
    /// The variant directory.
    pub dir: PathBuf,
    /// One line saying what the variant is for.
    pub description: String,
    /// The packages, loaded, in the order the variant lists them.
    pub packages: Vec<Package>,
    /// Kernel parameters of the variant, in order.
    pub kernel_parameters: Vec<String>,
    /// Extra kernel modules kept in the image beyond the kernel package's list.
    pub kernel_modules: Vec<String>,
    /// Disk image formats to produce.
    pub image_formats: Vec<ImageFormat>,
    /// The variant's settings defaults files (absolute paths), merged in order after the
    /// shared defaults of `sources/models/defaults.d/`.
    pub defaults: Vec<PathBuf>,
    /// Partition sizes.
    pub layout: Layout,
}

/// Kernel parameters the disk builder writes per partition set (which partitions, the root
/// hash); a variant may set other `ballast.*` parameters, such as `ballast.boot-deadline`.
pub use imagebuilder::grub::BUILDER_PARAMETERS as DISK_BUILDER_PARAMETERS;

/// Disk image formats: the disk builder's own type, so a variant names exactly what it writes.
pub use imagebuilder::Format as ImageFormat;

/// Partition sizes in MiB, for the disk builder. One bank holds BOOT, ROOT, HASH and
/// RESERVED; the disk has two banks plus EFI, PRIVATE and DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Layout {
    /// EFI system partition.
    pub efi: u32,
    /// BOOT-A/B: kernel, initramfs, GRUB configuration.
    pub boot: u32,
    /// ROOT-A/B: the erofs root image.
    pub root: u32,
    /// HASH-A/B: the dm-verity hash tree.
    pub hash: u32,
    /// RESERVED-A/B: room for future use.
    pub reserved: u32,
    /// PRIVATE: state that belongs to the OS, not to workloads.
    pub private: u32,
    /// DATA: initial size of the writable data partition.
    pub data: u32,
}

impl Layout {
    /// The disk builder's partition plan for these sizes (DATA at its given size; it grows to
    /// fill the disk at boot).
    pub fn to_disk_layout(&self) -> disk_layout::Layout {
        disk_layout::Layout {
            efi_mib: self.efi.into(),
            boot_mib: self.boot.into(),
            root_mib: self.root.into(),
            hash_mib: self.hash.into(),
            reserved_mib: self.reserved.into(),
            private_mib: self.private.into(),
            data_mib: Some(self.data.into()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct VariantFile {
    variant: VariantInfo,
    layout: Layout,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct VariantInfo {
    description: String,
    packages: Vec<String>,
    #[serde(default)]
    kernel_parameters: Vec<String>,
    #[serde(default)]
    kernel_modules: Vec<String>,
    image_formats: Vec<ImageFormat>,
    #[serde(default)]
    defaults: Vec<PathBuf>,
}

/// Names of all variants (directories under `variants/` holding a `variant.toml`), sorted.
pub fn list_variants(root: &Path) -> Result<Vec<String>> {
    list_definition_dirs(&root.join(VARIANTS_DIR), VARIANT_FILE)
}

/// Reads `variants/<name>/variant.toml` and every package it lists, and checks them: packages
/// exist and their `requires` are met, at most one package has a `[kernel]` table, defaults
/// files exist, layout sizes are positive.
pub fn load_variant(root: &Path, name: &str) -> Result<Variant> {
    let variants_dir = root.join(VARIANTS_DIR);
    let known = list_variants(root)?;
    ensure!(
        known.iter().any(|v| v == name),
        UnknownVariantSnafu {
            name,
            dir: &variants_dir,
            found: if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            },
        }
    );
    let dir = variants_dir.join(name);
    let path = dir.join(VARIANT_FILE);
    let text = std::fs::read_to_string(&path).context(ReadDefinitionSnafu { path: &path })?;
    let file: VariantFile = toml::from_str(&text).context(ParseDefinitionSnafu { path: &path })?;
    let invalid = |message: String| InvalidDefinitionSnafu {
        path: path.clone(),
        message,
    };
    let info = file.variant;
    ensure!(
        !info.description.trim().is_empty(),
        invalid("[variant].description must say what the variant is for".into())
    );
    ensure!(
        !info.packages.is_empty(),
        invalid("[variant].packages is empty".into())
    );
    ensure!(
        !info.image_formats.is_empty(),
        invalid("[variant].image-formats is empty; use e.g. [\"raw\"]".into())
    );
    for parameter in &info.kernel_parameters {
        ensure!(
            !parameter.is_empty() && !parameter.chars().any(char::is_whitespace),
            invalid(format!(
                "kernel parameter '{parameter}' must be one word without spaces"
            ))
        );
        let key = parameter.split('=').next().unwrap_or_default();
        ensure!(
            !DISK_BUILDER_PARAMETERS.contains(&key),
            invalid(format!(
                "kernel parameter '{parameter}': {} are set by the disk builder",
                DISK_BUILDER_PARAMETERS.join(", ")
            ))
        );
    }
    let layout = file.layout;
    for (field, value) in [
        ("efi", layout.efi),
        ("boot", layout.boot),
        ("root", layout.root),
        ("hash", layout.hash),
        ("private", layout.private),
        ("data", layout.data),
    ] {
        ensure!(
            value > 0,
            invalid(format!("[layout].{field} must be at least 1 (MiB)"))
        );
    }

    let mut seen = BTreeSet::new();
    let mut packages = Vec::new();
    let all_packages = list_packages(root)?;
    for package in &info.packages {
        ensure!(
            seen.insert(package.as_str()),
            invalid(format!("package '{package}' is listed twice"))
        );
        ensure!(
            all_packages.iter().any(|p| p == package),
            UnknownPackageSnafu {
                variant: name,
                package,
                path: root.join(PACKAGES_DIR).join(package).join(PACKAGE_FILE),
                found: all_packages.join(", "),
            }
        );
        packages.push(load_package(root, package)?);
    }
    for package in &packages {
        for required in &package.info.requires {
            ensure!(
                seen.contains(required.as_str()),
                MissingRequiredPackageSnafu {
                    variant: name,
                    package: &package.name,
                    required,
                }
            );
        }
    }
    let kernels: Vec<&str> = packages
        .iter()
        .filter(|p| p.kernel.is_some())
        .map(|p| p.name.as_str())
        .collect();
    ensure!(
        kernels.len() == 1,
        invalid(format!(
            "exactly one package must have a [kernel] table; found {}",
            if kernels.is_empty() {
                "none".to_string()
            } else {
                kernels.join(", ")
            }
        ))
    );

    let mut defaults = Vec::new();
    for file in &info.defaults {
        ensure!(
            file.is_relative() && !file.components().any(|c| c.as_os_str() == ".."),
            invalid(format!(
                "defaults file {} must be relative to the variant directory",
                file.display()
            ))
        );
        let full = dir.join(file);
        ensure!(
            full.is_file(),
            invalid(format!("defaults file {} does not exist", full.display()))
        );
        defaults.push(full);
    }
    let mut image_formats = info.image_formats;
    image_formats.sort();
    image_formats.dedup();

    Ok(Variant {
        name: name.to_string(),
        dir,
        description: info.description,
        packages,
        kernel_parameters: info.kernel_parameters,
        kernel_modules: info.kernel_modules,
        image_formats,
        defaults,
        layout,
    })
}

impl Variant {
    /// The package with the `[kernel]` table (checked by [`load_variant`]).
    pub fn kernel_package(&self) -> &Package {
        self.packages
            .iter()
            .find(|p| p.kernel.is_some())
            .expect("load_variant checks that one package has a [kernel] table")
    }

    /// Debian packages the variant asks for, sorted and without duplicates.
    pub fn debian_requests(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self
            .packages
            .iter()
            .flat_map(|p| p.debian.packages.iter().map(String::as_str))
            .collect();
        set.into_iter().map(str::to_string).collect()
    }

    /// Cargo binaries the variant installs, sorted and without duplicates; build these with
    /// `cargo build --release` before staging.
    pub fn cargo_binaries(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self
            .packages
            .iter()
            .flat_map(|p| p.cargo.binaries.iter().map(String::as_str))
            .collect();
        set.into_iter().map(str::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(root: &Path, name: &str, extra: &str) {
        let dir = root.join("packages").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("package.toml"),
            format!("[package]\ndescription = \"{name}\"\n{extra}"),
        )
        .unwrap();
    }

    fn variant(root: &Path, name: &str, packages: &str) {
        let dir = root.join("variants").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("defaults.toml"), "").unwrap();
        std::fs::write(
            dir.join("variant.toml"),
            format!(
                r#"
                [variant]
                description = "test"
                packages = [{packages}]
                kernel-parameters = ["console=ttyS0"]
                image-formats = ["qcow2", "raw", "raw"]
                defaults = ["defaults.toml"]
                [layout]
                efi = 16
                boot = 40
                root = 512
                hash = 8
                reserved = 8
                private = 16
                data = 128
                "#
            ),
        )
        .unwrap();
    }

    #[test]
    fn loads_and_checks_variants() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path();
        package(root, "kernel", "[kernel]\nmodules = [\"erofs\"]\n");
        package(root, "api", "[package.requires]\n");
        package(root, "bridge", "");
        std::fs::write(
            root.join("packages/api/package.toml"),
            "[package]\ndescription = \"api\"\nrequires = [\"kernel\"]\n",
        )
        .unwrap();
        variant(root, "dev", "\"kernel\", \"api\"");
        let dev = load_variant(root, "dev").unwrap();
        assert_eq!(dev.packages.len(), 2);
        assert_eq!(dev.kernel_package().name, "kernel");
        assert_eq!(dev.image_formats, [ImageFormat::Raw, ImageFormat::Qcow2]);
        assert_eq!(dev.layout.root, 512);
        assert!(dev.defaults[0].ends_with("variants/dev/defaults.toml"));

        let error = load_variant(root, "prod").unwrap_err().to_string();
        assert!(error.contains("Unknown variant 'prod'"), "{error}");
        assert!(error.contains("dev"), "{error}");

        variant(root, "missing", "\"kernel\", \"nope\"");
        let error = load_variant(root, "missing").unwrap_err().to_string();
        assert!(error.contains("'nope'"), "{error}");

        variant(root, "unmet", "\"api\"");
        let error = load_variant(root, "unmet").unwrap_err().to_string();
        assert!(error.contains("requires package 'kernel'"), "{error}");

        variant(root, "nokernel", "\"bridge\"");
        let error = load_variant(root, "nokernel").unwrap_err().to_string();
        assert!(error.contains("[kernel]"), "{error}");

        assert_eq!(
            list_variants(root).unwrap(),
            ["dev", "missing", "nokernel", "unmet"]
        );
    }
}
