//! # Background
//!
//! `xtask` is the build host's single entry point (`cargo xtask ...`, and every Makefile.toml
//! task). The library part holds what both the command line and the VM end-to-end tests need:
//! host tool checks and the image build pipeline, so a test builds an image exactly the way
//! `cargo xtask build` does.
//!
//! A fresh Debian 12 host has few of the programs the build and the tests run. [`host`] says
//! which programs each command's steps run, and each command installs their packages (from the
//! table in the `hosttools` crate) before its first step; tests/host_tools.rs scans the
//! build-host code for the programs it starts and checks both. [`progress`] shows each step as
//! it runs, with cargo's own output for the compiles.
//!
//! [`sandbox`] holds the exposure budget of every systemd unit of ours, the one table that
//! tests/sandbox.rs (the unit files, rated offline) and the dev VM test (the booted node) hold
//! the units to.
//!
//! # Usage
//!
//! `cargo xtask build --variant dev`, `cargo xtask run`, `cargo xtask test`, `cargo xtask lock`,
//! `cargo xtask images build|publish`, `cargo xtask registry start|stop|status`,
//! `cargo xtask bench api|boot|verity|image`.
//!
//! # Current limitations
//!
//! - x86_64 only; builds run on a Debian 12 host.
//! - Packages are installed only when running as root; otherwise the command stops with the
//!   apt-get line to run.
//! - The scan of tests/host_tools.rs sees programs named by string literals (and the few
//!   constants it lists); a program name built at run time escapes it.

#![forbid(unsafe_code)]

pub mod containers;
pub mod diskspace;
pub mod host;
pub mod image;
pub mod progress;
pub mod sandbox;
pub mod vm;
