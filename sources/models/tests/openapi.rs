//! The OpenAPI schema generated from the model must be complete (every reference resolves) and
//! must agree with the Rust validators: documents the model accepts pass the schema, and the
//! schema's patterns refuse what they claim to refuse.

use models::modeled_types::*;
use serde_json::{json, Value};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(components(schemas(models::Model, models::Settings)))]
struct Doc;

fn components() -> Value {
    let doc = serde_json::to_value(Doc::openapi()).unwrap();
    doc["components"]["schemas"].clone()
}

/// A JSON Schema validator for one component, with the other components reachable by `$ref`.
fn validator_for(name: &str) -> jsonschema::Validator {
    let schema = json!({
        "$ref": format!("#/components/schemas/{name}"),
        "components": { "schemas": components() },
    });
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("schema for {name}: {e}"))
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    refs.push(v.as_str().unwrap().to_string());
                } else {
                    collect_refs(v, refs);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves() {
    let schemas = components();
    let mut refs = Vec::new();
    collect_refs(&schemas, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(schemas.get(name).is_some(), "dangling reference {r}");
    }
    for name in [
        "Settings",
        "Model",
        "Service",
        "ConfigurationFile",
        "OsInfo",
        "NetworkSettings",
        "HostContainer",
        "ValidLinuxHostname",
        "Lockdown",
    ] {
        assert!(schemas.get(name).is_some(), "missing component {name}");
    }
}

#[test]
fn shared_defaults_pass_the_schema() {
    let validator = validator_for("Settings");
    let defaults = models::shared_defaults();
    let errors: Vec<String> = validator
        .iter_errors(&defaults.settings)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn schema_refuses_unknown_fields_and_bad_seed() {
    let validator = validator_for("Settings");
    assert!(validator.is_valid(&json!({"updates": {"seed": 2047}})));
    assert!(!validator.is_valid(&json!({"updates": {"seed": 2048}})));
    assert!(!validator.is_valid(&json!({"network": {"hostnam": "x"}})));
    assert!(!validator.is_valid(&json!({"network": ["node-1"]})));
    assert!(!validator.is_valid(&json!({"kernel": {"sysctl": {"bad key": "1"}}})));
    assert!(validator.is_valid(&json!({"kernel": {"sysctl": {"net.ipv4.ip_forward": "1"}}})));
}

/// The schema follows the model's name of the DNS search setting, also when the
/// `next-dns-names` feature renames it.
#[test]
fn schema_names_the_dns_search_setting_as_the_model_does() {
    let field = models::settings::DNS_SEARCH_FIELD;
    let other = if field == "search-list" {
        "search-domains"
    } else {
        "search-list"
    };
    let properties = &components()["DnsSettings"]["properties"];
    assert!(properties.get(field).is_some(), "{properties:#}");
    assert!(properties.get(other).is_none(), "{properties:#}");
    let validator = validator_for("Settings");
    assert!(validator.is_valid(&json!({"dns": {(field): ["example.test"]}})));
    assert!(!validator.is_valid(&json!({"dns": {(other): ["example.test"]}})));
}

/// Values the Rust validators accept must match the schema; for each type, the listed values
/// that the schema's pattern alone can tell apart must be refused by it too.
fn agree<T>(good: &[&str], bad_by_pattern: &[&str])
where
    T: utoipa::ToSchema + for<'a> TryFrom<&'a str>,
{
    let name = T::name();
    // Built from the type's own schema: map key types (SysctlKey, ...) are not components.
    let schema = serde_json::to_value(T::schema()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name}: {e}"));
    for value in good {
        assert!(T::try_from(value).is_ok(), "{name}: Rust refuses {value:?}");
        let errors: Vec<String> = validator
            .iter_errors(&json!(value))
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{name}: schema refuses {value:?}: {errors:?}"
        );
    }
    for value in bad_by_pattern {
        assert!(
            T::try_from(value).is_err(),
            "{name}: Rust accepts {value:?}"
        );
        assert!(
            !validator.is_valid(&json!(value)),
            "{name}: schema accepts {value:?}"
        );
    }
}

#[test]
fn patterns_agree_with_validators() {
    agree::<SingleLineString>(
        &["", "hello", "Ünïcödé ✓"],
        &["a\nb", "a\u{2028}b", "a\u{7f}"],
    );
    agree::<ValidBase64>(&["", "aGVsbG8="], &["not base64!"]);
    agree::<ValidLinuxHostname>(&["node-1", "a.b.c"], &["Bad_Host", ""]);
    agree::<Url>(
        &["https://example.com", "pool.ntp.org", "[fd00::1]:123"],
        &["a b", ""],
    );
    agree::<DnsDomain>(&["example.com", "example.com."], &["a_b.com", ""]);
    agree::<SysctlKey>(
        &["net.ipv4.ip_forward", "net/ipv4/conf/eth0.100/rp_filter"],
        &["-net.x", "net..x", "a*b"],
    );
    agree::<KmodKey>(&["nf_conntrack", "dm-verity"], &["-x", "a.b"]);
    agree::<Identifier>(&["admin", "my-container-1"], &["-admin", "a_b"]);
    agree::<FriendlyVersion>(
        &["latest", "1.2.3", "v1.2.3-rc.1+build.5"],
        &["1.2", "01.2.3", "Latest"],
    );
    agree::<Timezone>(
        &["UTC", "America/New_York", "Etc/GMT+5"],
        &["/etc", "a//b", "a.b"],
    );
    agree::<BootConfigKey>(&["console", "systemd.log_level"], &["a..b", "a=b"]);
    agree::<BootConfigValue>(&["", "ttyS0,115200"], &["a b", "\"q\"", "a\tb"]);
    agree::<PemCertificateString>(
        &["LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="],
        &["", "not base64!"],
    );
    // Blocks whose end falls at each of the three places in a base64 group.
    use base64::Engine as _;
    let pems: Vec<String> = ["", "M", "MI", "MII", "MIIB\nAQ=="]
        .iter()
        .map(|body| {
            let text = format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n");
            base64::engine::general_purpose::STANDARD.encode(text)
        })
        .collect();
    let pems: Vec<&str> = pems.iter().map(String::as_str).collect();
    agree::<PemCertificateString>(&pems, &["aGVsbG8K"]);
    agree::<ValidBase64>(
        &["", "aGk=", "aGVsbG8K", "YQ=="],
        &["aGk", "YR==", "a===", "aGV$"],
    );
    agree::<Url>(
        &[
            "http://10.0.0.1:8080/v2/",
            "[fd00::53]",
            "http://[fd00::1]/x",
            "ntp-1.example.com:123",
        ],
        &["pool.ntp.org:0", "1.2.3", "ftp://x"],
    );
    agree::<ImageReference>(
        &["busybox", "registry.example.com/a:v1"],
        &["-rm", "a b", ""],
    );
    agree::<SettingDuration>(
        &[
            "1s",
            "90s",
            "10m",
            "1h30m",
            "2d",
            "1d2h3m4s",
            "99d999h99999m9999999s",
        ],
        &[
            "",
            "0s",
            "30",
            "1 hour",
            "30m1h",
            "1h1h",
            "01h",
            "400d",
            "1000h",
            "100000m",
            "10000000s",
            "1h0m",
        ],
    );
    // The longest duration the grammar allows stays under a year.
    let longest = SettingDuration::try_from("99d999h99999m9999999s").unwrap();
    assert!(longest.seconds() < 366 * 86_400, "{}", longest.seconds());
    agree::<JournalRemoteUrl>(
        &[
            "http://logs.example.com",
            "http://10.0.2.102:19532",
            "http://[fd00::1]:19532",
        ],
        &[
            "logs.example.com",
            "https://logs.example.com:19532",
            "http://logs.example.com/",
            "http://logs.example.com:19532/upload",
            "ftp://logs.example.com",
            "http://[fd00::1]",
            "http://logs.example.com:0",
        ],
    );
    agree::<Lockdown>(&["none", "integrity"], &["full"]);
    agree::<BootstrapContainerMode>(&["once"], &["never"]);
}
