//! Every check against fixture trees: one built from Ballast's defaults (the sysctl values of
//! the shared defaults, the modprobe and firewall templates rendered with them, the journald
//! drop-in the systemd package ships, the firewall ruleset as the real `nft` lists it after
//! loading it), on which every automatic item passes, and for each item at least one change
//! to that tree that makes it fail.

use cis::{CisMode, CisStatus, FixedUnits, Level, Node};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const RELEASE: &str = "6.1.0-99-cloud-amd64";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn write(root: &Path, path: &str, text: &str) {
    let file = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, text).unwrap();
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The shared defaults with the firewall package's over them, as the build merges them.
fn defaults() -> Value {
    let firewall = models::Defaults::from_toml_str(&read(
        &workspace().join("packages/firewall/defaults.toml"),
    ))
    .unwrap();
    models::shared_defaults().merge(firewall).settings
}

fn render(template: &Path, settings: &Value) -> String {
    schnauzer::render_template(
        &template.display().to_string(),
        &read(template),
        &json!({ "settings": settings }),
    )
    .unwrap()
}

/// `nft -j list ruleset` after `nft -f` loaded `ruleset`, in a namespace of its own.
fn nft_json(ruleset: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ruleset.nft");
    std::fs::write(&file, ruleset).unwrap();
    let output = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "sh", "-c"])
        .arg(format!(
            "nft -f '{}' && nft -j list ruleset",
            file.display()
        ))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn firewall_ruleset(settings: &Value) -> String {
    render(
        &workspace().join("packages/firewall/files/usr/share/templates/firewall-nft"),
        settings,
    )
}

fn have_nft() -> bool {
    hosttools::require_tool("nft") && hosttools::require_tool("unshare")
}

/// A node tree with Ballast's defaults applied, and its unit states.
fn passing_tree() -> (tempfile::TempDir, FixedUnits) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let settings = defaults();
    for (key, value) in settings["kernel"]["sysctl"].as_object().unwrap() {
        write(
            root,
            &format!("/proc/sys/{}", key.replace('.', "/")),
            &format!("{}\n", value.as_str().unwrap()),
        );
    }
    write(root, "/proc/sys/kernel/osrelease", &format!("{RELEASE}\n"));
    write(
        root,
        "/proc/modules",
        "nf_tables 372736 0 - Live 0x0000000000000000\nerofs 131072 1 - Live 0x0\n",
    );
    write(root, &format!("/lib/modules/{RELEASE}/modules.dep"), "kernel/fs/erofs/erofs.ko:\nkernel/net/netfilter/nf_tables.ko: kernel/net/netfilter/nfnetlink.ko\n");
    write(
        root,
        &format!("/lib/modules/{RELEASE}/modules.builtin"),
        "kernel/fs/ext4/ext4.ko\n",
    );
    let modprobe = render(
        &workspace().join("packages/api/files/usr/share/templates/modprobe-conf"),
        &settings,
    );
    write(root, "/etc/modprobe.d/ballast.conf", &modprobe);
    write(
        root,
        "/proc/cmdline",
        &format!(
            "console=ttyS0 ballast.roothash={} ballast.salt=00\n",
            "ab".repeat(32)
        ),
    );
    write(root, "/proc/self/mountinfo", "20 1 253:0 / / ro,relatime shared:1 - erofs /dev/mapper/root ro\n21 20 8:9 / /var rw,relatime - ext4 /dev/vda9 rw\n");
    write(root, "/sys/dev/block/253:0/dm/name", "root\n");
    write(root, "/sys/fs/selinux/enforce", "1");
    write(
        root,
        constants::KERNEL_LOCKDOWN,
        "none [integrity] confidentiality\n",
    );
    write(
        root,
        "/etc/systemd/timesyncd.conf",
        "[Time]\nNTP=pool.ntp.org\n",
    );
    write(
        root,
        "/usr/lib/systemd/journald.conf.d/ballast.conf",
        &read(
            &workspace()
                .join("packages/systemd/files/usr/lib/systemd/journald.conf.d/ballast.conf"),
        ),
    );
    let journal = "/var/log/journal/0123456789abcdef0123456789abcdef/system.journal";
    write(root, journal, "LPKSHHRH");
    std::fs::set_permissions(
        root.join(journal.trim_start_matches('/')),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    write(
        root,
        constants::UPDOG_CONFIG,
        "metadata_base_url = \"https://updates.example.com/metadata\"\n",
    );
    write(
        root,
        constants::OS_RELEASE,
        "VERSION_ID=1.2.3\nVARIANT_ID=node\n",
    );
    if have_nft() {
        write(
            root,
            constants::FIREWALL_LOADED_JSON,
            &nft_json(&firewall_ruleset(&settings)),
        );
    }
    let units = FixedUnits(
        [(cis::TIME_SYNC_UNIT.to_string(), "active".to_string())]
            .into_iter()
            .collect(),
    );
    (dir, units)
}

fn statuses(root: &Path, units: &FixedUnits) -> Vec<(String, CisStatus)> {
    let node = Node::new(root, units);
    cis::report(&node, Level::Two)
        .results
        .into_iter()
        .map(|r| (r.id, r.status))
        .collect()
}

const FIREWALL_ITEMS: &[&str] = &["3.4.1.1", "3.4.1.2", "3.4.2.1", "3.4.2.2"];

#[test]
fn the_items_are_the_benchmarks() {
    let (dir, units) = passing_tree();
    let node = Node::new(dir.path(), &units);
    let one = cis::report(&node, Level::One);
    let two = cis::report(&node, Level::Two);
    assert_eq!(one.results.len(), 15);
    assert_eq!(two.results.len(), 28);
    assert_eq!(two.results.iter().filter(|r| r.level == 2).count(), 13);
    let manual: Vec<&str> = two
        .results
        .iter()
        .filter(|r| r.mode == CisMode::Manual)
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(manual, ["1.2.1", "1.6", "3.4.1.3", "3.4.2.3"]);
    assert!(two
        .results
        .iter()
        .all(|r| (r.mode == CisMode::Manual) == (r.status == CisStatus::Manual)));
    let ids: Vec<&str> = cis::ITEMS.iter().map(|i| i.id).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids, unique);
}

#[test]
fn the_defaults_pass_every_automatic_item() {
    let (dir, units) = passing_tree();
    let node = Node::new(dir.path(), &units);
    let report = cis::report(&node, Level::Two);
    for result in &report.results {
        if FIREWALL_ITEMS.contains(&result.id.as_str()) && !have_nft() {
            continue;
        }
        assert_ne!(
            result.status,
            CisStatus::Fail,
            "{}: {:?}",
            result.id,
            result.evidence
        );
        assert!(!result.evidence.is_empty(), "{} has no evidence", result.id);
    }
    let text = report.to_text();
    assert!(text.contains("[PASS] 1.5.2"), "{text}");
    assert!(text.contains("none [integrity] confidentiality"), "{text}");
    if have_nft() {
        let deny = report.results.iter().find(|r| r.id == "3.4.1.1").unwrap();
        assert!(
            deny.evidence
                .iter()
                .any(|e| e == "inet ballast input: hook input, policy drop"),
            "{:?}",
            deny.evidence
        );
        assert!(
            deny.evidence
                .iter()
                .any(|e| e.starts_with("forward: not filtered, output: not filtered")),
            "{:?}",
            deny.evidence
        );
        let established = report.results.iter().find(|r| r.id == "3.4.1.3").unwrap();
        assert!(
            established.evidence[0].ends_with("accepts established and related inbound traffic")
        );
    }
}

/// A change to the passing tree, and the items it must make fail.
struct Breakage {
    what: &'static str,
    fails: &'static [&'static str],
    apply: fn(&Path, &mut FixedUnits),
}

fn sysctl(root: &Path, key: &str, value: &str) {
    write(root, &format!("/proc/sys/{}", key.replace('.', "/")), value);
}

const BREAKAGES: &[Breakage] = &[
    Breakage {
        what: "udf loaded",
        fails: &["1.1.1.1"],
        apply: |r, _| write(r, "/proc/modules", "udf 118784 0 - Live 0x0\n"),
    },
    Breakage {
        what: "udf shipped and allowed",
        fails: &["1.1.1.1"],
        apply: |r, _| {
            write(
                r,
                &format!("/lib/modules/{RELEASE}/modules.dep"),
                "kernel/fs/udf/udf.ko.xz: kernel/lib/crc-itu-t.ko\n",
            );
            write(
                r,
                "/etc/modprobe.d/ballast.conf",
                "install sctp /bin/false\n",
            );
        },
    },
    Breakage {
        what: "udf built in",
        fails: &["1.1.1.1"],
        apply: |r, _| {
            write(
                r,
                &format!("/lib/modules/{RELEASE}/modules.builtin"),
                "kernel/fs/udf/udf.ko\n",
            )
        },
    },
    Breakage {
        what: "no root hash",
        fails: &["1.3.1"],
        apply: |r, _| write(r, "/proc/cmdline", "console=ttyS0\n"),
    },
    Breakage {
        what: "root writable",
        fails: &["1.3.1"],
        apply: |r, _| {
            write(
                r,
                "/proc/self/mountinfo",
                "20 1 253:0 / / rw,relatime - erofs /dev/mapper/root rw\n",
            )
        },
    },
    Breakage {
        what: "root not the verity device",
        fails: &["1.3.1"],
        apply: |r, _| {
            write(
                r,
                "/proc/self/mountinfo",
                "20 1 8:3 / / ro,relatime - ext4 /dev/vda3 ro\n",
            )
        },
    },
    Breakage {
        what: "suid dumps",
        fails: &["1.4.1"],
        apply: |r, _| sysctl(r, "fs.suid_dumpable", "2"),
    },
    Breakage {
        what: "no ASLR",
        fails: &["1.4.2"],
        apply: |r, _| sysctl(r, "kernel.randomize_va_space", "0"),
    },
    Breakage {
        what: "BPF for all",
        fails: &["1.4.3"],
        apply: |r, _| sysctl(r, "kernel.unprivileged_bpf_disabled", "0"),
    },
    Breakage {
        what: "user namespaces",
        fails: &["1.4.4"],
        apply: |r, _| sysctl(r, "user.max_user_namespaces", "63704"),
    },
    Breakage {
        what: "SELinux permissive",
        fails: &["1.5.1"],
        apply: |r, _| write(r, "/sys/fs/selinux/enforce", "0"),
    },
    Breakage {
        what: "no SELinux",
        fails: &["1.5.1"],
        apply: |r, _| std::fs::remove_dir_all(r.join("sys/fs/selinux")).unwrap(),
    },
    Breakage {
        what: "no lockdown",
        fails: &["1.5.2"],
        apply: |r, _| {
            write(
                r,
                constants::KERNEL_LOCKDOWN,
                "[none] integrity confidentiality\n",
            )
        },
    },
    Breakage {
        what: "time service stopped",
        fails: &["2.1.1.1"],
        apply: |_, u| {
            u.0.insert(cis::TIME_SYNC_UNIT.to_string(), "failed".to_string());
        },
    },
    Breakage {
        what: "no time servers",
        fails: &["2.1.1.1"],
        apply: |r, _| write(r, "/etc/systemd/timesyncd.conf", "[Time]\nNTP=\n"),
    },
    Breakage {
        what: "sends redirects",
        fails: &["3.1.1"],
        apply: |r, _| sysctl(r, "net.ipv4.conf.default.send_redirects", "1"),
    },
    Breakage {
        what: "source routes",
        fails: &["3.2.1"],
        apply: |r, _| sysctl(r, "net.ipv6.conf.all.accept_source_route", "1"),
    },
    Breakage {
        what: "redirects",
        fails: &["3.2.2"],
        apply: |r, _| sysctl(r, "net.ipv6.conf.default.accept_redirects", "1"),
    },
    Breakage {
        what: "secure redirects",
        fails: &["3.2.3"],
        apply: |r, _| sysctl(r, "net.ipv4.conf.all.secure_redirects", "1"),
    },
    Breakage {
        what: "martians",
        fails: &["3.2.4"],
        apply: |r, _| sysctl(r, "net.ipv4.conf.all.log_martians", "0"),
    },
    Breakage {
        what: "broadcast echo",
        fails: &["3.2.5"],
        apply: |r, _| sysctl(r, "net.ipv4.icmp_echo_ignore_broadcasts", "0"),
    },
    Breakage {
        what: "bogus ICMP",
        fails: &["3.2.6"],
        apply: |r, _| sysctl(r, "net.ipv4.icmp_ignore_bogus_error_responses", "0"),
    },
    Breakage {
        what: "no syncookies",
        fails: &["3.2.7"],
        apply: |r, _| sysctl(r, "net.ipv4.tcp_syncookies", "0"),
    },
    Breakage {
        what: "sctp loaded",
        fails: &["3.3.1"],
        apply: |r, _| write(r, "/proc/modules", "sctp 434176 2 - Live 0x0\n"),
    },
    Breakage {
        what: "no firewall record",
        fails: FIREWALL_ITEMS,
        apply: |r, _| {
            let _ = std::fs::remove_file(
                r.join(constants::FIREWALL_LOADED_JSON.trim_start_matches('/')),
            );
        },
    },
    Breakage {
        what: "volatile journal",
        fails: &["4.1.1.1"],
        apply: |r, _| {
            write(
                r,
                "/etc/systemd/journald.conf.d/zz-test.conf",
                "[Journal]\nStorage=volatile\n",
            )
        },
    },
    Breakage {
        what: "no journald setting",
        fails: &["4.1.1.1"],
        apply: |r, _| std::fs::remove_dir_all(r.join("usr/lib/systemd/journald.conf.d")).unwrap(),
    },
    Breakage {
        what: "journal readable by all",
        fails: &["4.1.2"],
        apply: |r, _| {
            let file = r.join("var/log/journal/0123456789abcdef0123456789abcdef/system.journal");
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
        },
    },
];

#[test]
fn every_automatic_item_fails_when_its_setting_is_broken() {
    for breakage in BREAKAGES {
        let (dir, mut units) = passing_tree();
        (breakage.apply)(dir.path(), &mut units);
        let results = statuses(dir.path(), &units);
        for id in breakage.fails {
            let status = results.iter().find(|(i, _)| i == id).unwrap().1;
            assert_eq!(
                status,
                CisStatus::Fail,
                "{}: {id} should fail",
                breakage.what
            );
        }
        // Nothing else changed: the other automatic items still pass.
        for (id, status) in &results {
            if breakage.fails.contains(&id.as_str())
                || (FIREWALL_ITEMS.contains(&id.as_str()) && !have_nft())
            {
                continue;
            }
            assert_ne!(
                *status,
                CisStatus::Fail,
                "{}: {id} failed too",
                breakage.what
            );
        }
    }
    // Every automatic item has at least one breakage.
    for item in cis::ITEMS.iter().filter(|i| i.is_automatic()) {
        assert!(
            BREAKAGES.iter().any(|b| b.fails.contains(&item.id)),
            "{} has no failing fixture",
            item.id
        );
    }
}

/// Firewall rulesets that real nft loads and lists, each failing some of the firewall items.
#[test]
fn firewall_rulesets_that_fail() {
    if !have_nft() {
        return;
    }
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "disabled (the table removed)",
            &firewall_ruleset(&json!({"firewall": {"enabled": false}})),
            FIREWALL_ITEMS,
        ),
        (
            "policy accept",
            "table inet f {\n chain input {\n type filter hook input priority 0; policy accept;\n iif \"lo\" accept\n ip saddr 127.0.0.0/8 drop\n ip6 saddr ::1 drop\n }\n}\n",
            FIREWALL_ITEMS,
        ),
        (
            "IPv4 only",
            "table ip f {\n chain input {\n type filter hook input priority 0; policy drop;\n iif \"lo\" accept\n ip saddr 127.0.0.0/8 drop\n }\n}\n",
            &["3.4.2.1", "3.4.2.2"],
        ),
        (
            "drop policy undone by an accept-all rule",
            "table inet f {\n chain input {\n type filter hook input priority 0; policy drop;\n accept\n }\n}\n",
            FIREWALL_ITEMS,
        ),
        (
            "loopback spoof drop before the loopback accept",
            "table inet f {\n chain input {\n type filter hook input priority 0; policy drop;\n ip saddr 127.0.0.0/8 drop\n ip6 saddr ::1 drop\n iifname \"lo\" accept\n }\n}\n",
            &["3.4.1.2", "3.4.2.2"],
        ),
        (
            "no loopback accept",
            "table inet f {\n chain input {\n type filter hook input priority 0; policy drop;\n ip saddr 127.0.0.0/8 drop\n ip6 saddr ::1/128 drop\n }\n}\n",
            &["3.4.1.2", "3.4.2.2"],
        ),
        (
            "output dropped without loopback",
            "table inet f {\n chain input {\n type filter hook input priority 0; policy drop;\n iif \"lo\" accept\n ip saddr 127.0.0.0/8 drop\n ip6 saddr ::1 drop\n }\n chain output {\n type filter hook output priority 0; policy drop;\n }\n}\n",
            &["3.4.1.2", "3.4.2.2"],
        ),
    ];
    for (what, ruleset, fails) in cases {
        let (dir, units) = passing_tree();
        write(
            dir.path(),
            constants::FIREWALL_LOADED_JSON,
            &nft_json(ruleset),
        );
        for (id, status) in statuses(dir.path(), &units) {
            if !FIREWALL_ITEMS.contains(&id.as_str()) {
                continue;
            }
            let want = if fails.contains(&id.as_str()) {
                CisStatus::Fail
            } else {
                CisStatus::Pass
            };
            assert_eq!(status, want, "{what}: {id}");
        }
    }
    // The same rules spelled otherwise still pass: iifname and a /128 prefix.
    let (dir, units) = passing_tree();
    write(
        dir.path(),
        constants::FIREWALL_LOADED_JSON,
        &nft_json("table inet f {\n chain input {\n type filter hook input priority 0; policy drop;\n iifname \"lo\" accept\n ip saddr 127.0.0.0/8 drop\n ip6 saddr ::1/128 drop\n }\n}\n"),
    );
    for (id, status) in statuses(dir.path(), &units) {
        if FIREWALL_ITEMS.contains(&id.as_str()) {
            assert_eq!(status, CisStatus::Pass, "{id}");
        }
    }
}

/// Operator rules leave every firewall item passing.
#[test]
fn operator_rules_keep_the_firewall_items() {
    if !have_nft() {
        return;
    }
    let mut settings = defaults();
    settings["firewall"]["inbound"] =
        json!({"ssh": {"protocol": "tcp", "ports": [22], "sources": ["10.0.0.0/8", "fd00::/8"]}});
    let (dir, units) = passing_tree();
    write(
        dir.path(),
        constants::FIREWALL_LOADED_JSON,
        &nft_json(&firewall_ruleset(&settings)),
    );
    for (id, status) in statuses(dir.path(), &units) {
        assert_ne!(status, CisStatus::Fail, "{id}");
    }
}
