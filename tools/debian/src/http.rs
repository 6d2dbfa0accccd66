//! A thin blocking HTTP client: whole small files, or large files streamed to disk while hashed.

use crate::error::{HttpClientSnafu, HttpSnafu, HttpStatusSnafu, IoSnafu, NotFoundSnafu, Result};
use sha2::{Digest, Sha256};
use snafu::{ensure, ResultExt};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;
use tracing::debug;

const USER_AGENT: &str = concat!("ballast-debian/", env!("CARGO_PKG_VERSION"));

#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::blocking::Client,
}

impl Http {
    pub fn new() -> Result<Http> {
        let client = reqwest::blocking::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(30))
            // Whole-request limit: generous, because the kernel package is large.
            .timeout(Duration::from_secs(30 * 60))
            .build()
            .context(HttpClientSnafu)?;
        Ok(Http { client })
    }

    fn get(&self, url: &str) -> Result<reqwest::blocking::Response> {
        debug!("GET {url}");
        let response = self.client.get(url).send().context(HttpSnafu { url })?;
        let status = response.status();
        ensure!(status.as_u16() != 404, NotFoundSnafu { url });
        ensure!(
            status.is_success(),
            HttpStatusSnafu {
                url,
                status: status.as_u16()
            }
        );
        Ok(response)
    }

    /// The whole body of `url`.
    pub fn get_bytes(&self, url: &str) -> Result<Vec<u8>> {
        let response = self.get(url)?;
        let bytes = response.bytes().context(HttpSnafu { url })?;
        Ok(bytes.to_vec())
    }

    /// Streams the body of `url` into `out` (at most `limit + 1` bytes, so an endless or oversized
    /// answer is noticed without filling the disk) and returns its sha256 and size.
    pub fn download(
        &self,
        url: &str,
        out: &mut impl Write,
        out_path: &Path,
        limit: u64,
    ) -> Result<(String, u64)> {
        let response = self.get(url)?;
        let mut reader = response.take(limit.saturating_add(1));
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let n = reader.read(&mut buffer).context(IoSnafu {
                action: format!("download {url} into"),
                path: out_path,
            })?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            out.write_all(&buffer[..n]).context(IoSnafu {
                action: "write",
                path: out_path,
            })?;
            size += n as u64;
        }
        Ok((hex::encode(hasher.finalize()), size))
    }
}

/// sha256 (hex) and size of a file.
pub(crate) fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut file = std::fs::File::open(path).context(IoSnafu {
        action: "open",
        path,
    })?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher).context(IoSnafu {
        action: "read",
        path,
    })?;
    Ok((hex::encode(hasher.finalize()), size))
}

/// sha256 (hex) of bytes in memory.
pub(crate) fn sha256_bytes(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}
