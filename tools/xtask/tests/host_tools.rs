//! Keeps hosttools::TABLE and host::COMMANDS honest against the code.
//!
//! The build-host code (tools/, os-image/, and the tests under sources/) is scanned for the
//! external programs it starts: `Command::new("...")`, `host::run("...", ...)`, imagebuilder's
//! `program: "..."` tool constants, and the commands of shell strings (`sh -c "a | b"`). Every
//! program found must be in the table, so the next `Command::new("foo")` cannot bring back a
//! tool that a fresh host lacks and nothing installs. Then, for each `cargo xtask` command,
//! the programs on its code path (declared below) must be covered by what the command ensures
//! on a host with nothing installed (an empty probe root): the check that would have caught
//! `run` starting qemu-img without installing qemu-utils.

use hosttools::Probe;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use xtask::host;

/// Programs the code names through constants or variables the scan cannot follow, by the
/// folder or file that starts them.
const IMPLIED: &[(&str, &[&str])] = &[
    ("tools/vmtest/src/vm.rs", &["qemu-system-x86_64"]),
    ("tools/vmtest/src/config.rs", &[hosttools::OVMF_CODE]),
    ("os-image/imagebuilder/src", &[hosttools::GRUB_EFI_MODULE]),
    ("tools/debian/src", &[hosttools::DEBIAN_KEYRING]),
    // The journal writer by its path; journalctl run by the API server the tests start.
    (
        "sources/api/apiserver/tests/logs.rs",
        &[hosttools::JOURNAL_REMOTE, "journalctl"],
    ),
    // The receiver helper and the uploader, by their paths.
    (
        "tools/testserver/src/journal.rs",
        &[hosttools::JOURNAL_REMOTE, "journalctl"],
    ),
    (
        "tools/testserver/tests/journal_upload.rs",
        &[hosttools::JOURNAL_UPLOAD],
    ),
];

/// The build code path: what `cargo xtask build` runs outside its tests.
const BUILD_PATH: &[&str] = &[
    "tools/xtask/src/image.rs",
    "tools/buildsys/src",
    "tools/debian/src",
    "tools/repo/src",
    "os-image/imagebuilder/src",
    "os-image/newc/src",
    "os-image/verity/src",
];

/// Booting: `cargo xtask run` after the build.
const BOOT_PATH: &[&str] = &[
    "tools/xtask/src/run.rs",
    "tools/xtask/src/vm.rs",
    "tools/vmtest/src/vm.rs",
    "tools/vmtest/src/config.rs",
    "sources/api/apibridge/src",
];

/// Names that look like programs in the code but are not run on purpose: a test's stand-in
/// for a missing tool.
const NOT_PROGRAMS: &[&str] = &["ballast-no-such-tool"];

/// This file, whose examples of the patterns would match themselves.
const THIS_FILE: &str = "tools/xtask/tests/host_tools.rs";

/// Each command's code path: files or folders whose non-test code it runs. `test` runs every
/// test as well (the `all` marker), except the benches and examples.
fn code_paths() -> Vec<(&'static str, Vec<&'static str>)> {
    let join = |parts: &[&[&'static str]]| parts.concat();
    vec![
        ("build", join(&[BUILD_PATH])),
        ("run", join(&[BUILD_PATH, BOOT_PATH])),
        ("test", vec!["all"]),
        (
            "lock",
            vec!["tools/debian/src", "tools/buildsys/src/lock.rs"],
        ),
        (
            "images",
            vec![
                "tools/xtask/src/containers.rs",
                "tools/xtask/src/oci.rs",
                "tools/buildsys/src/container.rs",
                "tools/buildsys/src/lock.rs",
                "tools/debian/src",
                "tools/ociimage/src",
                "tools/registry/src",
            ],
        ),
        (
            "registry",
            vec!["tools/xtask/src/oci.rs", "tools/registry/src"],
        ),
        ("bench verity", vec!["tools/xtask/src/bench.rs"]),
        ("bench image", join(&[BUILD_PATH])),
        ("bench boot", join(&[BUILD_PATH, BOOT_PATH])),
        (
            "bench settings",
            join(&[&["tools/xtask/src/bench_settings.rs"], BOOT_PATH]),
        ),
        ("bench update", vec!["tools/xtask/src/bench_update.rs"]),
        (
            "bench updater",
            join(&[&["tools/xtask/src/bench_updater.rs"], BOOT_PATH]),
        ),
        ("bench api", vec!["tools/xtask/src/bench_api.rs"]),
        (
            "bench ops",
            join(&[&["tools/xtask/src/bench_ops.rs"], BOOT_PATH]),
        ),
    ]
}

/// A scanned file and the programs it starts (in all of it, and before its `#[cfg(test)]`).
struct Scanned {
    path: String,
    all: BTreeSet<String>,
    non_test: BTreeSet<String>,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name == "build" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The build-host code: all of tools/ and os-image/, and the tests of sources/ (the rest of
/// sources/ runs on the node, not on the build host).
fn build_host_files(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&root.join("tools"), &mut files);
    rust_files(&root.join("os-image"), &mut files);
    let mut sources = Vec::new();
    rust_files(&root.join("sources"), &mut sources);
    files.extend(
        sources
            .into_iter()
            .filter(|p| p.components().any(|c| c.as_os_str() == "tests")),
    );
    let mut relative: Vec<String> = files
        .iter()
        .map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .filter(|p| p != THIS_FILE)
        .collect();
    relative.sort();
    relative
}

/// The string literal starting at or after `text`'s start (skipping `format!(` and spaces), if
/// it comes before any other argument.
fn next_literal(text: &str) -> Option<String> {
    let text = text.trim_start();
    let text = text.strip_prefix("format!(").unwrap_or(text).trim_start();
    let body = text.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

/// The programs a shell command line runs: the first word of each pipeline part.
fn shell_programs(line: &str) -> Vec<String> {
    line.split(['|', ';', '&', '(', ')', '\n'])
        .filter_map(|part| {
            part.split_whitespace()
                .find(|w| !w.contains('=') && !w.starts_with('<') && !w.starts_with('>'))
        })
        .filter(|w| !w.starts_with('$') && !w.starts_with('\'') && !w.starts_with('"'))
        .map(str::to_string)
        .collect()
}

/// The external programs `code` starts.
fn programs_in(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for marker in ["Command::new(", "host::run(", "program: "] {
        for (at, _) in code.match_indices(marker) {
            if let Some(program) = next_literal(&code[at + marker.len()..]) {
                found.insert(program);
            }
        }
    }
    // `sh -c "..."`: `.arg("-c").arg("...")`, `.args(["-c", "..."])`, with or without format!.
    for (at, _) in code.match_indices("\"-c\"") {
        let rest = &code[at + 4..];
        let rest = rest
            .trim_start()
            .trim_start_matches(')')
            .trim_start()
            .trim_start_matches(".arg(")
            .trim_start_matches(',');
        if let Some(line) = next_literal(rest) {
            found.extend(shell_programs(&line));
        }
    }
    // An absolute path to a program counts as the program (`/usr/bin/mcopy`), unless the
    // table lists the path itself (a firmware file).
    found
        .into_iter()
        .filter(|p| !NOT_PROGRAMS.contains(&p.as_str()))
        .map(|p| {
            if p.starts_with('/') && hosttools::lookup(&p).is_none() {
                Path::new(&p)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or(p)
            } else {
                p
            }
        })
        .collect()
}

fn scan(root: &Path) -> Vec<Scanned> {
    build_host_files(root)
        .into_iter()
        .map(|path| {
            let code = std::fs::read_to_string(root.join(&path)).unwrap();
            let before_tests = code.split("#[cfg(test)]").next().unwrap_or("");
            let mut all = programs_in(&code);
            let mut non_test = programs_in(before_tests);
            for (prefix, tools) in IMPLIED {
                if path.starts_with(prefix) {
                    all.extend(tools.iter().map(|t| t.to_string()));
                    non_test.extend(tools.iter().map(|t| t.to_string()));
                }
            }
            Scanned {
                path,
                all,
                non_test,
            }
        })
        .collect()
}

#[test]
fn the_scan_finds_what_it_should() {
    let code = r#"
        let a = Command::new("sgdisk").arg("-p");
        host::run("cargo", &["build"]);
        pub const X: HostTool = HostTool { program: "mkfs.erofs", package: "erofs-utils" };
        Command::new("sh").arg("-c").arg(format!("zcat < '{}' | cpio -t --quiet", p));
        Command::new("sh").args(["-c", "curl -s \"$1\" | tee \"$2\" | sha256sum"]);
        Command::new("/usr/bin/mcopy");
        Command::new(&qemu);
    "#;
    let found: Vec<String> = programs_in(code).into_iter().collect();
    assert_eq!(
        found,
        [
            "cargo",
            "cpio",
            "curl",
            "mcopy",
            "mkfs.erofs",
            "sgdisk",
            "sh",
            "sha256sum",
            "tee",
            "zcat"
        ]
    );
}

#[test]
fn every_program_the_build_host_starts_is_in_the_table() {
    let root = host::root();
    let scanned = scan(&root);
    assert!(
        scanned.len() > 50,
        "the scan found only {} files",
        scanned.len()
    );
    let mut unknown: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &scanned {
        for program in &file.all {
            if hosttools::lookup(program).is_none() {
                unknown
                    .entry(program.clone())
                    .or_default()
                    .push(file.path.clone());
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "programs started by build-host code but missing from hosttools::TABLE (add each with \
         its Debian package, and to the Step that runs it in xtask's host.rs): {unknown:#?}"
    );
    // The scan must see the tools that made issue 13: cpio in the tests, qemu-img in xtask.
    let all: BTreeSet<&String> = scanned.iter().flat_map(|f| &f.all).collect();
    for expected in ["cpio", "qemu-img", "sgdisk", "veritysetup", "dpkg-deb"] {
        assert!(all.contains(&expected.to_string()), "{expected} not found");
    }
}

#[test]
fn each_command_ensures_every_tool_on_its_code_path_on_a_fresh_host() {
    let root = host::root();
    let scanned = scan(&root);
    let empty = tempfile::tempdir().unwrap();
    let fresh = Probe::Root(empty.path().to_path_buf());
    let mut failures = Vec::new();
    for (command, paths) in code_paths() {
        let ensured: BTreeSet<&str> = host::packages_to_install(host::steps_of(command), &fresh)
            .unwrap()
            .into_iter()
            .collect();
        let whole_tests = paths == ["all"];
        for file in &scanned {
            let on_path = if whole_tests {
                !file.path.contains("/examples/") && !file.path.contains("/bench")
            } else {
                paths.iter().any(|p| file.path.starts_with(p))
            };
            if !on_path {
                continue;
            }
            let programs = if whole_tests {
                &file.all
            } else {
                &file.non_test
            };
            for program in programs {
                if let Some(package) = hosttools::package_of(program) {
                    if !ensured.contains(package) {
                        failures.push(format!(
                            "`cargo xtask {command}` runs {program} ({}) but does not ensure \
                             {package}",
                            file.path
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "add these tools to the command's steps in tools/xtask/src/host.rs:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_command_has_a_code_path() {
    let declared: BTreeSet<&str> = code_paths().into_iter().map(|(c, _)| c).collect();
    for (command, steps) in host::COMMANDS {
        assert!(
            declared.contains(command) || steps.is_empty(),
            "declare the code path of `{command}` in tests/host_tools.rs"
        );
    }
}

/// imagebuilder names its tools' packages in its own error messages; they must agree.
#[test]
fn imagebuilder_names_the_same_packages() {
    for tool in imagebuilder::tools::BASE_TOOLS
        .iter()
        .chain([&imagebuilder::tools::QEMU_IMG])
    {
        assert_eq!(
            hosttools::package_of(tool.program),
            Some(tool.package),
            "{}",
            tool.program
        );
    }
}
