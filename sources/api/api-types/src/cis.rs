//! The CIS report: `GET /report/cis` answers with a [`CisReport`] (JSON, or the text of
//! [`CisReport::to_text`] with `?format=text`), which `apiclient report cis` prints.
//!
//! The items are those of the CIS Bottlerocket Benchmark (the list Bottlerocket's own report
//! checks): 28 recommendations, 15 at level 1 and 13 at level 2, of which 4 can only be judged
//! by a person. A report at level 2 holds both levels, as the benchmark's level 2 profile
//! includes level 1. Bottlerocket's JSON says SKIP for what it could not decide; Ballast's
//! checks always decide, so a check that cannot read what it needs fails and says why.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Outcome of one recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum CisStatus {
    /// The node meets the recommendation.
    Pass,
    /// The node does not, or the check could not read what it needs (the evidence says which).
    Fail,
    /// A person has to judge it; the evidence says what to look at.
    Manual,
}

/// Whether a recommendation is checked by the node or by a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum CisMode {
    /// Checked by the node.
    Automatic,
    /// Judged by a person.
    Manual,
}

/// One recommendation and what the node showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CisResult {
    /// The benchmark's number, e.g. "3.4.1.1".
    pub id: String,
    /// The benchmark's title, e.g. "Ensure IPv4 default deny firewall policy".
    pub title: String,
    /// Profile level: 1 or 2.
    pub level: u8,
    /// Automatic or manual.
    pub mode: CisMode,
    /// PASS, FAIL or MANUAL.
    pub status: CisStatus,
    /// What was read and what it showed, one fact per line (values, files, unit states).
    pub evidence: Vec<String>,
}

/// The report of one run: every recommendation up to the requested level, in benchmark order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CisReport {
    /// The benchmark, e.g. "CIS Bottlerocket Benchmark v1.0.0".
    pub benchmark: String,
    /// The level asked for (1, or 2 for both levels).
    pub level: u8,
    /// How many results passed.
    pub passed: usize,
    /// How many results failed.
    pub failed: usize,
    /// How many results need a person.
    pub manual: usize,
    /// One per recommendation.
    pub results: Vec<CisResult>,
}

impl CisReport {
    /// A report over `results`, with the counts filled in.
    pub fn new(benchmark: &str, level: u8, results: Vec<CisResult>) -> CisReport {
        let count = |status| results.iter().filter(|r| r.status == status).count();
        CisReport {
            benchmark: benchmark.to_string(),
            level,
            passed: count(CisStatus::Pass),
            failed: count(CisStatus::Fail),
            manual: count(CisStatus::Manual),
            results,
        }
    }

    /// The report for a person: a header, then one line per recommendation
    /// (`[PASS] 1.4.2  Ensure ... (level 1, automatic)`) with its evidence indented below.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Benchmark: {}", self.benchmark);
        let _ = writeln!(out, "Level:     {}", self.level);
        let _ = writeln!(
            out,
            "Results:   {} passed, {} failed, {} manual, {} in all",
            self.passed,
            self.failed,
            self.manual,
            self.results.len()
        );
        for result in &self.results {
            let status = match result.status {
                CisStatus::Pass => "PASS",
                CisStatus::Fail => "FAIL",
                CisStatus::Manual => "MANUAL",
            };
            let mode = match result.mode {
                CisMode::Automatic => "automatic",
                CisMode::Manual => "manual",
            };
            let _ = writeln!(
                out,
                "\n[{status}] {:<8} {} (level {}, {mode})",
                result.id, result.title, result.level
            );
            for line in &result.evidence {
                let _ = writeln!(out, "    {line}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, status: CisStatus) -> CisResult {
        CisResult {
            id: id.to_string(),
            title: format!("Ensure {id}"),
            level: 1,
            mode: if status == CisStatus::Manual {
                CisMode::Manual
            } else {
                CisMode::Automatic
            },
            status,
            evidence: vec![format!("{id} evidence")],
        }
    }

    #[test]
    fn counts_json_and_text() {
        let report = CisReport::new(
            "bench",
            2,
            vec![
                result("1.1", CisStatus::Pass),
                result("1.2", CisStatus::Fail),
                result("1.3", CisStatus::Manual),
            ],
        );
        assert_eq!((report.passed, report.failed, report.manual), (1, 1, 1));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["results"][1]["status"], "FAIL");
        assert_eq!(json["results"][2]["mode"], "manual");
        let back: CisReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
        let text = report.to_text();
        assert!(
            text.contains("1 passed, 1 failed, 1 manual, 3 in all"),
            "{text}"
        );
        assert!(
            text.contains("[FAIL] 1.2      Ensure 1.2 (level 1, automatic)\n    1.2 evidence\n"),
            "{text}"
        );
    }
}
