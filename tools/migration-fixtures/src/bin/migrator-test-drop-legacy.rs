//! Test migration: removes `settings.legacy` (kept aside for a downgrade) and replaces the motd
//! template.
#![forbid(unsafe_code)]
use migration_fixtures as common;

use migration_helpers::{RemoveSetting, ReplaceMetadata};

fn main() -> std::process::ExitCode {
    common::run((
        RemoveSetting::new("settings.legacy"),
        common::NAP,
        ReplaceMetadata::template("configuration-files.motd", "old {{x}}", "new {{x}}"),
    ))
}
