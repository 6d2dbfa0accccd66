//! Keeps the logging setup in one place: no program under `sources/` builds its own
//! `tracing_subscriber` formatter; each calls this crate. Test code may still set up its own
//! (a test writer), so only `src/` directories are checked.

use std::path::{Path, PathBuf};

fn source_files(dir: &Path, in_src: bool, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            if !name.starts_with('.') && name != "target" {
                source_files(&path, in_src || name == "src", out);
            }
        } else if in_src && name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_program_sets_up_logging_itself() {
    let this_crate = Path::new(env!("CARGO_MANIFEST_DIR"))
        .canonicalize()
        .unwrap();
    let sources = this_crate.parent().unwrap();
    let mut files = Vec::new();
    source_files(sources, false, &mut files);
    files.retain(|f| !f.starts_with(&this_crate));
    assert!(
        files.iter().any(|f| f.ends_with("apiserver/src/main.rs")),
        "the walk below {} missed the API server",
        sources.display()
    );
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .contains("tracing_subscriber::fmt")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "these files build their own log formatter; call logging::init or logging::Logging \
         instead:\n{}",
        offenders.join("\n")
    );
}
