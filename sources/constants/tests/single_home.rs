//! Keeps every value of this crate in this crate: the workspace's Rust files may not spell one
//! of them again as a string literal (`"/run/api.sock"`); they name the constant instead.
//! Comment lines are not checked, so documentation may still mention a path.

use std::path::{Path, PathBuf};

/// Directories that hold no workspace sources of ours.
const SKIPPED_DIRS: &[&str] = &["target", ".git", "build", "node_modules"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let file_type = entry.file_type().unwrap();
        if file_type.is_dir() {
            if !name.starts_with('.') && !SKIPPED_DIRS.contains(&name.as_ref()) {
                rust_files(&path, out);
            }
        } else if file_type.is_file() && name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_other_crate_spells_a_constant() {
    let this_crate = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = this_crate.join("../..");
    let mut files = Vec::new();
    for top in ["sources", "tools", "os-image"] {
        rust_files(&workspace.join(top), &mut files);
    }
    let this_crate = this_crate.canonicalize().unwrap();
    files.retain(|f| !f.canonicalize().unwrap().starts_with(&this_crate));
    assert!(
        files.len() > 50,
        "found only {} Rust files below {}; is the walk broken?",
        files.len(),
        workspace.display()
    );

    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for value in constants::ALL {
            let literal = format!("\"{value}\"");
            for (index, line) in text.lines().enumerate() {
                // Prose may name a path; code may not.
                if line.contains(&literal) && !line.trim_start().starts_with("//") {
                    found.push(format!("{}:{}: {literal}", file.display(), index + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "these lines spell a value of the constants crate; use the constant instead:\n{}",
        found.join("\n")
    );
}
