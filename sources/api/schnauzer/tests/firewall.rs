//! The `firewall` package turns `settings.firewall` into an nftables ruleset. These tests render
//! its template with the defaults and with operator rules and hand every result to the real
//! `nft` in check mode (`nft -c -f`, in a network namespace of its own, so the host's ruleset is
//! never touched), check that the baseline shipped for the early boot is the defaults' render,
//! and that a malformed setting is refused by the model before any template sees it.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn package() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../packages/firewall")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The package's defaults over the shared ones, as the build merges them.
fn defaults() -> models::Defaults {
    let own = models::Defaults::from_toml_str(&read(&package().join("defaults.toml")))
        .unwrap_or_else(|e| panic!("the package's defaults.toml is invalid: {e}"));
    let merged = models::shared_defaults().merge(own);
    merged.check_references().unwrap();
    merged
}

fn template_path() -> PathBuf {
    package().join("files/usr/share/templates/firewall-nft")
}

/// Renders the template for `settings` after the model accepted them, as the renderer does.
fn render(settings: &Value) -> String {
    models::parse_settings(settings).unwrap_or_else(|e| panic!("example settings invalid: {e}"));
    let path = template_path();
    schnauzer::render_template(
        &path.display().to_string(),
        &read(&path),
        &json!({ "settings": settings }),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `nft` with `args` in a new user and network namespace (so it has CAP_NET_ADMIN there
/// and an empty ruleset), after `nft -f` loaded each of `load`. Returns stdout, or stderr as the
/// error.
fn nft_in_namespace(load: &[&Path], args: &[&str]) -> Result<String, String> {
    let mut script = String::from("set -e\n");
    for file in load {
        script.push_str(&format!("nft -f '{}'\n", file.display()));
    }
    script.push_str("exec nft");
    for arg in args {
        script.push_str(&format!(" '{arg}'"));
    }
    let output = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "sh", "-c", &script])
        .output()
        .expect("unshare runs");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// `nft --check -f` on `text`: whether nft (and the kernel, which checks the batch) accepts it.
fn nft_check(text: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ruleset.nft");
    std::fs::write(&file, text).unwrap();
    nft_in_namespace(&[], &["--check", "-f", &file.display().to_string()]).map(|_| ())
}

fn have_nft() -> bool {
    hosttools::require_tool("nft") && hosttools::require_tool("unshare")
}

fn rule_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn the_setting_renders_the_ruleset_and_restarts_the_loader() {
    let defaults = defaults();
    let services = models::affected_services(
        &defaults.metadata,
        &format!("{}.inbound.ssh.ports", constants::FIREWALL_KEY),
    );
    assert_eq!(services.into_iter().collect::<Vec<_>>(), ["firewall"]);
    let service = &defaults.services["firewall"];
    let file = &defaults.configuration_files[&service.configuration_files[0]];
    assert_eq!(file.path, constants::FIREWALL_RULESET);
    assert!(file.template_path.ends_with("/firewall-nft"));
    assert_eq!(
        service.restart_commands,
        [format!(
            "/usr/bin/systemctl --no-block restart {}",
            constants::FIREWALL_UNIT
        )]
    );
    assert_eq!(defaults.settings["firewall"]["enabled"], json!(true));

    let unit = read(&package().join(format!(
        "files/usr/lib/systemd/system/{}",
        constants::FIREWALL_UNIT
    )));
    for line in [
        format!("ExecStart=/usr/sbin/nft -f {}", constants::FIREWALL_RULESET),
        format!(
            "StandardOutput=truncate:{}",
            constants::FIREWALL_LOADED_JSON
        ),
        format!("ConditionPathExists={}", constants::FIREWALL_RULESET),
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "{line} missing from the unit"
        );
    }
    let baseline_unit = read(&package().join(format!(
        "files/usr/lib/systemd/system/{}",
        constants::FIREWALL_BASELINE_UNIT
    )));
    assert!(baseline_unit.lines().any(|l| l
        == format!(
            "ExecStart=/usr/sbin/nft -f {}",
            constants::FIREWALL_BASELINE
        )));
    assert!(baseline_unit
        .lines()
        .any(|l| l == "Before=network-pre.target shutdown.target"));
}

/// The header of the shipped baseline, in place of the template's "Rendered from" header.
const BASELINE_HEADER: &str = "\
# Ballast's default inbound filter, loaded by ballast-firewall-baseline.service before the
# network comes up. It is the firewall template rendered with the default settings; the
# renderer's own file replaces it once the boot's settings are rendered. Regenerate it with
# `BALLAST_BLESS_FIREWALL=1 cargo test -p schnauzer --test firewall`.
";

#[test]
fn the_baseline_is_the_defaults_render() {
    let rendered = render(&defaults().settings);
    let path = package()
        .join("files")
        .join(constants::in_image(constants::FIREWALL_BASELINE));
    if std::env::var_os("BALLAST_BLESS_FIREWALL").is_some() {
        // The template's own header ends at the first line that is not a comment.
        let body: Vec<&str> = rendered
            .lines()
            .skip_while(|l| l.starts_with('#'))
            .collect();
        std::fs::write(&path, format!("{BASELINE_HEADER}{}\n", body.join("\n"))).unwrap();
    }
    let baseline = read(&path);
    assert_eq!(
        rule_lines(&baseline),
        rule_lines(&rendered),
        "the baseline must be the template rendered with the default settings; \
         rewrite it with BALLAST_BLESS_FIREWALL=1"
    );
}

#[test]
fn the_defaults_drop_inbound_and_nft_accepts_them() {
    let text = render(&defaults().settings);
    let lines = rule_lines(&text);
    assert!(lines.contains(&"type filter hook input priority filter; policy drop;"));
    assert!(lines.contains(&"iif \"lo\" accept"));
    assert!(lines.contains(&"ct state established,related accept"));
    assert!(!lines
        .iter()
        .any(|l| l.contains("dport {") && l.contains("comment")));
    if !have_nft() {
        return;
    }
    nft_check(&text).unwrap_or_else(|e| panic!("nft refused the defaults' ruleset:\n{e}\n{text}"));
}

#[test]
fn operator_rules_render_to_rules_nft_accepts() {
    let settings = json!({"firewall": {"enabled": true, "inbound": {
        "ssh": {"protocol": "tcp", "ports": [22]},
        "web": {"protocol": "tcp", "ports": [80, 443, "8000-8100"], "sources": ["10.0.0.0/8", "fd00::/8", "192.168.1.7"]},
        "dns-v6": {"protocol": "udp", "ports": [53], "sources": ["2001:db8::/32"]},
        "everyone": {"protocol": "udp", "ports": [4789], "sources": []},
        "half": {"protocol": "tcp"},
    }}});
    let text = render(&settings);
    let lines = rule_lines(&text);
    for expected in [
        "tcp dport { 22 } accept comment \"ssh\"",
        "ip saddr { 10.0.0.0/8, 192.168.1.7 } tcp dport { 80, 443, 8000-8100 } accept comment \"web\"",
        "ip6 saddr { fd00::/8 } tcp dport { 80, 443, 8000-8100 } accept comment \"web\"",
        "ip6 saddr { 2001:db8::/32 } udp dport { 53 } accept comment \"dns-v6\"",
        "udp dport { 4789 } accept comment \"everyone\"",
    ] {
        assert!(lines.contains(&expected), "{expected} missing from:\n{text}");
    }
    // An IPv6-only rule opens nothing to IPv4, and a rule without ports opens nothing.
    assert!(!lines
        .iter()
        .any(|l| l.starts_with("ip saddr") && l.contains("dns-v6")));
    assert!(!lines.iter().any(|l| l.contains("\"half\"")), "{text}");
    assert!(text.contains("# half: left out until it has both protocol and ports."));
    if !have_nft() {
        return;
    }
    nft_check(&text).unwrap_or_else(|e| panic!("nft refused the operator's ruleset:\n{e}\n{text}"));
}

#[test]
fn disabled_removes_the_table_and_nothing_else() {
    let text = render(
        &json!({"firewall": {"enabled": false, "inbound": {"ssh": {"protocol": "tcp", "ports": [22]}}}}),
    );
    assert_eq!(
        rule_lines(&text),
        ["table inet ballast", "delete table inet ballast"],
        "{text}"
    );
    if !have_nft() {
        return;
    }
    nft_check(&text).unwrap();
    // Loaded over the default ruleset, it leaves no filter; other tables stay.
    let dir = tempfile::tempdir().unwrap();
    let defaults_file = dir.path().join("defaults.nft");
    std::fs::write(&defaults_file, render(&defaults().settings)).unwrap();
    let other = dir.path().join("other.nft");
    std::fs::write(&other, "table ip nat {\n chain postrouting {\n type nat hook postrouting priority srcnat;\n }\n}\n").unwrap();
    let disabled = dir.path().join("disabled.nft");
    std::fs::write(&disabled, &text).unwrap();
    let listing =
        nft_in_namespace(&[&other, &defaults_file, &disabled], &["list", "ruleset"]).unwrap();
    assert!(!listing.contains("table inet ballast"), "{listing}");
    assert!(listing.contains("table ip nat"), "{listing}");
}

#[test]
fn a_ruleset_nft_refuses_is_caught_by_the_check() {
    // The check is a real one: a broken rule fails it.
    if !have_nft() {
        return;
    }
    let text = render(&defaults().settings).replace("policy drop;", "policy dropp;");
    assert!(nft_check(&text).is_err());
}

#[test]
fn malformed_settings_never_reach_the_template() {
    for (bad, key) in [
        (
            json!({"firewall": {"inbound": {"ssh": {"protocol": "sctp", "ports": [22]}}}}),
            "settings.firewall.inbound.ssh.protocol",
        ),
        (
            json!({"firewall": {"inbound": {"ssh": {"protocol": "tcp", "ports": [0]}}}}),
            "settings.firewall.inbound.ssh.ports[0]",
        ),
        (
            json!({"firewall": {"inbound": {"ssh": {"protocol": "tcp", "ports": ["22; flush ruleset"]}}}}),
            "settings.firewall.inbound.ssh.ports[0]",
        ),
        (
            json!({"firewall": {"inbound": {"ssh": {"protocol": "tcp", "ports": [22], "sources": ["10.0.0.1/8"]}}}}),
            "settings.firewall.inbound.ssh.sources[0]",
        ),
        (
            json!({"firewall": {"inbound": {"ssh": {"protocol": "tcp", "ports": [22], "sources": ["0.0.0.0/0 } accept"]}}}}),
            "settings.firewall.inbound.ssh.sources[0]",
        ),
        (
            json!({"firewall": {"inbound": {"bad\"name": {"protocol": "tcp", "ports": [22]}}}}),
            "settings.firewall.inbound",
        ),
        (
            json!({"firewall": {"enabled": "yes"}}),
            "settings.firewall.enabled",
        ),
        (
            json!({"firewall": {"outbound": {}}}),
            constants::FIREWALL_KEY,
        ),
    ] {
        let err = models::parse_settings(&bad).expect_err(&bad.to_string());
        assert!(err.key.starts_with(key), "{bad}: key {} ({err})", err.key);
    }
}
