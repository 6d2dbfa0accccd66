//! Our hash trees against veritysetup, the reference implementation.
//!
//! Each case builds a tree with `veritysetup format --no-superblock` and with this crate on the
//! same data and salt and compares the root hashes and the hash files byte for byte; then
//! `veritysetup verify` must accept our tree, and reject it once a byte is changed.
//! When veritysetup is not installed the tests print a notice and pass, except under CI
//! (`CI=true`), where they fail: `cargo xtask test` installs it.

use std::path::Path;
use std::process::Command;
use verity::VerityParams;

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(len);
    data
}

fn size_args(params: &VerityParams) -> Vec<String> {
    vec![
        "--no-superblock".into(),
        "--hash=sha256".into(),
        format!("--data-block-size={}", params.data_block_size),
        format!("--hash-block-size={}", params.hash_block_size),
        format!("--salt={}", params.salt_hex()),
    ]
}

/// Run `veritysetup format` and return the root hash it printed.
fn veritysetup_format(data: &Path, hash: &Path, params: &VerityParams) -> String {
    let output = Command::new("veritysetup")
        .arg("format")
        .args(size_args(params))
        .arg(data)
        .arg(hash)
        .output()
        .expect("veritysetup runs");
    assert!(
        output.status.success(),
        "veritysetup format failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .expect("veritysetup prints the root hash")
        .trim()
        .to_string()
}

fn veritysetup_verify(data: &Path, hash: &Path, params: &VerityParams, root: &str) -> bool {
    Command::new("veritysetup")
        .arg("verify")
        .args(size_args(params))
        .arg(data)
        .arg(hash)
        .arg(root)
        .output()
        .expect("veritysetup runs")
        .status
        .success()
}

fn compare(blocks: usize, params: VerityParams) {
    if !hosttools::require_tool("veritysetup") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let theirs = dir.path().join("theirs.hash");
    let ours = dir.path().join("ours.hash");
    std::fs::write(
        &data,
        pseudo_random(blocks * params.data_block_size as usize, blocks as u64),
    )
    .unwrap();

    let their_root = veritysetup_format(&data, &theirs, &params);
    let output = verity::format_file(&data, &ours, &params).unwrap();
    let case = format!(
        "{blocks} blocks of {}, hash blocks {}, salt {} bytes",
        params.data_block_size,
        params.hash_block_size,
        params.salt.len()
    );
    assert_eq!(output.root_hash_hex(), their_root, "root hash, {case}");
    let our_tree = std::fs::read(&ours).unwrap();
    let their_tree = std::fs::read(&theirs).unwrap();
    assert_eq!(our_tree.len(), their_tree.len(), "tree length, {case}");
    assert!(our_tree == their_tree, "tree bytes differ, {case}");
    assert_eq!(output.data_blocks, blocks as u64);
    assert_eq!(output.hash_size, our_tree.len() as u64);
    assert_eq!(
        output.hash_size,
        verity::hash_tree_size(blocks as u64, &params)
    );

    assert!(
        veritysetup_verify(&data, &ours, &params, &their_root),
        "veritysetup verify rejects our tree, {case}"
    );
    verity::verify_file(&data, &ours, &params, &output.root_hash).unwrap();

    // A changed byte in the tree must be noticed by both verifiers.
    if !our_tree.is_empty() {
        let mut bad = our_tree.clone();
        let last = bad.len() - 1;
        bad[last / 2] ^= 0x40;
        std::fs::write(&ours, &bad).unwrap();
        assert!(
            !veritysetup_verify(&data, &ours, &params, &their_root),
            "veritysetup verify accepts a corrupted tree, {case}"
        );
        assert!(verity::verify_file(&data, &ours, &params, &output.root_hash).is_err());
    }
}

fn salt32() -> Vec<u8> {
    (0u8..32).map(|b| b.wrapping_mul(37)).collect()
}

#[test]
fn one_block() {
    compare(1, VerityParams::new(salt32()));
}

#[test]
fn two_blocks() {
    compare(2, VerityParams::new(salt32()));
}

#[test]
fn one_full_hash_block() {
    compare(127, VerityParams::new(salt32()));
    compare(128, VerityParams::new(salt32()));
}

#[test]
fn two_levels() {
    compare(129, VerityParams::new(salt32()));
    compare(128 * 128, VerityParams::new(salt32()));
}

#[test]
fn three_levels() {
    compare(128 * 128 + 1, VerityParams::new(salt32()));
}

#[test]
fn threaded_reader_sizes() {
    // Several 1 MiB chunks plus a partial one, through the multi-threaded reader.
    compare(5 * 256 + 3, VerityParams::new(salt32()));
}

#[test]
fn salts() {
    compare(300, VerityParams::new(Vec::new()));
    compare(300, VerityParams::new(vec![0xff]));
    compare(300, VerityParams::new(pseudo_random(100, 9)));
    compare(300, VerityParams::new(pseudo_random(256, 10)));
}

#[test]
fn other_block_sizes() {
    let mut params = VerityParams::new(salt32());
    params.data_block_size = 1024;
    params.hash_block_size = 512;
    compare(17 * 17 + 5, params.clone());
    params.data_block_size = 512;
    params.hash_block_size = 8192;
    compare(300, params);
}

/// veritysetup silently ignores a trailing partial block; we refuse the file, and hashing the
/// whole blocks only gives veritysetup's result.
#[test]
fn partial_last_block() {
    if !hosttools::require_tool("veritysetup") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let theirs = dir.path().join("theirs.hash");
    let ours = dir.path().join("ours.hash");
    let bytes = pseudo_random(3 * 4096 + 100, 77);
    std::fs::write(&data, &bytes).unwrap();
    let params = VerityParams::new(salt32());

    let their_root = veritysetup_format(&data, &theirs, &params);
    let err = verity::format_file(&data, &ours, &params).unwrap_err();
    assert!(
        matches!(err, verity::Error::UnalignedData { tail: 100, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("truncate -s %4096"), "{err}");

    let mut tree = Vec::new();
    let output =
        verity::build_hash_tree(&mut &bytes[..3 * 4096], 3 * 4096, &mut tree, &params).unwrap();
    assert_eq!(output.root_hash_hex(), their_root);
    assert_eq!(tree, std::fs::read(&theirs).unwrap());
}

/// The `verity` binary prints the same root hash as veritysetup, and verifies its own tree.
#[test]
fn command_line() {
    if !hosttools::require_tool("veritysetup") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let theirs = dir.path().join("theirs.hash");
    let ours = dir.path().join("ours.hash");
    std::fs::write(&data, pseudo_random(200 * 4096, 5)).unwrap();
    let params = VerityParams::new(salt32());
    let their_root = veritysetup_format(&data, &theirs, &params);

    let bin = env!("CARGO_BIN_EXE_verity");
    let output = Command::new(bin)
        .arg("format")
        .arg(&data)
        .arg(&ours)
        .arg("--salt")
        .arg(params.salt_hex())
        .output()
        .unwrap();
    assert!(output.status.success(), "{:?}", output);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["root_hash"], their_root.as_str());
    assert_eq!(json["salt"], params.salt_hex().as_str());
    assert_eq!(json["data_blocks"], 200);
    assert_eq!(
        std::fs::read(&ours).unwrap(),
        std::fs::read(&theirs).unwrap()
    );

    let verify = |root: &str| {
        Command::new(bin)
            .arg("verify")
            .arg(&data)
            .arg(&ours)
            .args(["--root-hash", root, "--salt", &params.salt_hex()])
            .output()
            .unwrap()
    };
    assert!(verify(&their_root).status.success());
    let wrong = verify(&"00".repeat(32));
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("root hash mismatch"));

    // Without --salt a random salt is chosen and reported.
    let output = Command::new(bin)
        .arg("format")
        .arg(&data)
        .arg(&ours)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let salt = json["salt"].as_str().unwrap();
    assert_eq!(salt.len(), 64);
    let random = VerityParams::new(verity::from_hex(salt).unwrap());
    assert!(veritysetup_verify(
        &data,
        &ours,
        &random,
        json["root_hash"].as_str().unwrap()
    ));
}
