//! `GET /report/cis` through the real server: the query's checks (400s that say what is
//! allowed), the JSON document at both levels and the text. The checks themselves are tested
//! on fixture trees in the `cis` crate; here the server reads the build host, so only the shape
//! of the answer is certain, not each item's status.

use api_types::cis::{CisMode, CisReport, CisStatus};
use testserver::TestServer;

#[test]
fn levels_formats_and_refusals() {
    let server = TestServer::start();
    let one: CisReport = serde_json::from_value(server.json("GET", "/report/cis", None)).unwrap();
    assert_eq!(one.level, 1);
    assert_eq!(one.results.len(), 15);
    let two: CisReport =
        serde_json::from_value(server.json("GET", "/report/cis?level=2&format=json", None))
            .unwrap();
    assert_eq!(two.results.len(), 28);
    assert_eq!(two.passed + two.failed + two.manual, 28);
    assert_eq!(
        two.results
            .iter()
            .filter(|r| r.status == CisStatus::Manual)
            .count(),
        4
    );
    assert!(two
        .results
        .iter()
        .all(|r| (r.mode == CisMode::Manual) == (r.status == CisStatus::Manual)));
    assert!(two
        .results
        .iter()
        .all(|r| !r.evidence.is_empty() || r.status == CisStatus::Manual));

    let (status, text) = server.raw("GET", "/report/cis?format=text&level=2", None);
    assert_eq!(status, 200);
    assert!(
        text.starts_with("Benchmark: CIS Bottlerocket Benchmark"),
        "{text}"
    );
    assert!(
        text.contains("] 3.4.1.1  Ensure IPv4 default deny firewall policy (level 2, automatic)"),
        "{text}"
    );

    for (query, says) in [
        ("level=3", "level must be 1 or 2"),
        ("format=yaml", "format must be json or text"),
        ("levle=2", "levle"),
    ] {
        let (status, body) = server.raw("GET", &format!("/report/cis?{query}"), None);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(says), "{query}: {body}");
    }
}

/// `apiclient report cis`: the same report as text (the server's text, made by the client from
/// the document) or JSON; a level outside 1-2 is refused before any request.
#[test]
fn apiclient_report_cis() {
    let server = TestServer::start();
    let out = server.apiclient(&["report", "cis", "-l", "2", "-f", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: CisReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.results.len(), 28);

    let out = server.apiclient(&["report", "cis"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Level:     1\n"), "{text}");
    assert!(
        !text.contains("3.4.1.1"),
        "level 1 has no level-2 items: {text}"
    );
    let (_, server_text) = server.raw("GET", "/report/cis?format=text", None);
    // The same items in the same order (statuses read at two moments could differ in theory).
    let ids = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with('['))
            .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&text), ids(&server_text));

    let out = server.apiclient(&["report", "cis", "-l", "3"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("3"),
        "{out:?}"
    );
}
