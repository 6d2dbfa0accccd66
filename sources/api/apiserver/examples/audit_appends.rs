//! What the audit trail adds to each change request, for `cargo xtask bench api`: appends
//! `COUNT` entries of a typical `apiclient set` (one changed key, a named caller) to the server's
//! own [`AuditLog`] in `DIR`, one at a time, and prints their latencies as JSON
//! ([`apiload::Commits`]). The journal line the server also logs per entry is not included.
//!
//! Usage: `audit_appends DIR COUNT` (built in release by the bench).

use api_types::audit::{AuditChange, AuditEntry, Caller};
use apiserver::audit::{AuditConfig, AuditLog, DEFAULT_MAX_ENTRIES};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(count)) = (args.next(), args.next()) else {
        return Err("usage: audit_appends DIR COUNT".into());
    };
    let count: usize = count.parse()?;
    let log = AuditLog::open(&AuditConfig {
        path: PathBuf::from(dir).join("audit-bench.jsonl"),
        max_entries: DEFAULT_MAX_ENTRIES,
    })?;
    let began = Instant::now();
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let entry = AuditEntry {
            time: "2026-01-01T00:00:00.000000Z".to_string(),
            caller: Some(Caller {
                uid: 0,
                gid: 0,
                pid: Some(4242),
                program: Some("apiclient".to_string()),
            }),
            method: "PATCH".to_string(),
            path: "/settings?tx=bench".to_string(),
            changes: vec![AuditChange {
                key: "settings.motd".to_string(),
                value: Some(format!("\"value {i}\"")),
                redacted: false,
            }],
            changes_omitted: 0,
            status: 204,
        };
        let start = Instant::now();
        log.append(&entry);
        samples.push(start.elapsed());
    }
    let summary = apiload::summarize(samples.clone(), samples, began.elapsed());
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
