//! Test migration: adds `settings.colour` and changes the default of `settings.timeout`.
#![forbid(unsafe_code)]
use migration_fixtures as common;

use migration_helpers::{AddSetting, ReplaceDefault};
use serde_json::json;

fn main() -> std::process::ExitCode {
    common::run((
        AddSetting::new("settings.colour", json!("blue"))
            .with_metadata("affected-services", json!(["motd"])),
        common::NAP,
        ReplaceDefault::new("settings.timeout", json!(30), json!(60)),
    ))
}
