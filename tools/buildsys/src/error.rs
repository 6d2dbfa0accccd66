//! Errors of the build system.
//!
//! Each message names the file or package at fault and, where there is one, the fix.

use snafu::Snafu;
use std::path::PathBuf;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading definitions, refreshing the lock or staging a root.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    // ----- definitions -----
    #[snafu(display("Cannot read {}: {source}", path.display()))]
    ReadDefinition {
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display("{} is not valid: {source}", path.display()))]
    ParseDefinition {
        path: PathBuf,
        source: toml::de::Error,
    },

    #[snafu(display("{} is not valid: {message}", path.display()))]
    InvalidDefinition { path: PathBuf, message: String },

    #[snafu(display(
        "Unknown variant '{name}'. Variants found under {}: {found}",
        dir.display()
    ))]
    UnknownVariant {
        name: String,
        dir: PathBuf,
        found: String,
    },

    #[snafu(display(
        "Variant '{variant}' lists package '{package}', which does not exist (no {}). Packages found: {found}",
        path.display()
    ))]
    UnknownPackage {
        variant: String,
        package: String,
        path: PathBuf,
        found: String,
    },

    #[snafu(display(
        "Package '{package}' requires package '{required}', which variant '{variant}' does not include; add it to the variant's packages"
    ))]
    MissingRequiredPackage {
        variant: String,
        package: String,
        required: String,
    },

    #[snafu(display(
        "Unknown container image '{name}'. Images found under {}: {found}",
        dir.display()
    ))]
    UnknownContainerImage {
        name: String,
        dir: PathBuf,
        found: String,
    },

    #[snafu(display("Invalid glob '{pattern}' in package '{package}': {source}"))]
    BadGlob {
        package: String,
        pattern: String,
        source: globset::Error,
    },

    // ----- lock -----
    #[snafu(display("Debian archive or lock problem: {source}"))]
    Debian { source: Box<debian::Error> },

    #[snafu(display(
        "{} is out of date: {details}. Run `{}` and commit packages/debian.lock",
        path.display(),
        debian::REFRESH_COMMAND
    ))]
    LockOutdated { path: PathBuf, details: String },

    #[snafu(display(
        "{} has no lock yet. Run `{}` to create it, and commit it",
        path.display(),
        debian::REFRESH_COMMAND
    ))]
    LockMissing { path: PathBuf },

    // ----- staging -----
    #[snafu(display(
        "Keep pattern '{pattern}' of package '{package}' matches no file of the Debian packages it asks for; \
         fix the pattern (paths are relative to /, with /bin, /sbin and /lib merged into /usr)"
    ))]
    KeepMatchedNothing { package: String, pattern: String },

    #[snafu(display(
        "{binary} needs the shared library {library}, which no Debian package of this variant provides \
         (searched: {searched}). Add the Debian package that ships it to a package's [debian].packages and run `{}`",
        debian::REFRESH_COMMAND
    ))]
    MissingLibrary {
        binary: String,
        library: String,
        searched: String,
    },

    #[snafu(display("Cannot parse ELF file {}: {message}", path.display()))]
    BadElf { path: PathBuf, message: String },

    #[snafu(display(
        "Symbolic links loop or nest too deeply while resolving {} inside the image tree",
        path.display()
    ))]
    SymlinkLoop { path: PathBuf },

    #[snafu(display(
        "Cargo binary '{name}' (asked for by package '{package}') is not in {}; build it first with \
         `cargo build --release -p <crate>`",
        dir.display()
    ))]
    MissingBinary {
        package: String,
        name: String,
        dir: PathBuf,
    },

    #[snafu(display(
        "Both package '{first}' and package '{second}' install {path}; only one package may own a file"
    ))]
    FileConflict {
        first: String,
        second: String,
        path: String,
    },

    #[snafu(display(
        "{path} would go into the image, but nothing under /{prefix} may (it comes from {owner}); narrow the keep patterns"
    ))]
    ForbiddenPath {
        path: String,
        prefix: String,
        owner: String,
    },

    #[snafu(display("Kernel problem: {message}"))]
    Kernel { message: String },

    #[snafu(display(
        "Kernel module '{module}' is neither a module nor built into kernel {kernel_version}{hint}"
    ))]
    UnknownModule {
        module: String,
        kernel_version: String,
        hint: String,
    },

    #[snafu(display("Kernel modules of {kernel_version}: {source}"))]
    Modules {
        kernel_version: String,
        source: kmod_index::Error,
    },

    #[snafu(display("systemd unit problem in package '{package}': {message}"))]
    Unit { package: String, message: String },

    #[snafu(display("Defaults file {} is invalid: {message}", path.display()))]
    Defaults { path: PathBuf, message: String },

    #[snafu(display(
        "Cannot run {program}: {source}. Install it with `apt-get install -y {package}`"
    ))]
    ToolSpawn {
        program: String,
        package: String,
        source: std::io::Error,
    },

    #[snafu(display("{command} failed ({status}):\n{stderr}"))]
    ToolFailed {
        command: String,
        status: String,
        stderr: String,
    },

    #[snafu(display("Version '{value}' is not usable: {message}"))]
    BadVersion { value: String, message: String },

    #[snafu(display("Cannot {action} {}: {source}", path.display()))]
    Io {
        action: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<debian::Error> for Error {
    fn from(source: debian::Error) -> Self {
        Error::Debian {
            source: Box::new(source),
        }
    }
}
