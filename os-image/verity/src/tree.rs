//! Building and checking the hash tree itself.
//!
//! The tree is kept in memory while it is built (about 1/127 of the data size), because the
//! on-disk order puts the top level first and the top level is only known at the end.

use crate::error::{self, Result};
use crate::params::{VerityParams, DIGEST_SIZE};
use sha2::{Digest, Sha256};
use snafu::{ensure, ResultExt};
use std::io::{ErrorKind, Read, Write};
use std::sync::mpsc::{channel, sync_channel, Receiver};
use std::sync::Mutex;

/// Bytes handed to a hashing thread at a time. Small enough that a chunk read into memory is
/// still in the CPU cache when it is hashed, big enough that the hand-over cost disappears.
const CHUNK_BYTES: usize = 1 << 20;

/// Upper tree levels smaller than this are hashed on the calling thread alone.
const PARALLEL_LEVEL_BYTES: usize = 8 << 20;

/// What [`build_hash_tree`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityOutput {
    /// The root hash, as `veritysetup format` prints it and the kernel table expects it.
    pub root_hash: [u8; 32],
    /// Number of data blocks covered by the tree.
    pub data_blocks: u64,
    /// Bytes written to the hash output (0 when the data is a single block: then the root hash
    /// is the hash of that block and no tree is needed).
    pub hash_size: u64,
    /// Number of tree levels written (0 for a single data block).
    pub levels: u32,
}

impl VerityOutput {
    /// The root hash as lowercase hexadecimal.
    pub fn root_hash_hex(&self) -> String {
        crate::to_hex(&self.root_hash)
    }
}

/// Number of hash blocks in each tree level, bottom level first.
///
/// This is the level arithmetic of the kernel and of cryptsetup: a level is added while the
/// level below it does not fit into a single hash block, so one data block needs no level at
/// all, 2 to 128 data blocks need one (with 4096-byte hash blocks), and so on.
pub fn level_sizes(data_blocks: u64, params: &VerityParams) -> Vec<u64> {
    let per_block = params.hashes_per_block();
    let mut sizes = Vec::new();
    let mut count = data_blocks;
    while count > 1 {
        count = count.div_ceil(per_block);
        sizes.push(count);
    }
    sizes
}

/// Size in bytes of the hash tree for `data_blocks` data blocks (without a superblock).
///
/// Use it to size a hash partition: with 4096-byte blocks the tree is a little under 1/127 of
/// the data.
pub fn hash_tree_size(data_blocks: u64, params: &VerityParams) -> u64 {
    level_sizes(data_blocks, params).iter().sum::<u64>() * u64::from(params.hash_block_size)
}

/// Compute the dm-verity hash tree (format 1, sha256) of `data_len` bytes read from `data` and
/// write it to `out`, top level first, exactly as `veritysetup format --no-superblock` does.
///
/// `data_len` must be a positive multiple of the data block size. The data is read from the
/// calling thread in large sequential reads and hashed on all available cores.
pub fn build_hash_tree<R: Read + ?Sized, W: Write + ?Sized>(
    data: &mut R,
    data_len: u64,
    out: &mut W,
    params: &VerityParams,
) -> Result<VerityOutput> {
    params.validate()?;
    let data_blocks = count_data_blocks(data_len, params)?;
    let sizes = level_sizes(data_blocks, params);
    let hash_block = params.hash_block_size as usize;
    let base = Sha256::new_with_prefix(&params.salt);

    if sizes.is_empty() {
        // A single data block: its hash is the root and the tree is empty.
        let mut block = vec![0u8; params.data_block_size as usize];
        read_full(data, &mut block, 0, data_len)?;
        let root = base.chain_update(&block).finalize();
        return Ok(VerityOutput {
            root_hash: root.into(),
            data_blocks,
            hash_size: 0,
            levels: 0,
        });
    }

    let mut levels: Vec<Vec<u8>> = Vec::with_capacity(sizes.len());
    let mut bottom = vec![0u8; usize_of(sizes[0])? * hash_block];
    hash_data(data, data_len, params, &base, &mut bottom)?;
    levels.push(bottom);

    for &size in &sizes[1..] {
        let below = levels.last().expect("the bottom level exists");
        let mut level = vec![0u8; usize_of(size)? * hash_block];
        let used = below.len() / hash_block * DIGEST_SIZE;
        hash_blocks(below, hash_block, &base, &mut level[..used]);
        levels.push(level);
    }

    let top = levels.last().expect("at least one level exists");
    let root = base.chain_update(top).finalize();

    let mut hash_size = 0u64;
    for level in levels.iter().rev() {
        out.write_all(level).context(error::WriteHashSnafu)?;
        hash_size += level.len() as u64;
    }
    out.flush().context(error::WriteHashSnafu)?;

    Ok(VerityOutput {
        root_hash: root.into(),
        data_blocks,
        hash_size,
        levels: sizes.len() as u32,
    })
}

/// Recompute the tree of `data` and check it against the tree read from `hash` and against
/// `expected_root`. Trailing bytes in `hash` after the tree are ignored, as the kernel does.
pub fn verify_hash_tree<R: Read + ?Sized, H: Read + ?Sized>(
    data: &mut R,
    data_len: u64,
    hash: &mut H,
    params: &VerityParams,
    expected_root: &[u8],
) -> Result<VerityOutput> {
    ensure!(
        expected_root.len() == DIGEST_SIZE,
        error::RootHashLengthSnafu {
            len: expected_root.len()
        }
    );
    let mut computed = Vec::new();
    let output = build_hash_tree(data, data_len, &mut computed, params)?;
    ensure!(
        output.root_hash[..] == *expected_root,
        error::RootHashMismatchSnafu {
            expected: crate::to_hex(expected_root),
            actual: output.root_hash_hex(),
        }
    );

    let mut stored = Vec::with_capacity(computed.len());
    hash.take(output.hash_size)
        .read_to_end(&mut stored)
        .context(error::ReadHashSnafu)?;
    ensure!(
        stored.len() == computed.len(),
        error::HashTreeLengthSnafu {
            expected: output.hash_size,
            actual: stored.len() as u64,
        }
    );
    if let Some(offset) = stored.iter().zip(&computed).position(|(a, b)| a != b) {
        return error::HashTreeMismatchSnafu {
            offset: offset as u64,
        }
        .fail();
    }
    Ok(output)
}

fn count_data_blocks(data_len: u64, params: &VerityParams) -> Result<u64> {
    let block = u64::from(params.data_block_size);
    ensure!(
        data_len > 0,
        error::EmptyDataSnafu {
            block_size: params.data_block_size
        }
    );
    ensure!(
        data_len.is_multiple_of(block),
        error::UnalignedDataSnafu {
            len: data_len,
            block_size: params.data_block_size,
            tail: data_len % block,
        }
    );
    Ok(data_len / block)
}

fn usize_of(blocks: u64) -> Result<usize> {
    usize::try_from(blocks)
        .ok()
        .filter(|b| b.checked_mul(1 << 19).is_some())
        .ok_or(error::Error::TooManyBlocks { blocks })
}

/// Hash every `block_size` block of `input` (salt first) into consecutive digests in `out`.
fn hash_blocks_serial(input: &[u8], block_size: usize, base: &Sha256, out: &mut [u8]) {
    for (block, digest) in input
        .chunks_exact(block_size)
        .zip(out.chunks_exact_mut(DIGEST_SIZE))
    {
        let mut hasher = base.clone();
        hasher.update(block);
        hasher.finalize_into(digest.into());
    }
}

/// Like [`hash_blocks_serial`], split over all cores when the input is large.
fn hash_blocks(input: &[u8], block_size: usize, base: &Sha256, out: &mut [u8]) {
    let threads = thread_count();
    if threads < 2 || input.len() < PARALLEL_LEVEL_BYTES {
        hash_blocks_serial(input, block_size, base, out);
        return;
    }
    let blocks = input.len() / block_size;
    let per_thread = blocks.div_ceil(threads);
    std::thread::scope(|scope| {
        for (part_in, part_out) in input
            .chunks(per_thread * block_size)
            .zip(out.chunks_mut(per_thread * DIGEST_SIZE))
        {
            scope.spawn(move || hash_blocks_serial(part_in, block_size, base, part_out));
        }
    });
}

fn thread_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(16)
}

/// Fill `buf` completely from `data`; `offset` and `expected` only serve the error messages.
fn read_full<R: Read + ?Sized>(
    data: &mut R,
    buf: &mut [u8],
    offset: u64,
    expected: u64,
) -> Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match data.read(&mut buf[filled..]) {
            Ok(0) => {
                return error::ShortDataSnafu {
                    got: offset + filled as u64,
                    expected,
                }
                .fail()
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(error::Error::ReadData {
                    offset: offset + filled as u64,
                    source,
                })
            }
        }
    }
    Ok(())
}

/// One chunk of data on its way to a hashing thread, with the place its digests go to.
struct Work<'a> {
    buf: Vec<u8>,
    len: usize,
    digests: &'a mut [u8],
}

/// Hash all data blocks into `bottom` (the digests of the bottom level, in order).
///
/// The calling thread reads; the hashing threads take chunks from a bounded queue and hand
/// the buffers back for reuse, so memory stays at a few chunks whatever the data size.
fn hash_data<R: Read + ?Sized>(
    data: &mut R,
    data_len: u64,
    params: &VerityParams,
    base: &Sha256,
    bottom: &mut [u8],
) -> Result<()> {
    let block = params.data_block_size as usize;
    let chunk_blocks = (CHUNK_BYTES / block).max(1);
    let chunk_bytes = chunk_blocks * block;
    let blocks = usize_of(data_len / block as u64)?;
    let digests = &mut bottom[..blocks * DIGEST_SIZE];
    let threads = thread_count();

    if threads < 2 || data_len <= 2 * chunk_bytes as u64 {
        let mut buf = vec![0u8; chunk_bytes];
        let mut offset = 0u64;
        for out in digests.chunks_mut(chunk_blocks * DIGEST_SIZE) {
            let len = out.len() / DIGEST_SIZE * block;
            read_full(data, &mut buf[..len], offset, data_len)?;
            hash_blocks_serial(&buf[..len], block, base, out);
            offset += len as u64;
        }
        return Ok(());
    }

    let (work_tx, work_rx) = sync_channel::<Work<'_>>(threads);
    let work_rx = Mutex::new(work_rx);
    let (free_tx, free_rx) = channel::<Vec<u8>>();
    for _ in 0..threads + 2 {
        free_tx
            .send(vec![0u8; chunk_bytes])
            .expect("the receiver is alive");
    }

    std::thread::scope(|scope| {
        for _ in 0..threads {
            let free_tx = free_tx.clone();
            let work_rx = &work_rx;
            scope.spawn(move || hash_worker(work_rx, free_tx, block, base));
        }
        drop(free_tx);

        let mut offset = 0u64;
        for out in digests.chunks_mut(chunk_blocks * DIGEST_SIZE) {
            let len = out.len() / DIGEST_SIZE * block;
            // Buffers come back as soon as a worker is done; if the workers are gone (they
            // only stop when the queue closes), there is nothing left to do.
            let Ok(mut buf) = free_rx.recv() else { break };
            read_full(data, &mut buf[..len], offset, data_len)?;
            offset += len as u64;
            let work = Work {
                buf,
                len,
                digests: out,
            };
            if work_tx.send(work).is_err() {
                break;
            }
        }
        drop(work_tx);
        Ok(())
    })
}

fn hash_worker(
    work_rx: &Mutex<Receiver<Work<'_>>>,
    free_tx: std::sync::mpsc::Sender<Vec<u8>>,
    block: usize,
    base: &Sha256,
) {
    loop {
        let next = work_rx.lock().map(|rx| rx.recv());
        let Ok(Ok(work)) = next else { return };
        hash_blocks_serial(&work.buf[..work.len], block, base, work.digests);
        // The reader may already be gone after an error; then the buffer is simply dropped.
        let _ = free_tx.send(work.buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> VerityParams {
        VerityParams::new(vec![0x5a; 32])
    }

    #[test]
    fn level_arithmetic_matches_cryptsetup() {
        let p = params();
        assert!(level_sizes(1, &p).is_empty());
        assert_eq!(level_sizes(2, &p), vec![1]);
        assert_eq!(level_sizes(128, &p), vec![1]);
        assert_eq!(level_sizes(129, &p), vec![2, 1]);
        assert_eq!(level_sizes(128 * 128, &p), vec![128, 1]);
        assert_eq!(level_sizes(128 * 128 + 1, &p), vec![129, 2, 1]);
        // 1 GiB of 4 KiB blocks.
        assert_eq!(level_sizes(262_144, &p), vec![2048, 16, 1]);
        assert_eq!(hash_tree_size(262_144, &p), (2048 + 16 + 1) * 4096);
    }

    /// The tree written by the threaded path equals a plain block-by-block reference.
    #[test]
    fn matches_naive_reference() {
        let p = params();
        for blocks in [1u64, 2, 127, 128, 129, 700, 128 * 3 + 5] {
            let data: Vec<u8> = (0..blocks * 4096).map(|i| (i * 7 % 251) as u8).collect();
            let mut tree = Vec::new();
            let out = build_hash_tree(&mut &data[..], data.len() as u64, &mut tree, &p).unwrap();
            let (root, reference) = naive_tree(&data, &p.salt);
            assert_eq!(out.root_hash, root, "root for {blocks} blocks");
            assert_eq!(tree, reference, "tree for {blocks} blocks");
            assert_eq!(out.hash_size, tree.len() as u64);
        }
    }

    /// A big input goes through the threaded reader; compare it with the reference too.
    #[test]
    fn threaded_path_matches_reference() {
        let p = params();
        let blocks = 3 * 256 + 17; // more than two chunks of 1 MiB
        let data: Vec<u8> = (0..blocks * 4096u64)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut tree = Vec::new();
        let out = build_hash_tree(&mut &data[..], data.len() as u64, &mut tree, &p).unwrap();
        let (root, reference) = naive_tree(&data, &p.salt);
        assert_eq!(out.root_hash, root);
        assert_eq!(tree, reference);
    }

    fn naive_tree(data: &[u8], salt: &[u8]) -> ([u8; 32], Vec<u8>) {
        let hash = |block: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(salt);
            h.update(block);
            h.finalize().into()
        };
        let mut current: Vec<u8> = data.to_vec();
        let mut levels = Vec::new();
        while current.len() > 4096 {
            let mut level = Vec::new();
            for block in current.chunks(4096) {
                level.extend_from_slice(&hash(block));
            }
            level.resize(level.len().div_ceil(4096) * 4096, 0);
            levels.push(level.clone());
            current = level;
        }
        let root = hash(&current);
        let mut tree = Vec::new();
        for level in levels.iter().rev() {
            tree.extend_from_slice(level);
        }
        (root, tree)
    }

    #[test]
    fn refuses_bad_lengths() {
        let p = params();
        let data = vec![0u8; 5000];
        let err = build_hash_tree(&mut &data[..], 5000, &mut Vec::new(), &p).unwrap_err();
        assert!(
            matches!(err, error::Error::UnalignedData { tail: 904, .. }),
            "{err}"
        );
        let err = build_hash_tree(&mut &data[..0], 0, &mut Vec::new(), &p).unwrap_err();
        assert!(matches!(err, error::Error::EmptyData { .. }), "{err}");
        let err = build_hash_tree(&mut &data[..4096], 8192, &mut Vec::new(), &p).unwrap_err();
        assert!(
            matches!(
                err,
                error::Error::ShortData {
                    got: 4096,
                    expected: 8192
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn verify_detects_changes() {
        let p = params();
        let data: Vec<u8> = (0..300 * 4096u32).map(|i| (i % 13) as u8).collect();
        let mut tree = Vec::new();
        let out = build_hash_tree(&mut &data[..], data.len() as u64, &mut tree, &p).unwrap();
        verify_hash_tree(
            &mut &data[..],
            data.len() as u64,
            &mut &tree[..],
            &p,
            &out.root_hash,
        )
        .unwrap();

        let mut bad_tree = tree.clone();
        bad_tree[5000] ^= 1;
        let err = verify_hash_tree(
            &mut &data[..],
            data.len() as u64,
            &mut &bad_tree[..],
            &p,
            &out.root_hash,
        )
        .unwrap_err();
        assert!(
            matches!(err, error::Error::HashTreeMismatch { offset: 5000 }),
            "{err}"
        );

        let mut bad_data = data.clone();
        bad_data[12345] ^= 1;
        let err = verify_hash_tree(
            &mut &bad_data[..],
            data.len() as u64,
            &mut &tree[..],
            &p,
            &out.root_hash,
        )
        .unwrap_err();
        assert!(
            matches!(err, error::Error::RootHashMismatch { .. }),
            "{err}"
        );

        let err = verify_hash_tree(
            &mut &data[..],
            data.len() as u64,
            &mut &tree[..100],
            &p,
            &out.root_hash,
        )
        .unwrap_err();
        assert!(matches!(err, error::Error::HashTreeLength { .. }), "{err}");
    }
}
