//! Renders every shipped template through the library, once with the shared defaults and once
//! with a filled-in example, and checks what the consuming service needs.

use base64::Engine as _;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn template_path(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    let package = if name == "containerd-config" || name == "cri-base-spec" {
        "containerd"
    } else {
        "api"
    };
    root.join("packages")
        .join(package)
        .join("files/usr/share/templates")
        .join(name)
}

fn os() -> Value {
    json!({"pretty_name": "Ballast test", "variant_id": "test", "version_id": "0.1.0",
           "build_id": "abc", "arch": "x86_64"})
}

fn render(name: &str, settings: &Value) -> String {
    // Only settings the model accepts may be used by the templates' tests.
    models::parse_settings(settings).unwrap_or_else(|e| panic!("example settings invalid: {e}"));
    let path = template_path(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    schnauzer::render_template(
        &path.display().to_string(),
        &text,
        &json!({"settings": settings, "os": os()}),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn defaults() -> Value {
    models::shared_defaults().settings
}

const PEM: &str =
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUTEST\n-----END CERTIFICATE-----\n";

fn example() -> Value {
    let pem = base64::engine::general_purpose::STANDARD.encode(PEM);
    let auth = base64::engine::general_purpose::STANDARD.encode("bob:secret");
    json!({
        "motd": "Hello \"there\" <ops>",
        "timezone": "Europe/Paris",
        "network": {
            "hostname": "node-1",
            "http-proxy": "http://proxy.example:3128",
            "https-proxy": "proxy.example:3129",
            "no-proxy": ["10.0.0.0/8", ".internal.example"]
        },
        "dns": {"name-servers": ["10.0.0.2", "fd00::53"], "search-list": ["a.example", "b.example"]},
        "ntp": {"time-servers": ["https://time.example", "10.1.1.1:123", "[fd00::7b]:123", "ntp.example"]},
        "kernel": {
            "sysctl": {"net.ipv4.ip_forward": "1", "vm.max_map_count": "262144"},
            "modules": {"sctp": {"allowed": false}, "udf": {"allowed": true}, "dccp": {"allowed": false}}
        },
        "container-registry": {
            "mirrors": [
                {"registry": "docker.io", "endpoint": ["mirror.example", "http://mirror2.example:5000"]},
                {"registry": "*", "endpoint": ["https://all.example"]}
            ],
            "credentials": [
                {"registry": "docker.io", "auth": auth},
                {"registry": "quay.io", "username": "bob", "password": "p\"w\\d"},
                {"registry": "ghcr.io", "identitytoken": "tok"}
            ]
        },
        "pki": {
            "corp": {"data": pem, "trusted": true},
            "bad": {"data": pem, "trusted": false}
        }
    })
}

#[test]
fn bare_value_files() {
    assert_eq!(render("motd", &defaults()), "Welcome to Ballast!\n");
    assert_eq!(render("motd", &example()), "Hello \"there\" <ops>\n");
    assert_eq!(render("timezone", &defaults()), "Etc/UTC\n");
    assert_eq!(render("timezone", &example()), "Europe/Paris\n");
    assert_eq!(render("hostname", &example()), "node-1\n");
    // No hostname set: the image's factory name, so `hostname -F` still has a name to read.
    assert_eq!(render("hostname", &defaults()), "ballast\n");
}

#[test]
fn resolv_conf() {
    let unset = render("resolv-conf", &defaults());
    assert!(unset.lines().all(|l| l.starts_with('#')), "{unset}");
    let set = render("resolv-conf", &example());
    let lines: Vec<&str> = set.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            "nameserver 10.0.0.2",
            "nameserver fd00::53",
            "search a.example b.example"
        ]
    );
}

#[test]
fn sysctl_conf() {
    // The shared defaults carry the hardened sysctl values; each renders as one line.
    let hardened = render("sysctl-conf", &defaults());
    let lines: Vec<&str> = hardened.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(lines.contains(&"kernel.kptr_restrict = 1"), "{hardened}");
    assert!(lines.contains(&"net.ipv4.tcp_syncookies = 1"), "{hardened}");
    let unset = render("sysctl-conf", &json!({}));
    assert!(unset.lines().all(|l| l.starts_with('#')), "{unset}");
    let set = render("sysctl-conf", &example());
    let lines: Vec<&str> = set.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        ["net.ipv4.ip_forward = 1", "vm.max_map_count = 262144"]
    );
}

#[test]
fn modprobe_conf() {
    // The shared defaults block udf and sctp (CIS 1.1.1.1 and 3.3.1).
    let hardened = render("modprobe-conf", &defaults());
    let lines: Vec<&str> = hardened.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            "blacklist sctp",
            "install sctp /bin/false",
            "blacklist udf",
            "install udf /bin/false"
        ]
    );
    let unset = render("modprobe-conf", &json!({}));
    assert!(unset.lines().all(|l| l.starts_with('#')), "{unset}");
    let set = render("modprobe-conf", &example());
    let lines: Vec<&str> = set.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            "blacklist dccp",
            "install dccp /bin/false",
            "blacklist sctp",
            "install sctp /bin/false"
        ]
    );
}

#[test]
fn timesyncd_conf() {
    let text = render("timesyncd-conf", &defaults());
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines, ["[Time]", "NTP=pool.ntp.org"]);
    let text = render("timesyncd-conf", &example());
    assert!(
        text.contains("\nNTP=time.example 10.1.1.1 fd00::7b ntp.example\n"),
        "{text}"
    );
    let two = json!({"ntp": {"time-servers": ["a", "b"]}});
    assert!(render("timesyncd-conf", &two).ends_with("\nNTP=a b\n"));
}

#[test]
fn ca_certificates() {
    let unset = render("ca-certificates", &defaults());
    assert!(unset.lines().all(|l| l.starts_with('#')), "{unset}");
    let set = render("ca-certificates", &example());
    assert_eq!(
        set.matches("-----BEGIN CERTIFICATE-----").count(),
        1,
        "{set}"
    );
    assert!(set.contains(PEM), "{set}");
    assert!(set.contains("# settings.pki.corp"));
    assert!(!set.contains("settings.pki.bad"));
}

#[test]
fn proxy_env() {
    let unset = render("proxy-env", &defaults());
    assert!(unset.lines().all(|l| l.starts_with('#')), "{unset}");
    let set = render("proxy-env", &example());
    let lines: Vec<&str> = set.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            "HTTP_PROXY=http://proxy.example:3128",
            "http_proxy=http://proxy.example:3128",
            "HTTPS_PROXY=proxy.example:3129",
            "https_proxy=proxy.example:3129",
            "NO_PROXY=localhost,127.0.0.1,::1,10.0.0.0/8,.internal.example",
            "no_proxy=localhost,127.0.0.1,::1,10.0.0.0/8,.internal.example",
        ]
    );
}

fn parse_toml(text: &str) -> toml::Table {
    toml::from_str(text).unwrap_or_else(|e| panic!("not TOML: {e}\n{text}"))
}

#[test]
fn host_ctr_config() {
    // The shared defaults: only the admin container, disabled, and no registry settings.
    let unset = parse_toml(&render("host-ctr-config", &defaults()));
    assert_eq!(
        unset.keys().collect::<Vec<_>>(),
        ["containers"],
        "{unset:?}"
    );
    assert_eq!(
        unset["containers"]["admin"]["enabled"].as_bool(),
        Some(false)
    );
    assert_eq!(
        unset["containers"]["admin"]["superpowered"].as_bool(),
        Some(true)
    );
    let mut settings = example();
    settings["host-containers"] = json!({
        "admin": {"source": "10.0.2.103:5080/ballast/admin:v1", "enabled": true,
                  "superpowered": true, "user-data": "aGk="},
        "control": {"source": "r.example/control:1", "enabled": false},
    });
    let set = parse_toml(&render("host-ctr-config", &settings));
    let expected: toml::Table = toml::from_str(
        r#"
        [containers.admin]
        source = "10.0.2.103:5080/ballast/admin:v1"
        enabled = true
        superpowered = true
        user-data = "aGk="
        [containers.control]
        source = "r.example/control:1"
        enabled = false
        superpowered = false
        [mirrors."docker.io"]
        endpoints = ["https://mirror.example", "http://mirror2.example:5000"]
        [mirrors."*"]
        endpoints = ["https://all.example"]
        [creds."registry-1.docker.io"]
        auth = "Ym9iOnNlY3JldA=="
        [creds."quay.io"]
        username = "bob"
        password = 'p"w\d'
        [creds."ghcr.io"]
        identitytoken = "tok"
        "#,
    )
    .unwrap();
    assert_eq!(set, expected);
}

#[test]
fn containerd_config() {
    let base = parse_toml(&render("containerd-config", &defaults()));
    assert_eq!(base["version"].as_integer(), Some(2));
    let cri = &base["plugins"]["io.containerd.grpc.v1.cri"];
    assert_eq!(
        cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"].as_bool(),
        Some(true)
    );
    assert!(cri.get("registry").is_none());
    // What kubelet's pods get from the shared defaults.
    assert_eq!(
        cri["sandbox_image"].as_str(),
        Some("registry.ballast.invalid/ballast/pause:0.1.0")
    );
    assert_eq!(cri["max_concurrent_downloads"].as_integer(), Some(3));
    assert_eq!(cri["max_container_log_line_size"].as_integer(), Some(16384));
    assert_eq!(cri["enable_unprivileged_ports"].as_bool(), Some(true));
    assert_eq!(cri["enable_unprivileged_icmp"].as_bool(), Some(true));
    assert_eq!(
        cri["unset_seccomp_profile"].as_str(),
        Some("runtime/default")
    );
    let runc = &cri["containerd"]["runtimes"]["runc"];
    assert_eq!(
        runc["base_runtime_spec"].as_str(),
        Some(constants::CRI_BASE_SPEC)
    );
    assert_eq!(
        models::shared_defaults().configuration_files["cri-base-spec"].path,
        constants::CRI_BASE_SPEC
    );
    assert_eq!(
        base["grpc"]["address"].as_str(),
        Some(constants::CONTAINERD_SOCKET)
    );

    // Settings that are set reach the CRI table; one left out is left to containerd.
    let mut changed = defaults();
    changed["container-runtime"] = json!({
        "pause-image": "10.0.2.103:5080/ballast/pause:0.1.0",
        "max-concurrent-downloads": 7,
        "enable-unprivileged-ports": false,
        "max-container-log-line-size": -1,
    });
    let cri = parse_toml(&render("containerd-config", &changed))["plugins"]
        ["io.containerd.grpc.v1.cri"]
        .clone();
    assert_eq!(
        cri["sandbox_image"].as_str(),
        Some("10.0.2.103:5080/ballast/pause:0.1.0")
    );
    assert_eq!(cri["max_concurrent_downloads"].as_integer(), Some(7));
    assert_eq!(cri["max_container_log_line_size"].as_integer(), Some(-1));
    assert_eq!(cri["enable_unprivileged_ports"].as_bool(), Some(false));
    assert_eq!(cri["enable_unprivileged_icmp"].as_bool(), Some(false));
    changed["container-runtime"] = json!({});
    let cri = parse_toml(&render("containerd-config", &changed))["plugins"]
        ["io.containerd.grpc.v1.cri"]
        .clone();
    assert!(cri.get("sandbox_image").is_none(), "{cri}");
    assert!(cri.get("max_concurrent_downloads").is_none(), "{cri}");

    let set = parse_toml(&render("containerd-config", &example()));
    let registry = &set["plugins"]["io.containerd.grpc.v1.cri"]["registry"];
    let endpoints = |name: &str| -> Vec<String> {
        registry["mirrors"][name]["endpoint"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        endpoints("docker.io"),
        ["https://mirror.example", "http://mirror2.example:5000"]
    );
    assert_eq!(endpoints("*"), ["https://all.example"]);
    let configs = &registry["configs"];
    assert_eq!(
        configs["registry-1.docker.io"]["auth"]["auth"].as_str(),
        Some("Ym9iOnNlY3JldA==")
    );
    assert_eq!(configs["quay.io"]["auth"]["username"].as_str(), Some("bob"));
    assert_eq!(
        configs["quay.io"]["auth"]["password"].as_str(),
        Some("p\"w\\d")
    );
    assert_eq!(
        configs["ghcr.io"]["auth"]["identitytoken"].as_str(),
        Some("tok")
    );
}

/// containerd's default capability set (`oci.populateDefaultUnixSpec` in containerd 1.6).
const CONTAINERD_DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

fn capability_set(spec: &Value, set: &str) -> Vec<String> {
    let mut names: Vec<String> = spec["process"]["capabilities"][set]
        .as_array()
        .unwrap_or_else(|| panic!("no {set} capabilities: {spec}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn cri_base_spec() {
    let parse = |text: String| -> Value {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
    };
    let spec = parse(render("cri-base-spec", &defaults()));
    let mut want: Vec<String> = CONTAINERD_DEFAULT_CAPS
        .iter()
        .map(|s| s.to_string())
        .collect();
    want.sort();
    for set in ["bounding", "effective", "permitted"] {
        assert_eq!(capability_set(&spec, set), want, "{set}");
    }
    assert_eq!(spec["process"]["noNewPrivileges"], json!(true));
    assert_eq!(
        spec["process"]["rlimits"],
        json!([{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 65536}])
    );
    // The spec runc needs besides what the CRI plugin adds.
    assert_eq!(spec["root"]["path"], "rootfs");
    assert!(spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["destination"] == "/proc"));
    assert!(spec["linux"]["maskedPaths"].as_array().unwrap().len() > 5);

    // A capability turned off is gone, one turned on is added; limits follow the settings.
    let mut changed = defaults();
    changed["oci-defaults"]["capabilities"]["net-raw"] = json!(false);
    changed["oci-defaults"]["capabilities"]["sys-ptrace"] = json!(true);
    changed["oci-defaults"]["resource-limits"] = json!({
        "max-open-files": {"hard-limit": 4096, "soft-limit": 1024},
        "max-processes": {"hard-limit": -1, "soft-limit": -1},
    });
    let spec = parse(render("cri-base-spec", &changed));
    let caps = capability_set(&spec, "effective");
    assert!(caps.contains(&"CAP_SYS_PTRACE".to_string()), "{caps:?}");
    assert!(!caps.contains(&"CAP_NET_RAW".to_string()), "{caps:?}");
    assert_eq!(caps.len(), CONTAINERD_DEFAULT_CAPS.len());
    assert_eq!(
        spec["process"]["rlimits"],
        json!([
            {"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024},
            {"type": "RLIMIT_NPROC", "hard": u64::MAX, "soft": u64::MAX},
        ])
    );

    // No oci-defaults at all (a variant that removes them): still a valid spec.
    let spec = parse(render("cri-base-spec", &json!({})));
    assert_eq!(spec["process"]["capabilities"]["bounding"], json!([]));
    assert_eq!(spec["process"]["noNewPrivileges"], json!(true));
}

#[test]
fn every_default_template_exists_and_renders() {
    let defaults = models::shared_defaults();
    for (name, file) in &defaults.configuration_files {
        let file_name = file.template_path.rsplit('/').next().unwrap();
        assert_eq!(file_name, name);
        assert!(template_path(name).is_file(), "missing template for {name}");
        render(name, &defaults.settings);
        render(name, &example());
    }
}

/// The template of the test package `test-next-dns-names` reads the renamed setting of the
/// "next" model (`settings.dns.search-domains`) and writes the same resolv.conf as the shipped
/// template does from `search-list`. Rendered without the model check: the default model does
/// not know the new name.
#[test]
fn next_model_resolv_conf_reads_the_new_name() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    let path = root.join("packages/test-next-dns-names/files/usr/share/templates/resolv-conf-next");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let render_next = |dns: Value| {
        schnauzer::render_template(
            &path.display().to_string(),
            &text,
            &json!({"settings": {"dns": dns}, "os": os()}),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let new = render_next(
        json!({"name-servers": ["10.0.0.2"], "search-domains": ["a.example", "b.example"]}),
    );
    let old = render("resolv-conf", &example());
    let search = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("search "))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(search(&new), ["search a.example b.example"], "{new}");
    assert_eq!(search(&new), search(&old));
    // The old name means nothing to the next template.
    let stale = render_next(json!({"search-list": ["a.example"]}));
    assert!(search(&stale).is_empty(), "{stale}");
}
