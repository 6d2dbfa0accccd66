//! `support-bundle`: the node's support bundle, from `GET /support-bundle`, saved to a file.
//!
//! The archive (gzip-compressed tar, secrets already replaced by the server) is streamed to
//! `FILE.partial-PID` beside the destination and moved into place once complete, so a failed
//! download never leaves a half archive under the name asked for. An existing destination is
//! refused unless `force`: the move is then a hard link, which fails rather than replace a file
//! that appeared meanwhile. `-` writes the archive to the given writer (stdout) instead.
//!
//! With a recipient (`--recipient age1...`) the server encrypts the archive before sending it
//! (so the plaintext never leaves the node) and the file is an age file; this client checks
//! only that it starts like one, and leaves the recipient's checks to the server, whose 400
//! says what is wrong with it.

use crate::error::{self, Result};
use crate::{encode_query_value, stream_request};
use api_types::support_bundle::{AGE_MAGIC, PATH, RECIPIENT_PARAM};
use snafu::{ensure, ResultExt};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the archive goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A file.
    File(PathBuf),
    /// The writer given to [`support_bundle`] (`-o -`: stdout).
    Out,
}

impl Destination {
    /// `-` is the writer; anything else a file.
    pub fn from_arg(arg: &Path) -> Destination {
        if arg == Path::new("-") {
            Destination::Out
        } else {
            Destination::File(arg.to_path_buf())
        }
    }
}

/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Checks the archive's first bytes as they arrive: the server's answer must be gzip, or an
/// age file when it was asked to encrypt.
struct MagicCheck {
    magic: &'static [u8],
    what: &'static str,
    start: Vec<u8>,
}

impl MagicCheck {
    fn new(encrypted: bool) -> MagicCheck {
        let (magic, what) = if encrypted {
            (AGE_MAGIC, "an age file")
        } else {
            (&GZIP_MAGIC[..], "a gzip archive")
        };
        MagicCheck {
            magic,
            what,
            start: Vec::new(),
        }
    }

    fn feed(&mut self, data: &[u8]) -> Result<()> {
        if self.start.len() < self.magic.len() {
            let take = (self.magic.len() - self.start.len()).min(data.len());
            self.start.extend_from_slice(&data[..take]);
            ensure!(
                self.magic.starts_with(&self.start),
                error::BundleNotGzipSnafu {
                    start: self.start.clone(),
                    expected: self.what,
                }
            );
        }
        Ok(())
    }

    fn finish(&self) -> Result<()> {
        ensure!(
            self.start == self.magic,
            error::BundleNotGzipSnafu {
                start: self.start.clone(),
                expected: self.what,
            }
        );
        Ok(())
    }
}

/// The request's URI: the route, with the recipient when one is given.
pub fn uri(recipient: Option<&str>) -> String {
    match recipient {
        Some(r) => format!("{PATH}?{RECIPIENT_PARAM}={}", encode_query_value(r)),
        None => PATH.to_string(),
    }
}

/// Fetches the bundle (encrypted to `recipient` when given) into `destination` (with
/// [`Destination::Out`], into `out`); returns its size in bytes.
pub async fn support_bundle<W: Write>(
    socket_path: impl AsRef<Path>,
    destination: &Destination,
    force: bool,
    recipient: Option<&str>,
    out: &mut W,
) -> Result<u64> {
    let uri = &uri(recipient);
    let mut check = MagicCheck::new(recipient.is_some());
    let mut size = 0u64;
    match destination {
        Destination::Out => {
            stream_request(socket_path, uri, |data| {
                check.feed(data)?;
                size += data.len() as u64;
                out.write_all(data).context(error::WriteOutputSnafu)
            })
            .await?;
            check.finish()?;
            out.flush().context(error::WriteOutputSnafu)?;
        }
        Destination::File(path) => {
            ensure!(
                force || std::fs::symlink_metadata(path).is_err(),
                error::BundleExistsSnafu { path }
            );
            let partial = partial_path(path);
            let written = async {
                let mut file =
                    File::create(&partial).context(error::WriteBundleSnafu { path: &partial })?;
                stream_request(socket_path, uri, |data| {
                    check.feed(data)?;
                    size += data.len() as u64;
                    file.write_all(data)
                        .context(error::WriteBundleSnafu { path: &partial })
                })
                .await?;
                check.finish()?;
                file.sync_all()
                    .context(error::WriteBundleSnafu { path: &partial })?;
                move_into_place(&partial, path, force)
            }
            .await;
            if written.is_err() {
                let _ = std::fs::remove_file(&partial);
            }
            written?;
        }
    }
    Ok(size)
}

/// `DIR/.NAME.partial-PID` for `DIR/NAME`.
fn partial_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "support-bundle".to_string());
    path.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// Renames (with `force`) or hard-links then removes `partial` to `path`; without `force`, a
/// file that appeared at `path` meanwhile is not replaced.
fn move_into_place(partial: &Path, path: &Path, force: bool) -> Result<()> {
    if force {
        return std::fs::rename(partial, path).context(error::WriteBundleSnafu { path });
    }
    match std::fs::hard_link(partial, path) {
        Ok(()) => {
            let _ = std::fs::remove_file(partial);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            error::BundleExistsSnafu { path }.fail()
        }
        Err(source) => Err(error::Error::WriteBundle {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn dash_is_the_output() {
        assert_eq!(Destination::from_arg(Path::new("-")), Destination::Out);
        assert_eq!(
            Destination::from_arg(Path::new("b.tar.gz")),
            Destination::File("b.tar.gz".into())
        );
    }

    #[test]
    fn only_gzip_is_taken() {
        let mut check = MagicCheck::new(false);
        check.feed(&[0x1f]).unwrap();
        check.feed(&[0x8b, 0, 1]).unwrap();
        check.finish().unwrap();
        let mut check = MagicCheck::new(false);
        assert!(check.feed(b"{\"error\"").is_err());
        let empty = MagicCheck::new(false);
        assert!(empty.finish().is_err());
        // Asked to encrypt: an age file, and a plain archive is refused.
        let mut check = MagicCheck::new(true);
        check.feed(b"age-encryption.org/v1\n-> X25519 ").unwrap();
        check.finish().unwrap();
        let mut check = MagicCheck::new(true);
        let e = check.feed(&[0x1f, 0x8b]).unwrap_err();
        assert!(e.to_string().contains("not an age file"), "{e}");
    }

    #[test]
    fn the_recipient_goes_in_the_query() {
        assert_eq!(uri(None), "/support-bundle");
        assert_eq!(uri(Some("age1abc")), "/support-bundle?recipient=age1abc");
        assert_eq!(uri(Some("a b&c")), "/support-bundle?recipient=a%20b%26c");
    }

    #[test]
    fn an_existing_file_is_not_replaced_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join(".b.partial");
        let path = dir.path().join("b");
        std::fs::write(&path, "old").unwrap();
        std::fs::write(&partial, "new").unwrap();
        let e = move_into_place(&partial, &path, false).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        move_into_place(&partial, &path, true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert!(!partial.exists());
    }
}
