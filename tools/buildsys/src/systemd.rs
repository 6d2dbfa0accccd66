//! Enabling, masking and linking systemd units in the image tree, the way `systemctl enable`
//! would, but with links under `/usr/lib/systemd/system` (the image's `/etc` is rebuilt at
//! every boot) and without running anything from the image.

use crate::error::{Result, UnitSnafu};
use crate::package::Package;
use crate::tree::{self, Kind};
use snafu::ensure;
use std::path::{Path, PathBuf};
use tracing::debug;

/// Where units live in the image, relative to `/`.
pub const UNIT_DIR: &str = "usr/lib/systemd/system";

/// The `[Install]` section of a unit file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallSection {
    /// `WantedBy=`
    pub wanted_by: Vec<String>,
    /// `RequiredBy=`
    pub required_by: Vec<String>,
    /// `Also=`
    pub also: Vec<String>,
    /// `DefaultInstance=`
    pub default_instance: Option<String>,
}

/// Reads the `[Install]` section of unit file text (`None` if it has none).
pub fn parse_install(text: &str) -> Option<InstallSection> {
    let mut section = String::new();
    let mut install: Option<InstallSection> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            section = line[1..line.len() - 1].to_string();
            if section == "Install" && install.is_none() {
                install = Some(InstallSection::default());
            }
            continue;
        }
        if section != "Install" {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let words = || value.split_whitespace().map(str::to_string);
        let install = install.as_mut().expect("set when the section started");
        match key.trim() {
            "WantedBy" => install.wanted_by.extend(words()),
            "RequiredBy" => install.required_by.extend(words()),
            "Also" => install.also.extend(words()),
            "DefaultInstance" => install.default_instance = Some(value.trim().to_string()),
            _ => {}
        }
    }
    install
}

/// Splits `name@instance.type` into (`name@.type`, `Some(instance)`); other names come back
/// unchanged with `None`.
fn template_of(unit: &str) -> (String, Option<String>) {
    if let Some((prefix, rest)) = unit.split_once('@') {
        if let Some((instance, suffix)) = rest.rsplit_once('.') {
            let instance = (!instance.is_empty()).then(|| instance.to_string());
            return (format!("{prefix}@.{suffix}"), instance);
        }
    }
    (unit.to_string(), None)
}

fn check_unit_name(package: &str, unit: &str) -> Result<()> {
    ensure!(
        !unit.is_empty() && !unit.contains('/') && unit.contains('.') && !unit.starts_with('.'),
        UnitSnafu {
            package,
            message: format!("'{unit}' is not a unit name"),
        }
    );
    Ok(())
}

/// Creates `<target>.<kind>/<unit>` -> `../<file>`.
fn link(root: &Path, package: &str, target: &str, kind: &str, unit: &str) -> Result<()> {
    check_unit_name(package, target)?;
    check_unit_name(package, unit)?;
    let (file, _) = template_of(unit);
    let unit_dir = root.join(UNIT_DIR);
    ensure!(
        tree::kind(&unit_dir, Path::new(&file))?.is_some(),
        UnitSnafu {
            package,
            message: format!(
                "cannot link {unit} into {target}: there is no {UNIT_DIR}/{file} in the image \
                 (keep it from a Debian package or add it under files/)"
            ),
        }
    );
    let path = unit_dir.join(format!("{target}.{kind}")).join(unit);
    debug!("{package}: {target}.{kind}/{unit} -> ../{file}");
    tree::symlink(&Path::new("..").join(&file), &path)
}

/// Applies a package's `[systemd]` table to the staged root.
pub fn apply(root: &Path, package: &Package) -> Result<()> {
    let name = package.name.as_str();
    let unit_dir = root.join(UNIT_DIR);
    for (target, units) in &package.systemd.wants {
        for unit in units {
            link(root, name, target, "wants", unit)?;
        }
    }
    let mut queue: Vec<String> = package.systemd.enable.clone();
    let mut done = std::collections::BTreeSet::new();
    while let Some(unit) = queue.pop() {
        if !done.insert(unit.clone()) {
            continue;
        }
        check_unit_name(name, &unit)?;
        let (file, instance) = template_of(&unit);
        let path = unit_dir.join(&file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            UnitSnafu {
                package: name,
                message: format!("cannot enable {unit}: cannot read {UNIT_DIR}/{file}: {e}"),
            }
            .build()
        })?;
        let Some(install) = parse_install(&text) else {
            return UnitSnafu {
                package: name,
                message: format!(
                    "cannot enable {unit}: it has no [Install] section; list it under \
                     [systemd.wants] with the target that should pull it in"
                ),
            }
            .fail();
        };
        let linked = if file.contains("@.") && instance.is_none() {
            let Some(default) = &install.default_instance else {
                return UnitSnafu {
                    package: name,
                    message: format!(
                        "cannot enable template {unit} without an instance; write name@instance.{}",
                        file.rsplit('.').next().unwrap_or("service")
                    ),
                }
                .fail();
            };
            file.replace("@.", &format!("@{default}."))
        } else {
            unit.clone()
        };
        ensure!(
            !install.wanted_by.is_empty()
                || !install.required_by.is_empty()
                || !install.also.is_empty(),
            UnitSnafu {
                package: name,
                message: format!("cannot enable {unit}: its [Install] section names no target"),
            }
        );
        for target in &install.wanted_by {
            link(root, name, target, "wants", &linked)?;
        }
        for target in &install.required_by {
            link(root, name, target, "requires", &linked)?;
        }
        queue.extend(install.also.iter().cloned());
    }
    for unit in &package.systemd.mask {
        check_unit_name(name, unit)?;
        debug!("{name}: masking {unit}");
        tree::symlink(Path::new("/dev/null"), &unit_dir.join(unit))?;
    }
    if let Some(target) = &package.systemd.default_target {
        check_unit_name(name, target)?;
        ensure!(
            tree::kind(&unit_dir, Path::new(target))?.is_some(),
            UnitSnafu {
                package: name,
                message: format!("default target {target} is not in the image"),
            }
        );
        tree::symlink(Path::new(target), &unit_dir.join("default.target"))?;
    }
    Ok(())
}

/// Removes links in `*.wants/` and `*.requires/` directories whose unit is not in the image
/// (Debian packages ship such links for units this image leaves out), and the directories
/// left empty. Returns the links removed, relative to the unit directory.
pub fn prune_dangling_links(root: &Path) -> Result<Vec<PathBuf>> {
    let unit_dir = root.join(UNIT_DIR);
    if !unit_dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut removed = Vec::new();
    for (dir, kind) in tree::walk(&unit_dir)? {
        let dir_name = dir.to_string_lossy();
        if kind != Kind::Dir || !(dir_name.ends_with(".wants") || dir_name.ends_with(".requires")) {
            continue;
        }
        let mut left = 0;
        for (entry, kind) in tree::walk(&unit_dir.join(&dir))? {
            let rel = Path::new(UNIT_DIR).join(&dir).join(&entry);
            if kind == Kind::Symlink && tree::resolve(root, &rel, true)?.is_none() {
                debug!(
                    "removing link to a unit the image does not have: /{}",
                    rel.display()
                );
                tree::remove(&root.join(&rel))?;
                removed.push(dir.join(&entry));
            } else {
                left += 1;
            }
        }
        if left == 0 {
            tree::remove(&unit_dir.join(&dir))?;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{Package, PackageInfo, SystemdSection};
    use std::collections::BTreeMap;

    fn package(systemd: SystemdSection) -> Package {
        Package {
            name: "test".into(),
            dir: PathBuf::new(),
            info: PackageInfo::default(),
            debian: Default::default(),
            cargo: Default::default(),
            systemd,
            kernel: None,
            files_dir: None,
        }
    }

    #[test]
    fn parses_install_sections() {
        let install = parse_install(
            "[Unit]\nWantedBy=nothing.target\n[Service]\nExecStart=/x\n\n[Install]\n\
             # comment\nWantedBy=multi-user.target  configured.target\nRequiredBy=a.target\n\
             Also=b.socket\nDefaultInstance=ttyS0\n",
        )
        .unwrap();
        assert_eq!(
            install.wanted_by,
            ["multi-user.target", "configured.target"]
        );
        assert_eq!(install.required_by, ["a.target"]);
        assert_eq!(install.also, ["b.socket"]);
        assert_eq!(install.default_instance.as_deref(), Some("ttyS0"));
        assert_eq!(parse_install("[Unit]\nDescription=x\n"), None);
    }

    #[test]
    fn enables_links_masks_and_prunes() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path();
        let units = root.join(UNIT_DIR);
        std::fs::create_dir_all(units.join("sysinit.target.wants")).unwrap();
        for (name, text) in [
            ("multi-user.target", "[Unit]\n"),
            ("sysinit.target", "[Unit]\n"),
            (
                "api.service",
                "[Service]\n[Install]\nWantedBy=multi-user.target\nAlso=api.socket\n",
            ),
            (
                "api.socket",
                "[Socket]\n[Install]\nWantedBy=sockets.target\n",
            ),
            (
                "getty@.service",
                "[Service]\n[Install]\nWantedBy=getty.target\nDefaultInstance=tty1\n",
            ),
            ("journald.service", "[Service]\n"),
        ] {
            std::fs::write(units.join(name), text).unwrap();
        }
        std::os::unix::fs::symlink(
            "../gone.service",
            units.join("sysinit.target.wants/gone.service"),
        )
        .unwrap();
        let systemd = SystemdSection {
            enable: vec![
                "api.service".into(),
                "getty@ttyS0.service".into(),
                "getty@.service".into(),
            ],
            wants: BTreeMap::from([("sysinit.target".into(), vec!["journald.service".into()])]),
            mask: vec!["noisy.service".into()],
            default_target: Some("multi-user.target".into()),
        };
        apply(root, &package(systemd)).unwrap();
        let target = |p: &str| std::fs::read_link(units.join(p)).unwrap();
        assert_eq!(
            target("multi-user.target.wants/api.service"),
            Path::new("../api.service")
        );
        assert_eq!(
            target("sockets.target.wants/api.socket"),
            Path::new("../api.socket")
        );
        assert_eq!(
            target("getty.target.wants/getty@ttyS0.service"),
            Path::new("../getty@.service")
        );
        assert_eq!(
            target("getty.target.wants/getty@tty1.service"),
            Path::new("../getty@.service")
        );
        assert_eq!(
            target("sysinit.target.wants/journald.service"),
            Path::new("../journald.service")
        );
        assert_eq!(target("noisy.service"), Path::new("/dev/null"));
        assert_eq!(target("default.target"), Path::new("multi-user.target"));

        let removed = prune_dangling_links(root).unwrap();
        assert_eq!(
            removed,
            [PathBuf::from("sysinit.target.wants/gone.service")]
        );
        assert!(units.join("sysinit.target.wants/journald.service").exists());

        let error = apply(
            root,
            &package(SystemdSection {
                enable: vec!["journald.service".into()],
                ..Default::default()
            }),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("no [Install] section"), "{error}");
        let error = apply(
            root,
            &package(SystemdSection {
                enable: vec!["missing.service".into()],
                ..Default::default()
            }),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("missing.service"), "{error}");
    }
}
