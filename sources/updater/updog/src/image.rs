//! Writing one image target to one partition: the target streams through tough (which checks
//! its length and sha256 against the signed targets metadata) into a zstd decoder on a writer
//! thread, which writes at the partition's byte offset in the disk. Download and hashing run on
//! the async side, decompression and writing on the blocking side, so the two overlap; at most
//! a few chunks are in flight and no image is ever held in memory.

use crate::error::{self, Error, Result};
use crate::progress::Progress;
use crate::tuf::{verify_error, Loaded};
use futures::StreamExt;
use snafu::{OptionExt, ResultExt};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use tough::{Bytes, TargetName};
use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};

/// Chunks queued between the download and the writer.
const QUEUE: usize = 16;
/// Size of the decompression output buffer, and so of most writes.
const OUT_BUFFER: usize = 1 << 20;

/// Where a target goes.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The whole disk (device or image file), opened for writing.
    pub file: Arc<File>,
    pub disk: PathBuf,
    /// Partition name, e.g. `ROOT-B`.
    pub partition: &'static str,
    /// Byte offset of the partition on the disk.
    pub offset: u64,
    /// Size of the partition in bytes.
    pub size: u64,
}

// How the writer thread ended, as the download side sees it.
/// Still writing (or done without error).
const RUNNING: u8 = 0;
/// The stream is not valid zstd: keep downloading to learn whether it matches the signed hash
/// (then the repository published a broken image) or not (then it was tampered with).
const BAD_STREAM: u8 = 1;
/// Nothing more to learn from the download (partition full, I/O error).
const FATAL: u8 = 2;

/// Streams target `name` into `dest`; returns the number of bytes written to the partition.
pub async fn write_target(
    loaded: &Loaded,
    name: &str,
    dest: &Destination,
    progress: &Arc<Progress>,
) -> Result<u64> {
    let target_name = TargetName::new(name).map_err(|source| Error::FetchTarget {
        name: name.to_string(),
        source: Box::new(source),
    })?;
    let length = loaded
        .repo
        .targets()
        .signed
        .targets
        .get(&target_name)
        .map(|t| t.length);
    progress.start_target(name, length)?;
    let stream = loaded
        .repo
        .read_target(&target_name)
        .await
        .map_err(|source| loaded.fetch_error(name, source))?
        .context(error::TargetNotSignedSnafu { name })?;
    tracing::info!(
        target_name = name,
        partition = dest.partition,
        offset = dest.offset,
        "writing {name} to {}",
        dest.partition
    );

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(QUEUE);
    let stop = Arc::new(AtomicU8::new(RUNNING));
    let writer = {
        let (dest, progress, stop, name) = (
            dest.clone(),
            Arc::clone(progress),
            Arc::clone(&stop),
            name.to_string(),
        );
        tokio::task::spawn_blocking(move || {
            let mut rx = rx;
            let result = decompress_into(&mut rx, &dest, &progress, &name);
            // Say why before the queue closes, so the download side knows whether to go on.
            if let Err(e) = &result {
                let kind = if matches!(e, Error::Decompress { .. }) {
                    BAD_STREAM
                } else {
                    FATAL
                };
                stop.store(kind, Ordering::SeqCst);
            }
            drop(rx);
            result
        })
    };

    let mut stream = std::pin::pin!(stream);
    let mut download_error = None;
    let mut sending = true;
    while let Some(item) = stream.next().await {
        match item {
            Ok(bytes) => {
                progress
                    .downloaded
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                if sending && tx.send(bytes).await.is_err() {
                    sending = false;
                }
                if !sending && stop.load(Ordering::SeqCst) != BAD_STREAM {
                    break;
                }
            }
            Err(e) => {
                download_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let written = writer.await.context(error::JoinSnafu)?;
    // A download that fails verification explains any decompression error it caused.
    if let Some(e) = download_error {
        return Err(verify_error(name, e));
    }
    let written = written?;
    progress.finish_target()?;
    tracing::info!(
        target_name = name,
        partition = dest.partition,
        bytes = written,
        "{name} verified and written to {}",
        dest.partition
    );
    Ok(written)
}

/// The writer thread: decompresses the chunks from `rx` and writes them into the partition,
/// refusing to write past its end; flushes the disk at the end.
fn decompress_into(
    rx: &mut tokio::sync::mpsc::Receiver<Bytes>,
    dest: &Destination,
    progress: &Progress,
    name: &str,
) -> Result<u64> {
    let bad_stream = |source: io::Error| Error::Decompress {
        name: name.to_string(),
        source,
    };
    let write_error = |source: io::Error| Error::WritePartition {
        name: name.to_string(),
        partition: dest.partition,
        disk: dest.disk.clone(),
        source,
    };
    let mut decoder = Decoder::new().map_err(bad_stream)?;
    // Decompressed bytes gather in `out` and go to the disk a full buffer at a time.
    let mut out = vec![0u8; OUT_BUFFER];
    let mut filled = 0;
    let mut position = 0u64;
    let flush = |out: &[u8], position: &mut u64| -> Result<()> {
        let end = *position + out.len() as u64;
        if end > dest.size {
            return error::PartitionOverflowSnafu {
                name,
                partition: dest.partition,
                size: dest.size,
                disk: &dest.disk,
            }
            .fail();
        }
        dest.file
            .write_all_at(out, dest.offset + *position)
            .map_err(write_error)?;
        *position = end;
        progress.written.store(end, Ordering::Relaxed);
        Ok(())
    };
    // zstd's hint of what the frame still needs; 0 when a frame just ended.
    let mut hint = 1;
    let mut first = true;
    while let Some(chunk) = rx.blocking_recv() {
        if first {
            first = false;
            if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(&chunk) {
                progress.set_expected(size);
            }
        }
        let mut input = InBuffer::around(&chunk);
        loop {
            let mut output = OutBuffer::around_pos(&mut out[..], filled);
            hint = decoder.run(&mut input, &mut output).map_err(bad_stream)?;
            filled = output.pos();
            let full = filled == out.len();
            if full {
                flush(&out, &mut position)?;
                filled = 0;
            }
            // Input used up, and either room was left (the decoder gave all it could) or the
            // frame is complete (calling again would start reading the next frame's header).
            if input.pos() == chunk.len() && (!full || hint == 0) {
                break;
            }
        }
    }
    if filled > 0 {
        flush(&out[..filled], &mut position)?;
    }
    if first || hint != 0 {
        return Err(bad_stream(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the stream ends inside a zstd frame",
        )));
    }
    dest.file.sync_data().map_err(write_error)?;
    Ok(position)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destination(dir: &std::path::Path, size: u64) -> Destination {
        let disk = dir.join("disk");
        let file = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&disk)
            .unwrap();
        file.set_len(size + 8192).unwrap();
        Destination {
            file: Arc::new(file),
            disk,
            partition: "ROOT-B",
            offset: 4096,
            size,
        }
    }

    /// Feeds `compressed` to the writer in chunks of `chunk` bytes.
    fn write(compressed: &[u8], chunk: usize, dest: &Destination) -> Result<u64> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(compressed.len() / chunk + 2);
        for piece in compressed.chunks(chunk) {
            tx.try_send(Bytes::copy_from_slice(piece)).unwrap();
        }
        drop(tx);
        let progress = Progress::new(None, 1);
        decompress_into(&mut rx, dest, &progress, "t.zst")
    }

    fn data(len: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if i % 8192 < 4096 {
                    state as u8
                } else {
                    0
                }
            })
            .collect()
    }

    #[test]
    fn any_size_and_any_chunking() {
        let dir = tempfile::tempdir().unwrap();
        // Sizes around the output buffer, where a frame can end exactly when it is full.
        for len in [
            1,
            OUT_BUFFER - 1,
            OUT_BUFFER,
            OUT_BUFFER + 1,
            2 * OUT_BUFFER,
            3 * OUT_BUFFER + 17,
        ] {
            let original = data(len);
            for level in [1, 19] {
                let compressed = zstd::encode_all(&original[..], level).unwrap();
                for chunk in [1 << 20, 16384, 4096, 7] {
                    if chunk == 7 && len > OUT_BUFFER {
                        continue; // slow and adds nothing
                    }
                    let dest = destination(dir.path(), 4 * OUT_BUFFER as u64);
                    let written = write(&compressed, chunk, &dest).unwrap();
                    assert_eq!(written, len as u64, "{len} {level} {chunk}");
                    let mut back = vec![0; len];
                    dest.file.read_exact_at(&mut back, dest.offset).unwrap();
                    assert!(back == original, "{len} {level} {chunk}");
                }
            }
        }
    }

    #[test]
    fn overflow_truncation_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let original = data(3 * OUT_BUFFER);
        let compressed = zstd::encode_all(&original[..], 3).unwrap();

        let dest = destination(dir.path(), 2 * OUT_BUFFER as u64 + 5);
        let err = write(&compressed, 65536, &dest).unwrap_err();
        assert!(matches!(err, Error::PartitionOverflow { .. }), "{err}");
        // Nothing beyond the partition was written.
        let mut after = vec![0; 4096];
        dest.file
            .read_exact_at(&mut after, dest.offset + dest.size)
            .unwrap();
        assert!(after.iter().all(|&b| b == 0));

        let dest = destination(dir.path(), 4 * OUT_BUFFER as u64);
        let err = write(&compressed[..compressed.len() - 10], 65536, &dest).unwrap_err();
        assert!(matches!(err, Error::Decompress { .. }), "{err}");
        assert!(
            err.to_string().contains("ends inside a zstd frame"),
            "{err}"
        );
        let err = write(b"this is not zstd at all", 8, &dest).unwrap_err();
        assert!(matches!(err, Error::Decompress { .. }), "{err}");
        let err = write(b"", 8, &dest).unwrap_err();
        assert!(matches!(err, Error::Decompress { .. }), "{err}");
    }
}
