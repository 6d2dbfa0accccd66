//! `verity`: build or check a dm-verity hash tree from the command line.
//!
//! ```text
//! verity format DATA HASH [--salt HEX]          # prints {"root_hash": ..., "salt": ..., ...}
//! verity verify DATA HASH --root-hash HEX --salt HEX
//! ```
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use verity::{VerityOutput, VerityParams, DEFAULT_BLOCK_SIZE};

/// Build and check dm-verity hash trees (format 1, sha256), identical to
/// `veritysetup format --no-superblock`.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the hash tree of DATA to HASH and print the root hash and salt as JSON.
    Format {
        /// File or block device to protect; its size must be a multiple of the data block size.
        data: PathBuf,
        /// Where to write the hash tree (created or truncated).
        hash: PathBuf,
        /// Salt in hex (`-` for none); a random 32-byte salt when absent.
        #[arg(long)]
        salt: Option<String>,
        #[command(flatten)]
        sizes: BlockSizes,
    },
    /// Check that HASH is the tree of DATA with the given root hash and salt.
    Verify {
        /// File or block device that was protected.
        data: PathBuf,
        /// The hash tree.
        hash: PathBuf,
        /// Expected root hash in hex.
        #[arg(long)]
        root_hash: String,
        /// Salt in hex (`-` for none).
        #[arg(long)]
        salt: String,
        #[command(flatten)]
        sizes: BlockSizes,
    },
}

#[derive(Debug, clap::Args)]
struct BlockSizes {
    /// Data block size in bytes.
    #[arg(long, default_value_t = DEFAULT_BLOCK_SIZE)]
    data_block_size: u32,
    /// Hash block size in bytes.
    #[arg(long, default_value_t = DEFAULT_BLOCK_SIZE)]
    hash_block_size: u32,
}

/// What `format` and `verify` print.
#[derive(Debug, Serialize)]
struct Report {
    root_hash: String,
    salt: String,
    hash_type: u32,
    hash_algorithm: &'static str,
    data_block_size: u32,
    hash_block_size: u32,
    data_blocks: u64,
    hash_size: u64,
}

impl Report {
    fn new(output: &VerityOutput, params: &VerityParams) -> Self {
        Self {
            root_hash: output.root_hash_hex(),
            salt: params.salt_hex(),
            hash_type: 1,
            hash_algorithm: "sha256",
            data_block_size: params.data_block_size,
            hash_block_size: params.hash_block_size,
            data_blocks: output.data_blocks,
            hash_size: output.hash_size,
        }
    }
}

fn params(salt: Vec<u8>, sizes: &BlockSizes) -> VerityParams {
    VerityParams {
        salt,
        data_block_size: sizes.data_block_size,
        hash_block_size: sizes.hash_block_size,
    }
}

fn run(cli: Cli) -> verity::Result<Report> {
    match cli.command {
        Command::Format {
            data,
            hash,
            salt,
            sizes,
        } => {
            let salt = match salt {
                Some(hex) => verity::from_hex(&hex)?,
                None => VerityParams::with_random_salt()?.salt,
            };
            let params = params(salt, &sizes);
            let output = verity::format_file(&data, &hash, &params)?;
            Ok(Report::new(&output, &params))
        }
        Command::Verify {
            data,
            hash,
            root_hash,
            salt,
            sizes,
        } => {
            let params = params(verity::from_hex(&salt)?, &sizes);
            let root = verity::root_hash_from_hex(&root_hash)?;
            let output = verity::verify_file(&data, &hash, &params, &root)?;
            Ok(Report::new(&output, &params))
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(report) => {
            let json = serde_json::to_string_pretty(&report).expect("the report serializes");
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("verity: {}", snafu::Report::from_error(e));
            ExitCode::FAILURE
        }
    }
}
