//! Checking a settings document and naming the offending key.

use crate::error::ValidationError;
use crate::key;
use crate::settings::Settings;
use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Unexpected, Visitor};
use serde_json::Value;
use serde_path_to_error::Segment;

/// The prefix of every settings key.
pub const SETTINGS_PREFIX: &str = "settings";

/// Checks a settings document and turns it into [`Settings`].
///
/// `value` is the JSON *under* `settings`, e.g. `{"motd": "hi"}`; any subset of the tree is
/// accepted, including `{}`. `null` members are read as absent. On refusal the error names the
/// full dotted key (starting with `settings`) and the reason, e.g. `settings.network.hostname:
/// 'Bad_Host' is not a valid hostname: ...`. For an unknown field the key is the unknown field
/// itself and the reason lists the fields allowed at that level. A document whose keys could not
/// be stored is refused too, naming the key: a map key holding `"`, `\` or a control character,
/// or a key longer than the datastore allows (see [`crate::key::check_document_keys`]).
pub fn parse_settings(value: &serde_json::Value) -> Result<Settings, ValidationError> {
    let settings = deserialize_at(value, SETTINGS_PREFIX)?;
    // The typed check passed; now make sure every key (map keys come from the user) can be
    // stored: the datastore takes exactly the keys of `settings-key`'s grammar.
    key::check_document_keys(value, SETTINGS_PREFIX)?;
    Ok(settings)
}

/// Deserializes `value` strictly (see [`Strict`]), naming the failing key under `prefix`.
pub(crate) fn deserialize_at<T: DeserializeOwned>(
    value: &Value,
    prefix: &str,
) -> Result<T, ValidationError> {
    serde_path_to_error::deserialize(Strict(value)).map_err(|err| {
        let mut dotted = prefix.to_string();
        for segment in err.path().iter() {
            match segment {
                Segment::Map { key } => key::push_segment(&mut dotted, key),
                Segment::Enum { variant } => key::push_segment(&mut dotted, variant),
                Segment::Seq { index } => dotted.push_str(&format!("[{index}]")),
                Segment::Unknown => {}
            }
        }
        ValidationError {
            key: dotted,
            reason: err.into_inner().to_string(),
        }
    })
}

/// A view of a JSON value for deserializing, identical to serde_json's own except that a struct
/// is only ever read from an object. (Derived struct deserializers also take a list of the
/// fields in order, so without this `{"network": ["node-1"]}` would set the hostname.)
struct Strict<'a>(&'a Value);

impl<'de> Deserializer<'de> for Strict<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => {
                let mut access = SeqDeserializer::new(items.iter().map(Strict));
                let result = visitor.visit_seq(&mut access)?;
                access.end()?;
                Ok(result)
            }
            Value::Object(map) => {
                let mut access =
                    MapDeserializer::new(map.iter().map(|(k, v)| (k.as_str(), Strict(v))));
                let result = visitor.visit_map(&mut access)?;
                access.end()?;
                Ok(result)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(_) => Err(de::Error::invalid_type(Unexpected::Seq, &visitor)),
            _ => self.deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, serde_json::Error> for Strict<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::DNS_SEARCH_FIELD;
    use serde_json::json;

    fn refusal(value: serde_json::Value) -> ValidationError {
        parse_settings(&value).expect_err("should be refused")
    }

    #[test]
    fn empty_object_is_valid() {
        assert_eq!(parse_settings(&json!({})).unwrap(), Settings::default());
    }

    #[test]
    fn full_document_round_trips() {
        let document = json!({
            "motd": "Welcome!",
            "network": {
                "hostname": "node-1",
                "http-proxy": "http://proxy.internal:3128",
                "https-proxy": "proxy.internal:3128",
                "no-proxy": ["localhost", "10.0.0.0/8", ".internal"]
            },
            "dns": {
                "name-servers": ["10.0.0.2", "fd00::53"],
                (DNS_SEARCH_FIELD): ["corp.example.com", "example.com"]
            },
            "ntp": { "time-servers": ["pool.ntp.org", "10.0.0.1:123"] },
            "kernel": {
                "sysctl": { "net.ipv4.ip_forward": "1", "vm.max_map_count": "262144" },
                "modules": { "sctp": { "allowed": false } },
                "lockdown": "integrity"
            },
            "timezone": "America/New_York",
            "updates": {
                "metadata-base-url": "https://updates.example.com/metadata/",
                "targets-base-url": "https://updates.example.com/targets/",
                "seed": 2047,
                "version-lock": "v1.2.3",
                "ignore-waves": true
            },
            "host-containers": {
                "admin": {
                    "source": "registry.example.com/admin:v1",
                    "enabled": false,
                    "superpowered": true,
                    "user-data": "e30="
                }
            },
            "bootstrap-containers": {
                "setup": {
                    "source": "registry.example.com/setup:v1",
                    "mode": "once",
                    "essential": true,
                    "user-data": ""
                }
            },
            "container-registry": {
                "mirrors": [
                    { "registry": "docker.io", "endpoint": ["https://mirror.example.com"] }
                ],
                "credentials": [
                    { "registry": "registry.example.com", "username": "u", "password": "p" },
                    { "registry": "other.example.com", "auth": "dTpw" },
                    { "registry": "third.example.com", "identitytoken": "tok" }
                ]
            },
            "pki": {
                "corp-ca": {
                    "data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=",
                    "trusted": true
                }
            },
            "boot": {
                "reboot-to-reconcile": true,
                "kernel-parameters": { "console": ["tty0", "ttyS0,115200"], "quiet": [] },
                "init-parameters": { "systemd.log_level": ["debug"] }
            },
            "logs": { "remote": { "url": "http://logs.example.com:19532", "enabled": true } }
        });
        let settings = parse_settings(&document).unwrap();
        assert_eq!(
            settings
                .network
                .as_ref()
                .unwrap()
                .hostname
                .as_ref()
                .unwrap(),
            "node-1"
        );
        let back = serde_json::to_value(&settings).unwrap();
        assert_eq!(back, document);
        assert_eq!(parse_settings(&back).unwrap(), settings);
    }

    #[test]
    fn none_fields_are_not_serialized() {
        let settings = parse_settings(&json!({"network": {"hostname": "a"}})).unwrap();
        assert_eq!(
            serde_json::to_value(&settings).unwrap(),
            json!({"network": {"hostname": "a"}})
        );
    }

    #[test]
    fn bad_value_names_key_and_reason() {
        let err = refusal(json!({"network": {"hostname": "Bad_Host"}}));
        assert_eq!(err.key, "settings.network.hostname");
        assert!(
            err.reason
                .starts_with("'Bad_Host' is not a valid hostname: "),
            "{}",
            err.reason
        );
        assert_eq!(err.to_string(), format!("{}: {}", err.key, err.reason));
    }

    #[test]
    fn unknown_field_names_itself_and_the_allowed_ones() {
        let err = refusal(json!({"network": {"hostnam": "x"}}));
        assert_eq!(err.key, "settings.network.hostnam");
        assert!(
            err.reason.contains("unknown field `hostnam`"),
            "{}",
            err.reason
        );
        assert!(err.reason.contains("`hostname`"), "{}", err.reason);

        let err = refusal(json!({"nope": 1}));
        assert_eq!(err.key, "settings.nope");
        assert!(err.reason.contains("`motd`"), "{}", err.reason);
    }

    /// The `next-dns-names` feature renames the field without an alias: each model accepts its
    /// own name only, so a store holding the other one is refused instead of read quietly.
    #[test]
    fn the_dns_search_setting_has_exactly_one_name_per_model() {
        let other = if DNS_SEARCH_FIELD == "search-list" {
            "search-domains"
        } else {
            "search-list"
        };
        assert_eq!(
            DNS_SEARCH_FIELD,
            if cfg!(feature = "next-dns-names") {
                "search-domains"
            } else {
                "search-list"
            }
        );
        let settings =
            parse_settings(&json!({"dns": {(DNS_SEARCH_FIELD): ["example.test"]}})).unwrap();
        assert_eq!(
            settings.dns.as_ref().unwrap().search_list.as_ref().unwrap()[0],
            "example.test"
        );
        let round_trip = serde_json::to_value(&settings).unwrap();
        assert_eq!(
            round_trip,
            json!({"dns": {(DNS_SEARCH_FIELD): ["example.test"]}})
        );
        let err = refusal(json!({"dns": {(other): ["example.test"]}}));
        assert_eq!(err.key, format!("settings.dns.{other}"));
        assert!(
            err.reason.contains(&format!("`{DNS_SEARCH_FIELD}`")),
            "{}",
            err.reason
        );
    }

    #[test]
    fn wrong_type_uses_serde_reason() {
        let err = refusal(json!({"motd": 5}));
        assert_eq!(err.key, "settings.motd");
        assert_eq!(
            err.reason,
            "invalid type: integer `5`, expected a string (single-line string)"
        );
        let err = refusal(json!({"updates": {"ignore-waves": "yes"}}));
        assert_eq!(err.key, "settings.updates.ignore-waves");
        assert!(err.reason.contains("expected a boolean"), "{}", err.reason);
        let err = refusal(json!(["not", "an", "object"]));
        assert_eq!(err.key, "settings");
        assert_eq!(
            err.reason,
            "invalid type: sequence, expected struct Settings"
        );
        let err = refusal(json!("motd"));
        assert_eq!(err.key, "settings");
        assert_eq!(
            err.reason,
            "invalid type: string \"motd\", expected struct Settings"
        );
    }

    #[test]
    fn structs_are_never_read_from_lists() {
        let err = refusal(json!({"network": ["node-1"]}));
        assert_eq!(err.key, "settings.network");
        assert_eq!(
            err.reason,
            "invalid type: sequence, expected struct NetworkSettings"
        );
        let err = refusal(json!({"kernel": {"modules": {"sctp": [false]}}}));
        assert_eq!(err.key, "settings.kernel.modules.sctp");
        let err = refusal(json!({"container-registry": {"mirrors": [["docker.io", []]]}}));
        assert_eq!(err.key, "settings.container-registry.mirrors[0]");
    }

    #[test]
    fn null_members_are_absent() {
        assert_eq!(
            parse_settings(&json!({"motd": null, "network": {"hostname": null}})).unwrap(),
            Settings {
                network: Some(Default::default()),
                ..Default::default()
            }
        );
    }

    #[test]
    fn map_keys_with_dots_are_quoted() {
        let err = refusal(json!({"kernel": {"sysctl": {"net.ipv4.ip_forward": "1\n"}}}));
        assert_eq!(err.key, r#"settings.kernel.sysctl."net.ipv4.ip_forward""#);
        assert!(err.reason.contains("line break"), "{}", err.reason);
    }

    #[test]
    fn bad_map_keys_are_named() {
        let err = refusal(json!({"kernel": {"sysctl": {"bad key": "1"}}}));
        assert_eq!(err.key, r#"settings.kernel.sysctl."bad key""#);
        assert!(
            err.reason.contains("is not a valid sysctl key"),
            "{}",
            err.reason
        );

        let err = refusal(json!({"host-containers": {"-x": {"enabled": true}}}));
        assert_eq!(err.key, "settings.host-containers.-x");
        assert!(
            err.reason.contains("is not a valid identifier"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn list_elements_are_indexed() {
        let err = refusal(json!({"ntp": {"time-servers": ["pool.ntp.org", "ftp://x"]}}));
        assert_eq!(err.key, "settings.ntp.time-servers[1]");
        let err = refusal(json!({"dns": {"name-servers": ["10.0.0.2", "10.0.0.300"]}}));
        assert_eq!(err.key, "settings.dns.name-servers[1]");
        assert!(
            err.reason
                .starts_with("'10.0.0.300' is not a valid IP address"),
            "{}",
            err.reason
        );
        let err = refusal(
            json!({"container-registry": {"mirrors": [{"registry": "a", "endpoint": ["ftp://m"]}]}}),
        );
        assert_eq!(
            err.key,
            "settings.container-registry.mirrors[0].endpoint[0]"
        );
    }

    #[test]
    fn seed_range_is_enforced() {
        for seed in [0, 1000, 2047] {
            parse_settings(&json!({"updates": {"seed": seed}})).unwrap();
        }
        let err = refusal(json!({"updates": {"seed": 2048}}));
        assert_eq!(err.key, "settings.updates.seed");
        assert_eq!(
            err.reason,
            "'2048' is not a valid update seed: it must be a whole number between 0 and 2047"
        );
        // A whole number written with a zero fraction is that number (JSON Schema's integer).
        let settings = parse_settings(&json!({"updates": {"seed": 1455.0}})).unwrap();
        assert_eq!(settings.updates.unwrap().seed, Some(1455));
        refusal(json!({"updates": {"seed": 1455.5}}));
        let err = refusal(json!({"updates": {"seed": -1}}));
        assert_eq!(err.key, "settings.updates.seed");
        let err = refusal(json!({"updates": {"seed": "7"}}));
        assert_eq!(err.key, "settings.updates.seed");
    }

    #[test]
    fn update_policy_settings_round_trip() {
        let document = json!({"updates": {
            "policy": "auto",
            "check-interval": "1h30m",
            "maintenance-windows": {"nightly": {
                "days": ["mon", "sat"], "start": "23:30", "length": "2h",
                "time-zone": "Europe/Paris"
            }},
            "fleet-lock": {"url": "https://fleetlock.example.com:8443/", "group": "workers"},
            "pause-until": "2025-03-01T10:00:00Z"
        }});
        let settings = parse_settings(&document).unwrap();
        let updates = settings.updates.as_ref().unwrap();
        assert_eq!(updates.check_interval.as_ref().unwrap().seconds(), 5400);
        let window = &updates.maintenance_windows.as_ref().unwrap()["nightly"];
        assert_eq!(window.start.as_ref().unwrap().hour_minute(), (23, 30));
        assert!(updates
            .pause_until
            .as_ref()
            .unwrap()
            .paused()
            .unwrap()
            .is_some());
        assert_eq!(serde_json::to_value(&settings).unwrap(), document);
        for pause in ["none", "indefinite"] {
            parse_settings(&json!({"updates": {"pause-until": pause}})).unwrap();
        }
    }

    #[test]
    fn bad_update_policy_settings_name_the_key() {
        let cases = [
            (
                json!({"policy": "sometimes"}),
                "settings.updates.policy",
                "expected one of manual, check, stage, auto",
            ),
            (
                json!({"check-interval": "1 hour"}),
                "settings.updates.check-interval",
                "units in the order d, h, m, s",
            ),
            (
                json!({"check-interval": "0s"}),
                "settings.updates.check-interval",
                "units of zero",
            ),
            (
                json!({"check-interval": "30"}),
                "settings.updates.check-interval",
                "without a unit",
            ),
            (
                json!({"maintenance-windows": {"w": {"start": "25:00"}}}),
                "settings.updates.maintenance-windows.w.start",
                "hour 25 is past 23",
            ),
            (
                json!({"maintenance-windows": {"w": {"start": "2:00"}}}),
                "settings.updates.maintenance-windows.w.start",
                "HH:MM",
            ),
            (
                json!({"maintenance-windows": {"w": {"start": "02:60"}}}),
                "settings.updates.maintenance-windows.w.start",
                "minute 60",
            ),
            (
                json!({"maintenance-windows": {"w": {"days": ["monday"]}}}),
                "settings.updates.maintenance-windows.w.days[0]",
                "mon, tue",
            ),
            (
                json!({"maintenance-windows": {"w": {"length": "400d"}}}),
                "settings.updates.maintenance-windows.w.length",
                "at most 2 digits",
            ),
            (
                json!({"maintenance-windows": {"w": {"time-zone": "../x"}}}),
                "settings.updates.maintenance-windows.w.time-zone",
                "..",
            ),
            (
                json!({"maintenance-windows": {"-w": {}}}),
                "settings.updates.maintenance-windows.-w",
                "identifier",
            ),
            (
                json!({"fleet-lock": {"url": "not a url"}}),
                "settings.updates.fleet-lock.url",
                "absolute URL",
            ),
            (
                json!({"fleet-lock": {"url": "fleetlock.example.com"}}),
                "settings.updates.fleet-lock.url",
                "absolute URL",
            ),
            (
                json!({"fleet-lock": {"url": "ftp://x.example.com/"}}),
                "settings.updates.fleet-lock.url",
                "scheme 'ftp'",
            ),
            (
                json!({"fleet-lock": {"group": "a b"}}),
                "settings.updates.fleet-lock.group",
                "identifier",
            ),
            (
                json!({"pause-until": "tomorrow"}),
                constants::UPDATES_PAUSE_UNTIL_KEY,
                "RFC 3339",
            ),
        ];
        for (updates, key, reason) in cases {
            let err = refusal(json!({ "updates": updates }));
            assert_eq!(err.key, key, "for {updates}: {err}");
            assert!(err.reason.contains(reason), "for {updates}: {err}");
        }
    }

    #[test]
    fn remote_logs_url_is_checked_by_key() {
        let settings =
            parse_settings(&json!({"logs": {"remote": {"url": "http://10.0.2.102:19532"}}}))
                .unwrap();
        let url = settings.logs.unwrap().remote.unwrap().url.unwrap();
        assert_eq!(url.as_str(), "http://10.0.2.102:19532");
        // Unset (null) is no shipping, and valid.
        parse_settings(&json!({"logs": {"remote": {"url": null}}})).unwrap();
        let cases = [
            ("ftp://logs.example.com", "scheme 'ftp'"),
            ("https://logs.example.com", "client certificate"),
            ("logs.example.com", "has no scheme"),
            ("http://logs.example.com/upload", "adds /upload itself"),
            ("http://logs.example.com:99999", "port '99999'"),
        ];
        for (url, reason) in cases {
            let err = refusal(json!({"logs": {"remote": {"url": url}}}));
            assert_eq!(err.key, constants::LOGS_REMOTE_URL_KEY, "for {url}: {err}");
            assert!(err.reason.contains(reason), "for {url}: {err}");
        }
        let err = refusal(json!({"logs": {"remote": {"enabled": "no"}}}));
        assert_eq!(err.key, "settings.logs.remote.enabled");
        let err = refusal(json!({"logs": {"remote": {"address": "x"}}}));
        assert_eq!(err.key, "settings.logs.remote.address");
        assert!(err.reason.contains("`url`"), "{}", err.reason);
    }

    #[test]
    fn health_checks_are_checked_by_key() {
        let settings = parse_settings(&json!({"health": {
            "units": ["containerd.service", "kubelet.socket"],
            "probes": {"app": {"url": "http://127.0.0.1:8080/healthz", "timeout": "3s"},
                       "six": {"url": "http://[::1]/"}},
            "boot-wait": "90s"
        }}))
        .unwrap();
        let health = settings.health.unwrap();
        assert_eq!(health.units.unwrap()[0].as_str(), "containerd.service");
        // A command probe, and its halves alone (key=value sets stage one pair at a time).
        for probe in [
            json!({"command": ["sh", "-c", "pgrep app"], "container": "control", "timeout": "2s"}),
            json!({"command": ["true"]}),
            json!({"container": "control"}),
        ] {
            let settings =
                parse_settings(&json!({"health": {"probes": {"app": probe.clone()}}})).unwrap();
            let back = serde_json::to_value(&settings).unwrap();
            assert_eq!(back["health"]["probes"]["app"], probe);
        }
        assert_eq!(health.boot_wait.unwrap().seconds(), 90);
        let cases = [
            (
                json!({"units": ["containerd"]}),
                "settings.health.units",
                "unit type",
            ),
            (
                json!({"units": ["-x.service"]}),
                "settings.health.units",
                "must not start",
            ),
            (
                json!({"units": ["a b.service"]}),
                "settings.health.units",
                "U+0020",
            ),
            (
                json!({"probes": {"app": {"url": "http://10.0.0.1/"}}}),
                "settings.health.probes.app.url",
                "not the node",
            ),
            (
                json!({"probes": {"app": {"url": "https://127.0.0.1/"}}}),
                "settings.health.probes.app.url",
                "scheme 'https'",
            ),
            (
                json!({"probes": {"app": {"timeout": "soon"}}}),
                "settings.health.probes.app.timeout",
                "",
            ),
            (
                json!({"probes": {"-bad": {}}}),
                "settings.health.probes.-bad",
                "",
            ),
            (json!({"boot-wait": 5}), "settings.health.boot-wait", ""),
            (
                json!({"probes": {"app": {"command": "pgrep app"}}}),
                "settings.health.probes.app.command",
                "",
            ),
            (
                json!({"probes": {"app": {"command": ["true"], "container": "-x"}}}),
                "settings.health.probes.app.container",
                "must not start",
            ),
            (
                json!({"commands": []}),
                "settings.health.commands",
                "`units`",
            ),
        ];
        for (health, key, reason) in cases {
            let err = refusal(json!({ "health": health }));
            assert!(err.key.starts_with(key), "for {health}: {err}");
            assert!(err.reason.contains(reason), "for {health}: {err}");
        }
    }

    #[test]
    fn workload_runtime_settings_round_trip() {
        let document = json!({
            "oci-defaults": {
                "capabilities": {"chown": true, "net-raw": false, "sys-admin": true},
                "resource-limits": {
                    "max-open-files": {"hard-limit": 1048576, "soft-limit": 65536},
                    "max-core-file-size": {"hard-limit": -1, "soft-limit": -1},
                    "max-processes": {"hard-limit": 100}
                }
            },
            "container-runtime": {
                "max-concurrent-downloads": 3,
                "enable-unprivileged-ports": true,
                "enable-unprivileged-icmp": false,
                "max-container-log-line-size": -1,
                "pause-image": "registry.example.com/pause:3.9"
            }
        });
        let settings = parse_settings(&document).unwrap();
        assert_eq!(serde_json::to_value(&settings).unwrap(), document);
        let limits = settings.oci_defaults.unwrap().resource_limits.unwrap();
        use crate::modeled_types::OciResourceLimitType as R;
        assert_eq!(
            limits[&R::MaxCoreFileSize].to_oci(),
            Some((u64::MAX, u64::MAX))
        );
        assert_eq!(limits[&R::MaxProcesses].to_oci(), Some((100, 100)));
        assert_eq!(R::MaxOpenFiles.linux_name(), "RLIMIT_NOFILE");
        assert_eq!(
            crate::modeled_types::OciCapability::NetBindService.linux_name(),
            "CAP_NET_BIND_SERVICE"
        );
    }

    #[test]
    fn bad_workload_runtime_settings_name_the_key() {
        let cases = [
            (
                json!({"oci-defaults": {"capabilities": {"chown": "yes"}}}),
                "settings.oci-defaults.capabilities.chown",
                "invalid type",
            ),
            (
                json!({"oci-defaults": {"capabilities": {"superpowers": true}}}),
                "settings.oci-defaults.capabilities.superpowers",
                "'superpowers' is not a valid capability",
            ),
            (
                json!({"oci-defaults": {"resource-limits": {"max-files": {"hard-limit": 1}}}}),
                "settings.oci-defaults.resource-limits.max-files",
                "'max-files' is not a valid resource limit",
            ),
            (
                json!({"oci-defaults": {"resource-limits": {"max-open-files": {"hard-limit": -2}}}}),
                "settings.oci-defaults.resource-limits.max-open-files.hard-limit",
                "-1 (unlimited) or a whole number",
            ),
            (
                json!({"oci-defaults": {"resource-limits": {"max-open-files":
                    {"hard-limit": 1024, "soft-limit": 4096}}}}),
                "settings.oci-defaults.resource-limits.max-open-files",
                "soft-limit 4096 is above hard-limit 1024",
            ),
            (
                json!({"oci-defaults": {"resource-limits": {"max-open-files":
                    {"hard-limit": 1024, "soft-limit": -1}}}}),
                "settings.oci-defaults.resource-limits.max-open-files",
                "soft-limit -1 is above hard-limit 1024",
            ),
            (
                json!({"oci-defaults": {"resource-limits": {"max-open-files": {"hard": 1}}}}),
                "settings.oci-defaults.resource-limits.max-open-files.hard",
                "unknown field `hard`",
            ),
            (
                json!({"container-runtime": {"max-concurrent-downloads": 0}}),
                "settings.container-runtime.max-concurrent-downloads",
                "from 1 to 1024",
            ),
            (
                json!({"container-runtime": {"max-concurrent-downloads": 2.5}}),
                "settings.container-runtime.max-concurrent-downloads",
                "from 1 to 1024",
            ),
            (
                json!({"container-runtime": {"max-container-log-line-size": 0}}),
                "settings.container-runtime.max-container-log-line-size",
                "-1 (no limit)",
            ),
            (
                json!({"container-runtime": {"enable-unprivileged-ports": "true"}}),
                "settings.container-runtime.enable-unprivileged-ports",
                "invalid type",
            ),
            (
                json!({"container-runtime": {"pause-image": "pause image"}}),
                "settings.container-runtime.pause-image",
                "whitespace",
            ),
            (
                json!({"container-runtime": {"snapshotter": "overlayfs"}}),
                "settings.container-runtime.snapshotter",
                "unknown field",
            ),
        ];
        for (document, key, reason) in cases {
            let err = refusal(document.clone());
            assert_eq!(err.key, key, "for {document}: {err}");
            assert!(err.reason.contains(reason), "for {document}: {err}");
        }
    }

    #[test]
    fn each_group_refuses_bad_values_by_key() {
        let cases = [
            (json!({"motd": "a\u{2028}b"}), "settings.motd"),
            (
                json!({"network": {"http-proxy": "socks5://p:1080"}}),
                "settings.network.http-proxy",
            ),
            (
                json!({"network": {"no-proxy": ["ok", "bad\n"]}}),
                "settings.network.no-proxy[1]",
            ),
            (
                json!({"dns": {(DNS_SEARCH_FIELD): ["a..b"]}}),
                &format!("settings.dns.{DNS_SEARCH_FIELD}[0]"),
            ),
            (
                json!({"kernel": {"modules": {"sctp": {"allowed": "no"}}}}),
                "settings.kernel.modules.sctp.allowed",
            ),
            (
                json!({"kernel": {"modules": {"a.b": {"allowed": true}}}}),
                "settings.kernel.modules.\"a.b\"",
            ),
            (
                json!({"kernel": {"lockdown": "full"}}),
                "settings.kernel.lockdown",
            ),
            (json!({"timezone": "../etc"}), "settings.timezone"),
            (
                json!({"updates": {"metadata-base-url": "file:///x"}}),
                "settings.updates.metadata-base-url",
            ),
            (
                json!({"updates": {"version-lock": "1.2"}}),
                "settings.updates.version-lock",
            ),
            (
                json!({"host-containers": {"admin": {"source": "a b"}}}),
                "settings.host-containers.admin.source",
            ),
            (
                json!({"host-containers": {"admin": {"user-data": "!!"}}}),
                "settings.host-containers.admin.user-data",
            ),
            (
                json!({"host-containers": {"admin": {"superpowers": true}}}),
                "settings.host-containers.admin.superpowers",
            ),
            (
                json!({"bootstrap-containers": {"b": {"mode": "never"}}}),
                "settings.bootstrap-containers.b.mode",
            ),
            (
                json!({"container-registry": {"credentials": [{"auth": "%%"}]}}),
                "settings.container-registry.credentials[0].auth",
            ),
            (
                json!({"pki": {"ca": {"data": "aGVsbG8="}}}),
                "settings.pki.ca.data",
            ),
            (
                json!({"boot": {"kernel-parameters": {"console": ["a b"]}}}),
                "settings.boot.kernel-parameters.console[0]",
            ),
            (
                json!({"boot": {"init-parameters": {"a..b": []}}}),
                "settings.boot.init-parameters.\"a..b\"",
            ),
        ];
        for (document, key) in cases {
            let err = refusal(document.clone());
            assert_eq!(err.key, key, "for {document}: {err}");
        }
    }
}
