//! # Background
//!
//! Update waves spread a new OS release over a fleet: each node holds a seed in
//! `settings.updates.seed`, and a release reaches the nodes whose seed falls into the waves that
//! have opened so far. The seed must differ from node to node and stay the same across boots.
//!
//! bork makes that seed. The shared defaults declare it as the setting generator of
//! `settings.updates.seed` (`bork seed`), so sundog runs it on the first boot, when the key has
//! no value yet; once committed the value is live and sundog never asks again.
//!
//! # Usage
//!
//! `bork seed` prints one JSON integer between 0 and [`models::MAX_UPDATE_SEED`] (inclusive) on
//! stdout, Bottlerocket's range of 2048 seeds. sundog reads generator output as JSON, so the
//! value is stored as a number.
//!
//! # Current limitations
//!
//! * The seed is uniform over the range; nothing ties it to the node's identity, so a node whose
//!   data partition is wiped gets a new seed.
#![forbid(unsafe_code)]

pub mod error;

use error::WriteOutputSnafu;
pub use error::{Error, Result};
use rand::Rng;
use snafu::ResultExt;
use std::io::Write;

/// A seed drawn uniformly from `0..=MAX_UPDATE_SEED`.
pub fn seed<R: Rng + ?Sized>(rng: &mut R) -> u32 {
    rng.random_range(0..=models::MAX_UPDATE_SEED)
}

/// Writes a fresh seed as a JSON integer and a newline.
pub fn write_seed<W: Write>(out: &mut W) -> Result<u32> {
    let value = seed(&mut rand::rng());
    let text = serde_json::Value::from(value).to_string();
    writeln!(out, "{text}").context(WriteOutputSnafu)?;
    out.flush().context(WriteOutputSnafu)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_stay_in_range_and_vary() {
        let mut rng = rand::rng();
        let seeds: Vec<u32> = (0..2000).map(|_| seed(&mut rng)).collect();
        assert!(seeds.iter().all(|s| *s <= models::MAX_UPDATE_SEED));
        let distinct: std::collections::BTreeSet<_> = seeds.iter().collect();
        assert!(distinct.len() > 100, "seeds barely vary: {distinct:?}");
    }

    #[test]
    fn written_seed_is_a_json_integer_the_model_accepts() {
        let mut out = Vec::new();
        let value = write_seed(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, format!("{value}\n"));
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        models::parse_settings(&serde_json::json!({"updates": {"seed": parsed}})).unwrap();
    }
}
