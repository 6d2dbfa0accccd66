//! early-boot-config against the real API server (defaults pending in the launch
//! transaction, as at boot) and a fake metadata service.

mod common;

use common::*;
use serde_json::json;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn each_provider_lands_in_the_launch_transaction_then_goes_live() {
    let server = boot_server();
    let dir = tempfile::tempdir().unwrap();
    let imds = FakeImds::start(Some(
        b"[settings.ntp]\ntime-servers = [\"time.example.com\"]\n",
    ));
    let cmdline = format!(
        "console=ttyS0 ballast.user-data={} quiet",
        b64(b"[settings]\ntimezone = \"Europe/Paris\"\n")
    );
    let output = early_boot_config(
        &server.socket,
        dir.path(),
        &Inputs {
            local: Some("[settings.network]\nhostname = \"node-1\"\n"),
            cmdline: &cmdline,
            imds_url: &imds.url(),
            ..Inputs::default()
        },
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        summary(&output),
        "early-boot-config: applied local-file, applied kernel-cmdline, applied imds"
    );

    let tx = launch_tx(&server);
    assert_eq!(tx["network"]["hostname"], "node-1");
    assert_eq!(tx["timezone"], "Europe/Paris");
    assert_eq!(tx["ntp"]["time-servers"], json!(["time.example.com"]));
    assert_eq!(tx["motd"], "Welcome to Ballast!", "defaults stay pending");
    assert_eq!(server.json("GET", "/settings", None), json!({}));

    let commit = Command::new(testserver::workspace_bin("settings-committer"))
        .arg("--socket-path")
        .arg(&server.socket)
        .output()
        .unwrap();
    assert!(commit.status.success(), "{commit:?}");
    let live = server.json("GET", "/settings", None);
    assert_eq!(live["network"]["hostname"], "node-1");
    assert_eq!(live["timezone"], "Europe/Paris");
    assert_eq!(live["ntp"]["time-servers"], json!(["time.example.com"]));
    assert_eq!(live["motd"], "Welcome to Ballast!");
}

#[test]
fn later_providers_win_key_by_key() {
    let server = boot_server();
    let dir = tempfile::tempdir().unwrap();
    let imds = FakeImds::start(Some(b"[settings]\nmotd = \"from imds\"\n"));
    let cmdline = format!(
        "ballast.user-data={}",
        b64(b"[settings]\nmotd = \"from cmdline\"\n[settings.kernel.sysctl]\n\"vm.b\" = \"2\"\n\"vm.a\" = \"cmdline\"\n")
    );
    let output = early_boot_config(
        &server.socket,
        dir.path(),
        &Inputs {
            local: Some(
                "[settings]\nmotd = \"from local\"\n[settings.network]\nhostname = \"local-host\"\n[settings.kernel.sysctl]\n\"vm.a\" = \"1\"\n",
            ),
            cmdline: &cmdline,
            imds_url: &imds.url(),
            ..Inputs::default()
        },
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let tx = launch_tx(&server);
    assert_eq!(tx["motd"], "from imds");
    assert_eq!(tx["network"]["hostname"], "local-host");
    // Only the keys the providers set are compared: the variant's own sysctl defaults sit
    // alongside them.
    assert_eq!(tx["kernel"]["sysctl"]["vm.a"], "cmdline");
    assert_eq!(tx["kernel"]["sysctl"]["vm.b"], "2");
}

#[test]
fn invalid_user_data_is_refused_whole_while_other_providers_apply() {
    // Each bad document also sets a valid hostname, which must not be applied.
    let cases = [
        (
            "[settings.network]\nhostname = \"bad-doc\"\n[settings\nmotd = \"x\"\n",
            "user data is not valid TOML: line 3",
        ),
        (
            "[settings.network]\nhostname = \"bad-doc\"\n[settings]\nmotdd = \"x\"\n",
            "settings.motdd: unknown field `motdd`",
        ),
        (
            "[settings.network]\nhostname = \"bad-doc\"\n[settings.updates]\nseed = \"seven\"\n",
            "settings.updates.seed: invalid type: string",
        ),
        (
            "[settings.network]\nhostname = \"bad-doc\"\n[settings]\nmotd = \"\"\"\nline one\nline two\"\"\"\n",
            "settings.motd: ",
        ),
        (
            "[settings.network]\nhostname = \"bad-doc\"\n[metadata.settings.motd]\naffected-services = []\n",
            "metadata: unknown top-level entry",
        ),
    ];
    let server = boot_server();
    let dir = tempfile::tempdir().unwrap();
    for (bad, expected) in cases {
        // Bad document in the local file, a valid one on the command line.
        let cmdline = format!(
            "ballast.user-data={}",
            b64(b"[settings]\nmotd = \"valid\"\n")
        );
        let output = early_boot_config(
            &server.socket,
            dir.path(),
            &Inputs {
                local: Some(bad),
                cmdline: &cmdline,
                ..Inputs::default()
            },
        );
        assert!(output.status.success(), "{}", stderr(&output));
        let line = summary(&output);
        assert!(
            line.starts_with("early-boot-config: refused local-file (")
                && line.contains(expected)
                && line.ends_with(", applied kernel-cmdline, no user data from imds"),
            "expected {expected:?} in {line}"
        );
        assert!(
            stderr(&output).contains("ERROR")
                && stderr(&output).contains("nothing from it is applied"),
            "{}",
            stderr(&output)
        );
        let tx = launch_tx(&server);
        assert!(tx.get("network").is_none(), "bad document leaked: {tx}");
        assert_eq!(tx["motd"], "valid");
        server.raw(
            "PATCH",
            &format!("/settings?tx={}", constants::LAUNCH_TX),
            Some(r#"{"motd": "reset"}"#),
        );
    }
    // The multi-line refusal says why.
    let output = early_boot_config(
        &server.socket,
        dir.path(),
        &Inputs {
            local: Some("[settings]\nmotd = \"\"\"\nline one\nline two\"\"\"\n"),
            ..Inputs::default()
        },
    );
    assert!(
        summary(&output).contains("line break"),
        "{}",
        summary(&output)
    );
}

#[test]
fn refused_metadata_document_leaves_earlier_providers_applied() {
    let server = boot_server();
    let dir = tempfile::tempdir().unwrap();
    let imds = FakeImds::start(Some(
        b"[settings]\nmotd = \"imds\"\n[settings.network]\nhostname = \"Bad_Host\"\n",
    ));
    let output = early_boot_config(
        &server.socket,
        dir.path(),
        &Inputs {
            local: Some("[settings]\ntimezone = \"America/New_York\"\n"),
            imds_url: &imds.url(),
            ..Inputs::default()
        },
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let line = summary(&output);
    assert!(
        line.starts_with("early-boot-config: applied local-file, no user data from kernel-cmdline, refused imds (settings.network.hostname: 'Bad_Host' is not a valid hostname"),
        "{line}"
    );
    let tx = launch_tx(&server);
    assert_eq!(tx["timezone"], "America/New_York");
    assert_eq!(tx["motd"], "Welcome to Ballast!");
}

#[test]
fn bad_base64_on_the_command_line_is_refused() {
    let server = boot_server();
    let dir = tempfile::tempdir().unwrap();
    let output = early_boot_config(
        &server.socket,
        dir.path(),
        &Inputs {
            cmdline: "ballast.user-data=%%%not-base64",
            ..Inputs::default()
        },
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        summary(&output).contains("refused kernel-cmdline (ballast.user-data is not valid base64"),
        "{}",
        summary(&output)
    );
}

#[test]
fn fake_metadata_service_insists_on_the_token() {
    let imds = FakeImds::start(Some(b"[settings]\nmotd = \"secret\"\n"));
    let client = reqwest::blocking::Client::new();
    let url = format!("{}/latest/user-data", imds.url());
    assert_eq!(client.get(&url).send().unwrap().status(), 401);
    let wrong = client
        .get(&url)
        .header("X-aws-ec2-metadata-token", "guess")
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let no_ttl = client
        .put(format!("{}/latest/api/token", imds.url()))
        .send()
        .unwrap();
    assert_eq!(no_ttl.status(), 400);
    imds.with(|s| {
        assert_eq!(s.refused_gets, 2);
        assert_eq!(s.authorized_gets, 0);
    });

    // early-boot-config goes through the token flow and gets the data.
    let server = boot_server();
    let dir = tempfile::tempdir().unwrap();
    let output = early_boot_config(
        &server.socket,
        dir.path(),
        &Inputs {
            imds_url: &imds.url(),
            ..Inputs::default()
        },
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        summary(&output).ends_with("applied imds"),
        "{}",
        summary(&output)
    );
    assert_eq!(launch_tx(&server)["motd"], "secret");
    imds.with(|s| {
        assert_eq!(s.token_requests, 1);
        assert_eq!(s.authorized_gets, 1);
        assert_eq!(s.refused_gets, 2, "no request without the token");
    });
}

#[test]
fn metadata_without_user_data_is_not_an_error() {
    let server = boot_server();
    let dir = tempfile::tempdir().unwrap();
    let imds = FakeImds::start(None);
    let output = early_boot_config(
        &server.socket,
        dir.path(),
        &Inputs {
            imds_url: &imds.url(),
            ..Inputs::default()
        },
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        summary(&output),
        "early-boot-config: no user data from local-file, no user data from kernel-cmdline, no user data from imds"
    );
    assert!(stderr(&output).contains("(404)"), "{}", stderr(&output));
    assert!(!stderr(&output).contains("ERROR"), "{}", stderr(&output));
    assert_eq!(
        imds.with(|s| s.authorized_gets),
        1,
        "404 is final, no retry"
    );
}

#[test]
fn unreachable_metadata_service_gives_up_at_once() {
    let server = boot_server();
    let dir = tempfile::tempdir().unwrap();
    let url = closed_port_url();
    let start = Instant::now();
    let output = early_boot_config(
        &server.socket,
        dir.path(),
        &Inputs {
            imds_url: &url,
            extra: &["--imds-timeout-seconds", "30"],
            ..Inputs::default()
        },
    );
    let elapsed = start.elapsed();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(
        summary(&output).ends_with("no user data from imds"),
        "{}",
        summary(&output)
    );
    let text = stderr(&output);
    assert!(text.contains("connection refused"), "{text}");
    assert!(text.contains("INFO") && !text.contains("ERROR"), "{text}");
}

#[test]
fn silent_metadata_service_is_given_up_by_the_deadline() {
    let server = boot_server();
    let dir = tempfile::tempdir().unwrap();
    // The kernel completes connections on a listening socket nobody accepts from, so requests
    // are sent and never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let start = Instant::now();
    let output = early_boot_config(
        &server.socket,
        dir.path(),
        &Inputs {
            local: Some("[settings]\nmotd = \"local\"\n"),
            imds_url: &url,
            extra: &["--imds-timeout-seconds", "2"],
            ..Inputs::default()
        },
    );
    let elapsed = start.elapsed();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    assert_eq!(
        summary(&output),
        "early-boot-config: applied local-file, no user data from kernel-cmdline, no user data from imds"
    );
    assert!(
        stderr(&output).contains("no metadata service answered at"),
        "{}",
        stderr(&output)
    );
    assert_eq!(launch_tx(&server)["motd"], "local");
    drop(silent);
}

#[test]
fn failing_metadata_service_is_retried_then_given_up_by_the_deadline() {
    let server = boot_server();
    let dir = tempfile::tempdir().unwrap();

    // Two 500s, then the data: retried and applied.
    let flaky = FakeImds::start(Some(b"[settings]\nmotd = \"third time\"\n"));
    flaky.with(|s| s.failures_left = 2);
    let output = early_boot_config(
        &server.socket,
        dir.path(),
        &Inputs {
            imds_url: &flaky.url(),
            ..Inputs::default()
        },
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        summary(&output).ends_with("applied imds"),
        "{}",
        summary(&output)
    );
    assert_eq!(launch_tx(&server)["motd"], "third time");
    assert_eq!(flaky.with(|s| s.authorized_gets), 3);

    // Always 500: given up by the deadline, reported, boot goes on.
    let broken = FakeImds::start(Some(b"[settings]\nmotd = \"never\"\n"));
    broken.with(|s| s.failures_left = usize::MAX);
    let start = Instant::now();
    let output = early_boot_config(
        &server.socket,
        dir.path(),
        &Inputs {
            imds_url: &broken.url(),
            extra: &["--imds-timeout-seconds", "2"],
            ..Inputs::default()
        },
    );
    let elapsed = start.elapsed();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    let line = summary(&output);
    assert!(
        line.contains("failed imds (gave up after") && line.contains("500"),
        "{line}"
    );
    assert_eq!(launch_tx(&server)["motd"], "third time");
}

#[test]
fn command_line_chooses_or_disables_the_metadata_service() {
    let server = boot_server();
    let dir = tempfile::tempdir().unwrap();
    let imds = FakeImds::start(Some(b"[settings]\nmotd = \"chosen by cmdline\"\n"));

    // ballast.imds= wins over --imds-url.
    let cmdline = format!("quiet ballast.imds={}", imds.url());
    let output = early_boot_config(
        &server.socket,
        dir.path(),
        &Inputs {
            cmdline: &cmdline,
            imds_url: &closed_port_url(),
            ..Inputs::default()
        },
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(launch_tx(&server)["motd"], "chosen by cmdline");

    // ballast.imds=off: not even asked.
    let output = early_boot_config(
        &server.socket,
        dir.path(),
        &Inputs {
            cmdline: "ballast.imds=off",
            imds_url: &imds.url(),
            ..Inputs::default()
        },
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(summary(&output).ends_with("no user data from imds"));
    assert!(stderr(&output).contains("turned off by ballast.imds"));
    assert_eq!(imds.with(|s| s.token_requests), 1);
}

#[test]
fn gzip_user_data_is_accepted() {
    let server = boot_server();
    let dir = tempfile::tempdir().unwrap();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(b"[settings]\nmotd = \"compressed\"\n")
        .unwrap();
    let imds = FakeImds::start(Some(&encoder.finish().unwrap()));
    let output = early_boot_config(
        &server.socket,
        dir.path(),
        &Inputs {
            imds_url: &imds.url(),
            ..Inputs::default()
        },
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(launch_tx(&server)["motd"], "compressed");
}

#[test]
fn missing_api_server_fails_the_unit() {
    let dir = tempfile::tempdir().unwrap();
    let output = early_boot_config(
        &dir.path().join("absent.sock"),
        dir.path(),
        &Inputs {
            local: Some("[settings]\nmotd = \"hi\"\n"),
            ..Inputs::default()
        },
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        summary(&output).contains("failed local-file (Cannot reach the API server at")
            && summary(&output).contains("absent.sock"),
        "{}",
        summary(&output)
    );
}
