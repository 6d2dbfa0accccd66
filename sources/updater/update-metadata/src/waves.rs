//! Wave policies: how fast an update reaches the fleet.
//!
//! Each node draws a seed from 0 to 2048 once. A policy is a list of waves, each a start (a delay
//! after the release, or a fixed time) and the share of the fleet updated once it has started,
//! in the TOML shape of Bottlerocket's wave files:
//!
//! ```toml
//! [[waves]]
//! start_after = "1 hour"
//! fleet_percentage = 1
//!
//! [[waves]]
//! start_after = "2024-06-01T00:00:00Z"
//! fleet_percentage = 100
//! ```
//!
//! [`WavePolicy::schedule`] turns it into the manifest's `waves` map as Bottlerocket does: the
//! first wave starts at seed 0, and each wave's percentage of 2048 is the seed bound where the
//! next one starts.
//!
//! # On the node
//!
//! [`ready_at`] answers the node's question, "from when may the node with this seed take this
//! update?". With bounds `k0 < k1 < ...` starting at `t0 < t1 < ...`, a seed `s` with
//! `k(i) <= s < k(i+1)` becomes ready at
//! `t(i) + (t(i+1) - t(i)) * (s - k(i)) / (k(i+1) - k(i))`: the nodes of one wave are spread
//! evenly over the time until the next wave starts, so the first wave does not hit the
//! repository (or a bad release does not hit the fleet) all at once. A seed at or above the last
//! bound is ready when the last wave starts; a seed below the first bound (a map that does not
//! start at 0) when the first wave starts. No waves at all: ready at once.
//!
//! Bottlerocket's updater spreads by the absolute seed (`s`) where this uses the offset into the
//! wave (`s - k(i)`); with the absolute seed, late seeds of a wave can land after the next wave
//! has started, which defeats the ordering. The map format is the same.

use crate::error::{self, Result};
use crate::manifest::MAX_SEED;
use crate::time::add_span;
use jiff::{Span, Timestamp};
use serde::Deserialize;
use snafu::{ensure, ResultExt};
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

/// When a wave starts.
#[derive(Debug, Clone, Copy)]
pub enum StartAfter {
    /// This long after the release time given to [`WavePolicy::schedule`].
    Delay(Span),
    /// At a fixed time.
    At(Timestamp),
}

impl FromStr for StartAfter {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        if let Ok(at) = s.parse::<Timestamp>() {
            return Ok(StartAfter::At(at));
        }
        s.parse::<Span>().map(StartAfter::Delay).map_err(|e| {
            format!(
                "{s:?} is neither a duration (\"4 hours\", \"1 day\") nor an RFC 3339 time: {e}"
            )
        })
    }
}

impl<'de> Deserialize<'de> for StartAfter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One wave of a policy.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wave {
    pub start_after: StartAfter,
    /// Share of the fleet (1-100) that may update once this wave has started.
    pub fleet_percentage: u32,
}

/// An ordered list of waves; empty means every node may update at once.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WavePolicy {
    #[serde(default)]
    pub waves: Vec<Wave>,
}

impl WavePolicy {
    /// No waves: every node may take the update as soon as it is published.
    pub fn none() -> Self {
        Self::default()
    }

    /// Bottlerocket's default policy: 1% after an hour, 5% after 4 hours, 15% after a day, 40%
    /// after 2 days, 60% after 4, 90% after 5, everyone after 6 days.
    pub fn gradual() -> Self {
        let wave = |start: Span, fleet_percentage| Wave {
            start_after: StartAfter::Delay(start),
            fleet_percentage,
        };
        WavePolicy {
            waves: vec![
                wave(Span::new().hours(1), 1),
                wave(Span::new().hours(4), 5),
                wave(Span::new().days(1), 15),
                wave(Span::new().days(2), 40),
                wave(Span::new().days(4), 60),
                wave(Span::new().days(5), 90),
                wave(Span::new().days(6), 100),
            ],
        }
    }

    /// Parses a TOML wave file; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let policy: WavePolicy = toml::from_str(text).map_err(|e| {
            error::WavePolicySnafu {
                path,
                reason: e.to_string(),
            }
            .build()
        })?;
        policy
            .validate()
            .map_err(|reason| error::WavePolicySnafu { path, reason }.build())?;
        Ok(policy)
    }

    /// Reads a TOML wave file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).context(error::ReadWavePolicySnafu { path })?;
        Self::parse(&text, path)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let mut previous = 0;
        for wave in &self.waves {
            let pct = wave.fleet_percentage;
            if !(1..=100).contains(&pct) {
                return Err(format!("fleet_percentage {pct} is not between 1 and 100"));
            }
            if pct <= previous {
                return Err(format!(
                    "fleet_percentage {pct} does not grow (the wave before has {previous})"
                ));
            }
            previous = pct;
        }
        Ok(())
    }

    /// The manifest's `waves` map for a release at `release`: seed bound -> start time.
    pub fn schedule(&self, release: Timestamp) -> Result<BTreeMap<u32, Timestamp>> {
        self.validate()
            .map_err(|reason| error::WavesSnafu { reason }.build())?;
        let mut map = BTreeMap::new();
        let mut seed = 0;
        let mut previous: Option<Timestamp> = None;
        for wave in &self.waves {
            let start = match wave.start_after {
                StartAfter::Delay(span) => add_span(release, span)?,
                StartAfter::At(at) => at,
            };
            ensure!(
                previous.is_none_or(|p| start > p),
                error::WavesSnafu {
                    reason: format!(
                        "the wave for {}% starts at {start}, not after the wave before it",
                        wave.fleet_percentage
                    )
                }
            );
            map.insert(seed, start);
            previous = Some(start);
            seed = wave.fleet_percentage * MAX_SEED / 100;
        }
        Ok(map)
    }
}

/// From when the node with `seed` may take an update with the manifest `waves` map (seed bound
/// -> start time); `None` when there are no waves, meaning at once. See the module docs.
pub fn ready_at(waves: &BTreeMap<u32, Timestamp>, seed: u32) -> Option<Timestamp> {
    let (&first_seed, &first_time) = waves.first_key_value()?;
    if seed < first_seed {
        return Some(first_time);
    }
    let (&start_seed, &start_time) = waves.range(..=seed).next_back()?;
    let Some((&end_seed, &end_time)) = waves.range(seed + 1..).next() else {
        return Some(start_time);
    };
    // Whole seconds are precise enough, and keep the arithmetic in integers.
    let window = end_time.as_second() - start_time.as_second();
    let offset = window * i64::from(seed - start_seed) / i64::from(end_seed - start_seed);
    Some(Timestamp::from_second(start_time.as_second() + offset).unwrap_or(start_time))
}

/// Whether the node with `seed` may take an update with these `waves` at time `now`.
pub fn is_ready(waves: &BTreeMap<u32, Timestamp>, seed: u32, now: Timestamp) -> bool {
    ready_at(waves, seed).is_none_or(|at| at <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_spread_over_their_wave() {
        let release: Timestamp = "2024-01-15T00:00:00Z".parse().unwrap();
        let map = WavePolicy::gradual().schedule(release).unwrap();
        let at = |seed| ready_at(&map, seed).unwrap().to_string();
        // First wave: seeds 0..20 from 1h to 4h.
        assert_eq!(at(0), "2024-01-15T01:00:00Z");
        assert_eq!(at(10), "2024-01-15T02:30:00Z");
        assert_eq!(at(20), "2024-01-15T04:00:00Z");
        // Last wave: every seed from its bound on starts with it.
        assert_eq!(at(1843), "2024-01-21T00:00:00Z");
        assert_eq!(at(2047), "2024-01-21T00:00:00Z");
        // Later seeds are never ready before earlier ones.
        let times: Vec<Timestamp> = (0..2048).map(|s| ready_at(&map, s).unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));

        let noon: Timestamp = "2024-01-15T12:00:00Z".parse().unwrap();
        assert!(is_ready(&map, 19, noon));
        assert!(is_ready(&map, 50, noon), "second wave, 4h + 30/82 of 20h");
        assert!(!is_ready(&map, 102, noon), "third wave starts after a day");
        assert!(!is_ready(&map, 2000, noon));
        assert!(is_ready(&BTreeMap::new(), 2000, release), "no waves");

        // A map that does not start at seed 0: the seeds below wait for the first wave.
        let late: BTreeMap<u32, Timestamp> = [(100, noon)].into();
        assert_eq!(ready_at(&late, 5), Some(noon));
        assert!(!is_ready(&late, 5, release));
    }

    #[test]
    fn gradual_policy_bounds() {
        let release: Timestamp = "2024-01-15T00:00:00Z".parse().unwrap();
        let map = WavePolicy::gradual().schedule(release).unwrap();
        let bounds: Vec<u32> = map.keys().copied().collect();
        assert_eq!(bounds, [0, 20, 102, 307, 819, 1228, 1843]);
        assert_eq!(map[&0].to_string(), "2024-01-15T01:00:00Z");
        assert_eq!(map[&20].to_string(), "2024-01-15T04:00:00Z");
        assert_eq!(map[&1843].to_string(), "2024-01-21T00:00:00Z");
        assert!(WavePolicy::none().schedule(release).unwrap().is_empty());
    }

    #[test]
    fn wave_files() {
        let path = Path::new("waves.toml");
        let policy = WavePolicy::parse(
            "[[waves]]\nstart_after = \"30 minutes\"\nfleet_percentage = 10\n\
             [[waves]]\nstart_after = \"2030-01-01T00:00:00Z\"\nfleet_percentage = 100\n",
            path,
        )
        .unwrap();
        let map = policy
            .schedule("2029-12-31T00:00:00Z".parse().unwrap())
            .unwrap();
        assert_eq!(map[&0].to_string(), "2029-12-31T00:30:00Z");
        assert_eq!(map[&204].to_string(), "2030-01-01T00:00:00Z");

        for (bad, why) in [
            (
                "[[waves]]\nstart_after = \"soon\"\nfleet_percentage = 10\n",
                "neither",
            ),
            (
                "[[waves]]\nstart_after = \"1h\"\nfleet_percentage = 0\n",
                "between 1 and 100",
            ),
            (
                "[[waves]]\nstart_after = \"1h\"\nfleet_percentage = 50\n\
                 [[waves]]\nstart_after = \"2h\"\nfleet_percentage = 50\n",
                "does not grow",
            ),
            ("[[wave]]\n", "unknown field"),
        ] {
            let err = WavePolicy::parse(bad, path).unwrap_err().to_string();
            assert!(
                err.contains(why) && err.contains("waves.toml"),
                "{why}: {err}"
            );
        }
        // Times must grow too; a fixed time before the delay is refused when scheduled.
        let policy = WavePolicy::parse(
            "[[waves]]\nstart_after = \"1 day\"\nfleet_percentage = 10\n\
             [[waves]]\nstart_after = \"2000-01-01T00:00:00Z\"\nfleet_percentage = 100\n",
            path,
        )
        .unwrap();
        let err = policy
            .schedule("2024-01-01T00:00:00Z".parse().unwrap())
            .unwrap_err();
        assert!(
            err.to_string().contains("not after the wave before"),
            "{err}"
        );
    }
}
