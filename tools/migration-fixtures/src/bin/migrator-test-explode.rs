//! Test migration: writes into its copy of the store, then fails, in both directions.
#![forbid(unsafe_code)]
use migration_fixtures as common;

use migration_helpers::{fail, Custom, Result, Store};
use serde_json::json;

fn explode(store: &mut Store) -> Result<()> {
    store.set("settings.half-done", &json!(true))?;
    Err(fail("the explode migration gives up on purpose"))
}

fn main() -> std::process::ExitCode {
    common::run((
        common::NAP,
        Custom {
            forward: explode,
            backward: explode,
        },
    ))
}
