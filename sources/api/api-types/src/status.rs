//! The node's state for an operator without a shell: `GET /units` answers with a list of
//! [`Unit`], `GET /status` with a [`NodeStatus`] that puts the units, the A/B boot state, the
//! running version and the update state together. Ballast's own routes; Bottlerocket has no
//! equivalent (its operators use the admin container's shell).
//!
//! Each part of a [`NodeStatus`] is read on its own, and a part that cannot be read is
//! `{"error": "..."}` in place of its document ([`Part`]), so one broken source (say, no A/B
//! disk on a development host) never hides the others.

use crate::boot::BootState;
use crate::logs::LogEntry;
use crate::update::UpdateStatus;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many of a failed unit's newest journal entries the units' answers carry.
pub const FAILED_UNIT_LOG_LINES: u32 = 10;

/// One systemd unit, as `systemctl list-units --all` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Unit {
    /// The unit's name with its type, e.g. "apiserver.service".
    pub name: String,
    /// Whether its definition was loaded: "loaded", "not-found", "bad-setting", "error",
    /// "masked", ...
    pub load_state: String,
    /// The high-level state: "active", "reloading", "inactive", "failed", "activating",
    /// "deactivating", ...
    pub active_state: String,
    /// The type-specific state, e.g. "running", "exited", "dead", "mounted", "listening".
    pub sub_state: String,
    /// The unit's description.
    pub description: String,
    /// For a failed unit: its newest journal entries (at most [`FAILED_UNIT_LOG_LINES`]),
    /// oldest first. Left out for other units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_log: Option<Vec<LogEntry>>,
    /// For a failed unit whose journal could not be read: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_log_error: Option<String>,
}

impl Unit {
    /// Whether systemd counts the unit as failed.
    pub fn is_failed(&self) -> bool {
        self.active_state == "failed"
    }
}

/// The units part of [`NodeStatus`]: counts, and the failed units in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnitsSummary {
    /// Every unit systemd knows (loaded in memory, whatever its state).
    pub total: u32,
    /// How many units are in each active state, e.g. {"active": 120, "inactive": 40}.
    pub by_active_state: BTreeMap<String, u32>,
    /// The failed units, each with its last journal entries.
    pub failed: Vec<Unit>,
}

impl UnitsSummary {
    /// The summary of a unit list.
    pub fn of(units: Vec<Unit>) -> UnitsSummary {
        let mut by_active_state = BTreeMap::new();
        for unit in &units {
            *by_active_state
                .entry(unit.active_state.clone())
                .or_insert(0) += 1;
        }
        UnitsSummary {
            total: u32::try_from(units.len()).unwrap_or(u32::MAX),
            by_active_state,
            failed: units.into_iter().filter(Unit::is_failed).collect(),
        }
    }

    /// How many units are active.
    pub fn active(&self) -> u32 {
        self.by_active_state.get("active").copied().unwrap_or(0)
    }
}

/// The running image, from the OS release facts (as `GET /os`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunningOs {
    /// e.g. "Ballast OS 0.1.0 (dev)".
    pub pretty_name: String,
    /// e.g. "dev".
    pub variant_id: String,
    /// e.g. "0.1.0".
    pub version_id: String,
    /// e.g. a commit hash.
    pub build_id: String,
    /// e.g. "x86_64".
    pub arch: String,
}

/// A part of [`NodeStatus`] that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartError {
    /// Why the part could not be read, as a sentence.
    pub error: String,
}

/// One part of [`NodeStatus`]: its document, or `{"error": "..."}` when it could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Part<T> {
    /// The part could not be read. Tried first when reading: no part's document has only an
    /// `error` field.
    Error(PartError),
    /// The part's document.
    Read(T),
}

impl<T> Part<T> {
    /// A part that could not be read.
    pub fn error(message: impl Into<String>) -> Part<T> {
        Part::Error(PartError {
            error: message.into(),
        })
    }

    /// The part's document, or why there is none.
    pub fn as_result(&self) -> Result<&T, &str> {
        match self {
            Part::Read(value) => Ok(value),
            Part::Error(e) => Err(&e.error),
        }
    }
}

impl<T, E: std::fmt::Display> From<Result<T, E>> for Part<T> {
    fn from(result: Result<T, E>) -> Part<T> {
        match result {
            Ok(value) => Part::Read(value),
            Err(e) => Part::error(e.to_string()),
        }
    }
}

/// The document served at `GET /status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeStatus {
    /// systemd's units: counts by state, and the failed ones with their last journal entries.
    #[cfg_attr(feature = "openapi", schema(schema_with = part_schema::<UnitsSummary>))]
    pub units: Part<UnitsSummary>,
    /// The A/B boot state of the disk (`signpost status`).
    #[cfg_attr(feature = "openapi", schema(schema_with = part_schema::<BootState>))]
    pub boot: Part<BootState>,
    /// The running image (as `GET /os`).
    #[cfg_attr(feature = "openapi", schema(schema_with = part_schema::<RunningOs>))]
    pub os: Part<RunningOs>,
    /// The update state: what is available, chosen, staged, and the last update action (as
    /// `GET /updates/status`).
    #[cfg_attr(feature = "openapi", schema(schema_with = part_schema::<UpdateStatus>))]
    pub update: Part<UpdateStatus>,
}

/// The schema of a [`Part`]: a reference to the part's document, or a [`PartError`]. The
/// document that uses it registers both among its components (see [`part_schemas`]).
#[cfg(feature = "openapi")]
fn part_schema<T: utoipa::ToSchema>() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::OneOfBuilder;
    use utoipa::openapi::Ref;
    OneOfBuilder::new()
        .item(Ref::from_schema_name(T::name()))
        .item(Ref::from_schema_name(
            <PartError as utoipa::ToSchema>::name(),
        ))
        .build()
        .into()
}

/// The schemas [`NodeStatus`] refers to through its parts, with their own references, for an
/// OpenAPI document's components.
#[cfg(feature = "openapi")]
pub fn part_schemas() -> Vec<(
    String,
    utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
)> {
    use utoipa::ToSchema;
    fn add<T: ToSchema>(
        out: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        out.push((T::name().into_owned(), T::schema()));
        T::schemas(out);
    }
    let mut out = Vec::new();
    add::<PartError>(&mut out);
    add::<UnitsSummary>(&mut out);
    add::<BootState>(&mut out);
    add::<RunningOs>(&mut out);
    add::<UpdateStatus>(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str, active: &str) -> Unit {
        Unit {
            name: name.into(),
            load_state: "loaded".into(),
            active_state: active.into(),
            sub_state: if active == "failed" {
                "failed"
            } else {
                "running"
            }
            .into(),
            description: String::new(),
            last_log: None,
            last_log_error: None,
        }
    }

    #[test]
    fn summary_counts_states_and_keeps_failed_units() {
        let s = UnitsSummary::of(vec![
            unit("a.service", "active"),
            unit("b.service", "failed"),
            unit("c.service", "active"),
            unit("d.mount", "inactive"),
        ]);
        assert_eq!(s.total, 4);
        assert_eq!(s.active(), 2);
        assert_eq!(s.by_active_state["inactive"], 1);
        assert_eq!(s.failed.len(), 1);
        assert_eq!(s.failed[0].name, "b.service");
    }

    #[test]
    fn parts_are_a_document_or_an_error() {
        let ok: Part<RunningOs> = Part::Read(RunningOs {
            pretty_name: "Ballast".into(),
            variant_id: "dev".into(),
            version_id: "0.1.0".into(),
            build_id: "abc".into(),
            arch: "x86_64".into(),
        });
        let text = serde_json::to_string(&ok).unwrap();
        assert!(text.starts_with(r#"{"pretty_name""#), "{text}");
        assert_eq!(serde_json::from_str::<Part<RunningOs>>(&text).unwrap(), ok);

        let broken: Part<RunningOs> = Part::error("no os-release");
        let text = serde_json::to_string(&broken).unwrap();
        assert_eq!(text, r#"{"error":"no os-release"}"#);
        let back: Part<RunningOs> = serde_json::from_str(&text).unwrap();
        assert_eq!(back.as_result().unwrap_err(), "no os-release");
    }
}
