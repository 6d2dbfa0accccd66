//! A writer for initramfs archives in the cpio "newc" format the kernel unpacks.
//!
//! The writer lives in the `newc` crate (the image builder uses it too); this module re-exports
//! it so that `vmtest::cpio::CpioWriter` keeps working.

pub use newc::CpioWriter;
