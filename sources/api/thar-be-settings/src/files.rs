//! Rendering one configuration file, comparing it with what is on disk, writing it atomically,
//! and showing the difference.

use crate::error::{self, Result};
use models::ConfigurationFile;
use serde_json::Value;
use snafu::{OptionExt, ResultExt};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Permission bits of a file whose definition gives no mode.
pub const DEFAULT_MODE: u32 = 0o644;

/// `path` (absolute, as in the defaults) placed under `root`, or as is without a root.
pub fn under_root(root: Option<&Path>, path: &str) -> PathBuf {
    match root {
        Some(root) => root.join(path.trim_start_matches('/')),
        None => PathBuf::from(path),
    }
}

/// A configuration file rendered in memory, next to what is on disk now.
#[derive(Debug)]
pub struct Rendered {
    /// The file's name under `configuration-files`.
    pub name: String,
    /// The path as the defaults give it (what the host sees).
    pub path: String,
    /// Where it is read and written (under `--root` when given).
    pub disk_path: PathBuf,
    pub mode: u32,
    pub content: String,
    /// The current content; `None` when the file does not exist yet.
    pub current: Option<Vec<u8>>,
}

impl Rendered {
    /// True when writing would change the file's content.
    pub fn changes(&self) -> bool {
        self.current.as_deref() != Some(self.content.as_bytes())
    }

    /// A unified diff from the current content to the rendered one, both headers naming the path.
    pub fn diff(&self) -> String {
        let old = self
            .current
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        similar::TextDiff::from_lines(old.as_ref(), self.content.as_str())
            .unified_diff()
            .context_radius(3)
            .header(&self.path, &self.path)
            .to_string()
    }

    /// Writes the content when it differs from the file's (atomically; see [`write_atomically`])
    /// and fixes the mode when only that differs. Returns whether the content changed.
    pub fn write(&self) -> Result<bool> {
        if self.changes() {
            write_atomically(&self.disk_path, self.content.as_bytes(), self.mode)?;
            return Ok(true);
        }
        let metadata = fs::metadata(&self.disk_path).context(error::ReadCurrentSnafu {
            path: &self.disk_path,
        })?;
        if metadata.permissions().mode() & 0o7777 != self.mode {
            fs::set_permissions(&self.disk_path, fs::Permissions::from_mode(self.mode)).context(
                error::WriteSnafu {
                    path: &self.disk_path,
                    step: "setting its mode",
                },
            )?;
        }
        Ok(false)
    }
}

/// Renders configuration file `name` with `context` (`{"settings": ..., "os": ...}`) and reads
/// the current file for comparison. Nothing is written.
pub fn render(
    name: &str,
    file: &ConfigurationFile,
    context: &Value,
    root: Option<&Path>,
) -> Result<Rendered> {
    let mode = match &file.mode {
        None => DEFAULT_MODE,
        Some(text) => u32::from_str_radix(text, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .context(error::BadModeSnafu {
                file: name,
                mode: text,
            })?,
    };
    let template_path = under_root(root, &file.template_path);
    let template = fs::read_to_string(&template_path).context(error::ReadTemplateSnafu {
        file: name,
        path: &template_path,
    })?;
    let disk_path = under_root(root, &file.path);
    let content =
        schnauzer::render_template(&template_path.display().to_string(), &template, context)
            .context(error::RenderSnafu { path: &disk_path })?;
    let current = match fs::read(&disk_path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(error::Error::ReadCurrent {
                path: disk_path,
                source,
            })
        }
    };
    Ok(Rendered {
        name: name.to_string(),
        path: file.path.clone(),
        disk_path,
        mode,
        content,
        current,
    })
}

/// Replaces `path` with `content` so that a reader or a crash sees either the old file or the new
/// one, never a mix: missing parent directories are created, the content goes to a temporary
/// file in the same directory, which is flushed to disk, given `mode` and renamed over `path`;
/// then the directory is flushed too.
pub fn write_atomically(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    let step = |step: &'static str| error::WriteSnafu { path, step };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).context(step("creating its directory"))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".thar-be-settings.")
        .tempfile_in(dir)
        .context(step("creating a temporary file beside it"))?;
    temp.write_all(content)
        .context(step("writing the temporary file"))?;
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .context(step("setting the mode of the temporary file"))?;
    temp.as_file()
        .sync_all()
        .context(step("flushing the temporary file"))?;
    temp.persist(path)
        .map_err(|e| e.error)
        .context(step("renaming the temporary file over it"))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .context(step("flushing its directory"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file(path: &str, template: &str, mode: Option<&str>) -> ConfigurationFile {
        ConfigurationFile {
            path: path.to_string(),
            template_path: template.to_string(),
            mode: mode.map(str::to_string),
        }
    }

    #[test]
    fn renders_under_root_writes_and_diffs() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("t")).unwrap();
        fs::write(root.path().join("t/motd"), "{{settings.motd}}\n").unwrap();
        let spec = file("/etc/deep/motd", "/t/motd", Some("0600"));
        let context = json!({"settings": {"motd": "one"}});

        let first = render("motd", &spec, &context, Some(root.path())).unwrap();
        assert_eq!(first.disk_path, root.path().join("etc/deep/motd"));
        assert!(first.current.is_none() && first.changes());
        assert!(first.write().unwrap());
        let on_disk = root.path().join("etc/deep/motd");
        assert_eq!(fs::read_to_string(&on_disk).unwrap(), "one\n");
        assert_eq!(
            fs::metadata(&on_disk).unwrap().permissions().mode() & 0o7777,
            0o600
        );

        let same = render("motd", &spec, &context, Some(root.path())).unwrap();
        assert!(!same.changes());
        fs::set_permissions(&on_disk, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!same.write().unwrap());
        assert_eq!(
            fs::metadata(&on_disk).unwrap().permissions().mode() & 0o7777,
            0o600
        );

        let next = render(
            "motd",
            &spec,
            &json!({"settings": {"motd": "two"}}),
            Some(root.path()),
        )
        .unwrap();
        let diff = next.diff();
        assert!(
            diff.starts_with("--- /etc/deep/motd\n+++ /etc/deep/motd\n"),
            "{diff}"
        );
        assert!(diff.contains("-one\n+two\n"), "{diff}");
        // No temporary files are left behind.
        assert_eq!(
            fs::read_dir(root.path().join("etc/deep")).unwrap().count(),
            1
        );
    }

    #[test]
    fn missing_template_and_bad_mode_are_explained() {
        let root = tempfile::tempdir().unwrap();
        let message = render(
            "x",
            &file("/etc/x", "/t/none", None),
            &json!({}),
            Some(root.path()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("t/none of configuration file 'x' is missing"),
            "{message}"
        );
        let message = render(
            "x",
            &file("/etc/x", "/t/none", Some("9z")),
            &json!({}),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(message.contains("mode '9z'"), "{message}");
    }

    #[test]
    fn template_errors_name_file_and_line_and_write_nothing() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("t")).unwrap();
        fs::write(
            root.path().join("t/bad"),
            "fine\n{{#if x}}\nno end\n{{/each}}\n",
        )
        .unwrap();
        let message = render(
            "bad",
            &file("/etc/bad", "/t/bad", None),
            &json!({}),
            Some(root.path()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("t/bad has a syntax error at line"),
            "{message}"
        );
        assert!(message.contains("etc/bad was left as it was"), "{message}");
        assert!(!root.path().join("etc").exists());
    }
}
