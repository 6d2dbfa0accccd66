//! `report boot`: where the boot's time went, from `GET /report/boot`; `report cis`: the node
//! against the CIS benchmark, from `GET /report/cis`.
//!
//! The text gives each phase in seconds (`unknown` where systemd does not know it, as for
//! the firmware on a BIOS boot), then each chain as `systemd-analyze critical-chain` shows
//! it: the unit asked about first, each unit it waited for indented below it, with when it
//! became active after the service manager started (`@`) and how long it took to start
//! (`+`) ([`format_boot_report`]). With `--json` the server's document is printed as it is
//! (`api_types::boot_report::BootReport`).

use crate::error::Result;
use crate::output::{print_document, Layout};
use crate::{encode_query_value, parse_document, request};
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

/// The document of `GET /report/boot` (declared once, in `api_types::boot_report`).
pub use api_types::boot_report::{BootPhases, BootReport, ChainUnit, CriticalChain};

/// The route this command reads.
pub const BOOT_REPORT_URI: &str = "/report/boot";

/// The request URI: with `?target=` when a unit is given.
pub fn boot_report_uri(target: Option<&str>) -> String {
    match target {
        Some(unit) => format!("{BOOT_REPORT_URI}?target={}", encode_query_value(unit)),
        None => BOOT_REPORT_URI.to_string(),
    }
}

/// Fetches the boot report.
pub async fn fetch(socket_path: impl AsRef<Path>, target: Option<&str>) -> Result<BootReport> {
    let body = request(socket_path, &boot_report_uri(target), "GET", None).await?;
    parse_document("the boot report", body.as_bytes())
}

/// Prints the boot report to `out`: text, or the server's JSON with `json`.
pub async fn boot<W: Write>(
    socket_path: impl AsRef<Path>,
    target: Option<&str>,
    json: bool,
    out: &mut W,
) -> Result<()> {
    let report = fetch(socket_path, target).await?;
    print_document(out, &report, json, Layout::Document, format_boot_report)
}

/// Microseconds as seconds with millisecond precision ("6.123s").
pub fn seconds(us: u64) -> String {
    format!("{}.{:03}s", us / 1_000_000, (us % 1_000_000) / 1000)
}

/// The report as text for a person (see the module's documentation).
pub fn format_boot_report(report: &BootReport) -> String {
    let mut out = String::new();
    if !report.finished {
        out.push_str(
            "Boot: still in progress (the service manager has not finished starting up)\n",
        );
    }
    let p = &report.phases;
    for (name, value) in [
        ("firmware", p.firmware_us),
        ("loader", p.loader_us),
        ("kernel", p.kernel_us),
        ("initrd", p.initrd_us),
        ("userspace", p.userspace_us),
        ("total", p.total_us),
    ] {
        let shown = value.map_or_else(|| "unknown".to_string(), seconds);
        let _ = writeln!(out, "{:<10} {shown}", format!("{name}:"));
    }
    for chain in &report.chains {
        out.push('\n');
        if chain.units.is_empty() {
            let _ = writeln!(
                out,
                "Chain to {}: none ({})",
                chain.target, chain.load_state
            );
            continue;
        }
        let _ = writeln!(out, "Chain to {}:", chain.target);
        for (depth, unit) in chain.units.iter().enumerate() {
            let _ = writeln!(out, "{}{}", "  ".repeat(depth + 1), format_unit(unit));
        }
    }
    out
}

/// One unit of a chain: "name @6.123s +0.412s", with what is known of it.
fn format_unit(unit: &ChainUnit) -> String {
    let mut text = unit.name.clone();
    match unit.active_at_us {
        Some(at) => {
            let _ = write!(text, " @{}", seconds(at));
        }
        None => {
            let _ = write!(text, " (never active; {})", unit.active_state);
        }
    }
    if let Some(start) = unit.start_us {
        let _ = write!(text, " +{}", seconds(start));
    }
    if let Some(stopped) = unit.stopped_at_us {
        let _ = write!(
            text,
            " (stopped @{}; now {})",
            seconds(stopped),
            unit.active_state
        );
    }
    text
}

/// The document of `GET /report/cis` (declared once, in `api_types::cis`).
pub use api_types::cis::CisReport;

/// The route `report cis` reads.
pub const CIS_REPORT_URI: &str = "/report/cis";

/// The request URI for `level` (1 or 2); always the JSON form, which the client prints as
/// text itself ([`CisReport::to_text`], the same text the server gives with `format=text`).
pub fn cis_report_uri(level: u8) -> String {
    format!("{CIS_REPORT_URI}?level={level}&format=json")
}

/// Fetches the CIS report at `level`.
pub async fn fetch_cis(socket_path: impl AsRef<Path>, level: u8) -> Result<CisReport> {
    let body = request(socket_path, &cis_report_uri(level), "GET", None).await?;
    parse_document("the CIS report", body.as_bytes())
}

/// Prints the CIS report at `level` to `out`: text, or the server's JSON with `json`.
pub async fn cis<W: Write>(
    socket_path: impl AsRef<Path>,
    level: u8,
    json: bool,
    out: &mut W,
) -> Result<()> {
    let report = fetch_cis(socket_path, level).await?;
    print_document(out, &report, json, Layout::Document, CisReport::to_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str, at: Option<u64>, start: Option<u64>) -> ChainUnit {
        ChainUnit {
            name: name.into(),
            active_state: "active".into(),
            active_at_us: at,
            start_us: start,
            stopped_at_us: None,
        }
    }

    #[test]
    fn phases_then_indented_chains() {
        let report = BootReport {
            finished: false,
            phases: BootPhases {
                kernel_us: Some(812_000),
                ..BootPhases::default()
            },
            chains: vec![
                CriticalChain {
                    target: "apiserver.service".into(),
                    load_state: "loaded".into(),
                    units: vec![
                        unit("apiserver.service", Some(6_100_000), Some(400_000)),
                        unit("storewolf.service", Some(5_700_000), Some(300_500)),
                    ],
                },
                CriticalChain {
                    target: "configured.target".into(),
                    load_state: "not-found".into(),
                    units: vec![],
                },
            ],
        };
        let text = format_boot_report(&report);
        assert_eq!(
            text,
            "Boot: still in progress (the service manager has not finished starting up)\n\
             firmware:  unknown\nloader:    unknown\nkernel:    0.812s\ninitrd:    unknown\n\
             userspace: unknown\ntotal:     unknown\n\
             \nChain to apiserver.service:\n  apiserver.service @6.100s +0.400s\n    \
             storewolf.service @5.700s +0.300s\n\
             \nChain to configured.target: none (not-found)\n"
        );
        assert_eq!(
            boot_report_uri(Some("getty@tty1.service")),
            "/report/boot?target=getty%40tty1.service"
        );
    }
}
