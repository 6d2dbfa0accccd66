//! Unpacking `.deb` files without root.

mod common;

use common::{deb, Item};
use debian::{extract, extract_entries, EntryKind, Error};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn sample() -> Vec<Item> {
    vec![
        Item::Dir("./", 0o755),
        Item::Dir("./usr/", 0o755),
        Item::Dir("./usr/bin/", 0o755),
        Item::File("./usr/bin/hello", 0o755, b"#!/bin/sh\necho hello\n"),
        Item::File("./usr/bin/become", 0o4755, b"suid"),
        Item::HardLink("./usr/bin/hello-again", "./usr/bin/hello"),
        Item::Symlink("./bin", "usr/bin"),
        Item::Symlink("./usr/bin/sh-alias", "/bin/sh"),
        Item::Dir("./etc/", 0o755),
        Item::Dir("./etc/locked/", 0o555),
        Item::File("./etc/locked/conf", 0o444, b"x=1\n"),
        Item::OwnedFile("./etc/mailname", 0o640, 0, 8, b"host\n"),
    ]
}

fn write(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn unpacks_every_compression() {
    for compression in ["xz", "zst", "gz", ""] {
        let work = tempfile::tempdir().unwrap();
        let deb_path = write(work.path(), "t.deb", &deb(&sample(), compression));
        let dest = work.path().join("root");
        let entries = extract_entries(&deb_path, &dest).unwrap();

        assert_eq!(entries.len(), 11, "{compression}: './' is not listed");
        let hello = dest.join("usr/bin/hello");
        assert_eq!(std::fs::read(&hello).unwrap(), b"#!/bin/sh\necho hello\n");
        assert_eq!(mode(&hello), 0o755);
        assert_eq!(mode(&dest.join("usr/bin/become")), 0o4755, "setuid kept");
        assert_eq!(
            std::fs::metadata(dest.join("usr/bin/hello-again"))
                .unwrap()
                .ino(),
            std::fs::metadata(&hello).unwrap().ino(),
            "hard link"
        );
        assert_eq!(
            std::fs::read_link(dest.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert_eq!(
            std::fs::read_link(dest.join("usr/bin/sh-alias")).unwrap(),
            Path::new("/bin/sh"),
            "absolute symlinks are kept as written"
        );
        assert_eq!(mode(&dest.join("etc/locked")), 0o555, "final dir mode");
        assert_eq!(
            std::fs::read(dest.join("etc/locked/conf")).unwrap(),
            b"x=1\n"
        );

        let mailname = entries
            .iter()
            .find(|e| e.image_path == Path::new("/etc/mailname"))
            .unwrap();
        assert_eq!((mailname.uid, mailname.gid, mailname.mode), (0, 8, 0o640));
        assert_eq!(mailname.kind, EntryKind::File);
        assert_eq!(mailname.path, dest.join("etc/mailname"));
        let link = entries
            .iter()
            .find(|e| e.image_path == Path::new("/bin"))
            .unwrap();
        assert_eq!(link.kind, EntryKind::Symlink);
        assert_eq!(link.link_target.as_deref(), Some(Path::new("usr/bin")));

        // Unpacking again over the same tree (as when packages share directories) works.
        let again = extract(&deb_path, &dest).unwrap();
        assert_eq!(again.len(), 11);
        // Make the tree removable for the tempdir cleanup.
        std::fs::set_permissions(
            dest.join("etc/locked"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
}

#[test]
fn refuses_paths_outside_dest() {
    let work = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();

    let dotdot = deb(&[Item::RawName(b"./../escaped", b"x")], "xz");
    let deb_path = write(work.path(), "dotdot.deb", &dotdot);
    let err = extract(&deb_path, &work.path().join("root")).unwrap_err();
    assert!(matches!(err, Error::UnsafeEntry { .. }), "{err}");
    assert!(err.to_string().contains("../escaped"), "{err}");
    assert!(!work.path().join("escaped").exists());

    let target: &'static str = Box::leak(outside.path().display().to_string().into_boxed_str());
    let through_link = deb(
        &[
            Item::Symlink("./evil", target),
            Item::File("./evil/planted", 0o644, b"x"),
        ],
        "xz",
    );
    let deb_path = write(work.path(), "link.deb", &through_link);
    let err = extract(&deb_path, &work.path().join("root2")).unwrap_err();
    assert!(err.to_string().contains("link.deb"), "{err}");
    assert!(!outside.path().join("planted").exists());
}

#[test]
fn refuses_non_debs() {
    let work = tempfile::tempdir().unwrap();
    let junk = write(work.path(), "junk.deb", b"this is not an ar archive at all");
    let err = extract(&junk, &work.path().join("r")).unwrap_err();
    assert!(
        err.to_string().contains("not a Debian binary package"),
        "{err}"
    );

    let mut no_data = ar::Builder::new(Vec::new());
    no_data
        .append(
            &ar::Header::new(b"debian-binary".to_vec(), 4),
            &b"2.0\n"[..],
        )
        .unwrap();
    let path = write(work.path(), "nodata.deb", &no_data.into_inner().unwrap());
    let err = extract(&path, &work.path().join("r")).unwrap_err();
    assert!(err.to_string().contains("no data.tar"), "{err}");

    let mut truncated = deb(&sample(), "xz");
    truncated.truncate(truncated.len() - 40);
    let path = write(work.path(), "truncated.deb", &truncated);
    assert!(extract(&path, &work.path().join("r2")).is_err());
}

/// The real tool's output format, when dpkg-deb is around.
#[test]
fn unpacks_a_package_built_by_dpkg_deb() {
    if !hosttools::require_tool("dpkg-deb") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("pkg");
    std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(tree.join("usr/lib/x")).unwrap();
    std::fs::write(
        tree.join("DEBIAN/control"),
        "Package: ballast-test\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: test\n",
    )
    .unwrap();
    std::fs::write(tree.join("usr/lib/x/data"), "payload").unwrap();
    std::os::unix::fs::symlink("x/data", tree.join("usr/lib/link")).unwrap();
    for (compression, name) in [("xz", "a.deb"), ("zstd", "b.deb"), ("gzip", "c.deb")] {
        let out = work.path().join(name);
        let status = Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Z", compression, "--build"])
            .arg(&tree)
            .arg(&out)
            .output()
            .unwrap();
        assert!(status.status.success(), "{status:?}");
        let dest = work.path().join(format!("root-{compression}"));
        let written = extract(&out, &dest).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("usr/lib/x/data")).unwrap(),
            "payload"
        );
        assert_eq!(
            std::fs::read_link(dest.join("usr/lib/link")).unwrap(),
            Path::new("x/data")
        );
        assert!(written.contains(&dest.join("usr/lib/x/data")));
    }
}
