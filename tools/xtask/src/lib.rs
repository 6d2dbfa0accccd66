//! # Background
//!
//! `xtask` is the build host's single entry point (`cargo xtask ...`, and every Makefile.toml
//! task). The library part holds what both the command line and the VM end-to-end tests need:
//! host tool checks and the image build pipeline, so a test builds an image exactly the way
//! `cargo xtask build` does.
//!
//! # Usage
//!
//! `cargo xtask build --variant dev`, `cargo xtask run`, `cargo xtask test`, `cargo xtask lock`,
//! `cargo xtask bench api|boot|verity|image`.
//!
//! # Current limitations
//!
//! - x86_64 only; builds run on a Debian 12 host.

pub mod host;
pub mod image;
pub mod vm;
