//! The template helpers. Each one is a plain function from its parameters to a JSON value, so it
//! can be unit-tested without handlebars and used both as `{{helper x}}` and as a subexpression
//! `(helper x)`. A helper refuses bad input with a message that starts with its own name; the
//! renderer adds the template and line.
//!
//! | helper | parameters | result |
//! |---|---|---|
//! | `default` | fallback, value | `value`, or `fallback` when `value` is missing or null |
//! | `join` | list, separator | the items of `list` joined by `separator` (missing list: empty) |
//! | `base64_decode` | value | the decoded text (must be UTF-8) |
//! | `toml_escape` | value | a TOML basic string, quotes included |
//! | `json` | value | the value as compact JSON |
//! | `host` | address | the host of `host`, `host:port`, `[v6]:port`, `v6` or a URL |
//! | `port` | address | the explicit port of the same forms, empty when there is none |
//! | `with_scheme` | address, scheme? | the address as a URL: `scheme://` (default `https`) added when missing |
//! | `oci_capabilities` | map | JSON list of the kernel names (`CAP_CHOWN`) of the capabilities set to true in `settings.oci-defaults.capabilities` |
//! | `oci_rlimits` | map | JSON list of OCI rlimits (`{"type","hard","soft"}`) from `settings.oci-defaults.resource-limits` |
//! | `ip_family` | list, 4 or 6 | the addresses or `address/prefix` networks of `list` of that IP version |

use handlebars::{
    Context, Handlebars, Helper, HelperDef, RenderContext, RenderError, RenderErrorReason,
    ScopedJson,
};
use models::modeled_types::{OciCapability, OciResourceLimitType};
use models::OciResourceLimit;
use serde_json::Value;
use std::collections::BTreeMap;

/// What a helper function returns: a value, or the reason its input was refused.
pub type HelperResult = Result<Value, String>;

type HelperFn = fn(&[&Value]) -> HelperResult;

/// A helper made of a plain function and the number of parameters it accepts.
struct Simple {
    name: &'static str,
    min: usize,
    max: usize,
    usage: &'static str,
    function: HelperFn,
}

impl HelperDef for Simple {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let params: Vec<&Value> = h.params().iter().map(|p| p.value()).collect();
        let fail = |reason: String| -> RenderError {
            RenderErrorReason::Other(format!("helper '{}': {reason}", self.name)).into()
        };
        if params.len() < self.min || params.len() > self.max {
            return Err(fail(format!(
                "got {} parameters; use it as {}",
                params.len(),
                self.usage
            )));
        }
        (self.function)(&params)
            .map(ScopedJson::Derived)
            .map_err(fail)
    }
}

/// Registers every helper of this module on `registry`.
pub fn register(registry: &mut Handlebars<'_>) {
    let helpers = [
        Simple {
            name: "default",
            min: 2,
            max: 2,
            usage: "{{default FALLBACK VALUE}}",
            function: |p| default(p[0], p[1]),
        },
        Simple {
            name: "join",
            min: 2,
            max: 2,
            usage: "{{join LIST SEPARATOR}}",
            function: |p| join(p[0], p[1]),
        },
        Simple {
            name: "base64_decode",
            min: 1,
            max: 1,
            usage: "{{base64_decode VALUE}}",
            function: |p| base64_decode(p[0]),
        },
        Simple {
            name: "toml_escape",
            min: 1,
            max: 1,
            usage: "{{toml_escape VALUE}}",
            function: |p| toml_escape(p[0]),
        },
        Simple {
            name: "json",
            min: 1,
            max: 1,
            usage: "{{json VALUE}}",
            function: |p| json(p[0]),
        },
        Simple {
            name: "host",
            min: 1,
            max: 1,
            usage: "{{host ADDRESS}}",
            function: |p| host(p[0]),
        },
        Simple {
            name: "port",
            min: 1,
            max: 1,
            usage: "{{port ADDRESS}}",
            function: |p| port(p[0]),
        },
        Simple {
            name: "with_scheme",
            min: 1,
            max: 2,
            usage: "{{with_scheme ADDRESS [SCHEME]}}",
            function: |p| with_scheme(p[0], p.get(1).copied()),
        },
        Simple {
            name: "oci_capabilities",
            min: 1,
            max: 1,
            usage: "{{oci_capabilities settings.oci-defaults.capabilities}}",
            function: |p| oci_capabilities(p[0]),
        },
        Simple {
            name: "oci_rlimits",
            min: 1,
            max: 1,
            usage: "{{oci_rlimits settings.oci-defaults.resource-limits}}",
            function: |p| oci_rlimits(p[0]),
        },
        Simple {
            name: "ip_family",
            min: 2,
            max: 2,
            usage: "{{ip_family LIST 4}} or {{ip_family LIST 6}}",
            function: |p| ip_family(p[0], p[1]),
        },
    ];
    for helper in helpers {
        registry.register_helper(helper.name, Box::new(helper));
    }
}

/// Text of a scalar for output; `None` for null, an error naming `what` for lists and objects.
fn scalar_text(value: &Value, what: &str) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Bool(_) | Value::Number(_) => Ok(Some(value.to_string())),
        Value::Array(_) | Value::Object(_) => Err(format!(
            "{what} must be a string, number or boolean, not {}",
            kind(value)
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `value` unless it is missing (null), then `fallback`.
pub fn default(fallback: &Value, value: &Value) -> HelperResult {
    Ok(if value.is_null() {
        fallback.clone()
    } else {
        value.clone()
    })
}

/// The items of `list` as text joined by `separator`. A missing list gives an empty string and a
/// lone scalar is treated as a list of one.
pub fn join(list: &Value, separator: &Value) -> HelperResult {
    let separator = match separator {
        Value::String(s) => s.as_str(),
        other => {
            return Err(format!(
                "the separator must be a string such as \" \", not {}",
                kind(other)
            ))
        }
    };
    let items: Vec<&Value> = match list {
        Value::Null => Vec::new(),
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => return Err("the first parameter must be a list, not an object".into()),
        scalar => vec![scalar],
    };
    let mut parts = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        if let Some(text) = scalar_text(item, &format!("list item {index}"))? {
            parts.push(text);
        }
    }
    Ok(Value::String(parts.join(separator)))
}

/// Decodes standard base64 (padding optional, whitespace such as PEM line breaks ignored) into
/// UTF-8 text. Missing gives an empty string.
pub fn base64_decode(value: &Value) -> HelperResult {
    use base64::Engine as _;
    let text = match value {
        Value::Null => return Ok(Value::String(String::new())),
        Value::String(s) => s,
        other => return Err(format!("expected base64 text, not {}", kind(other))),
    };
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine
        .decode(compact.as_bytes())
        .map_err(|e| format!("the value is not valid base64 ({e})"))?;
    String::from_utf8(bytes)
        .map(Value::String)
        .map_err(|_| "the decoded value is not UTF-8 text".to_string())
}

/// The value as a TOML basic string, quotes included, with every character TOML requires escaped.
/// Missing gives `""`.
pub fn toml_escape(value: &Value) -> HelperResult {
    let text = scalar_text(value, "the value")?.unwrap_or_default();
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(Value::String(out))
}

/// The value as compact JSON text (`null` for a missing value).
pub fn json(value: &Value) -> HelperResult {
    serde_json::to_string(value)
        .map(Value::String)
        .map_err(|e| format!("cannot write the value as JSON ({e})"))
}

/// Splits an address into host and explicit port. Accepted forms: `host`, `host:port`, `v4`,
/// `v4:port`, a bare IPv6 address, `[v6]`, `[v6]:port`, and a URL with a scheme (whose path is
/// ignored). IPv6 hosts come back without brackets.
fn split_address(address: &str) -> Result<(String, Option<u16>), String> {
    let address = address.trim();
    if address.is_empty() {
        return Err("the address is empty".into());
    }
    if address.contains("://") {
        let url = url::Url::parse(address)
            .map_err(|e| format!("'{address}' is not a valid URL ({e})"))?;
        let host = url
            .host_str()
            .ok_or_else(|| format!("the URL '{address}' has no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        return Ok((host.to_string(), url.port()));
    }
    let parse_port = |text: &str| -> Result<u16, String> {
        text.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("'{text}' in '{address}' is not a port between 1 and 65535"))
    };
    if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("'{address}' opens '[' without closing it"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("'{host}' in '{address}' is not an IPv6 address"));
        }
        return match after {
            "" => Ok((host.to_string(), None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host.to_string(), Some(parse_port(port)?))),
                None => Err(format!(
                    "expected ':PORT' after ']' in '{address}', found '{after}'"
                )),
            },
        };
    }
    if address.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((address.to_string(), None));
    }
    match address.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => Err(format!(
            "'{address}' has several ':'; write an IPv6 address with a port as [ADDRESS]:PORT"
        )),
        Some(("", _)) => Err(format!("'{address}' has no host before ':'")),
        Some((host, port)) => Ok((host.to_string(), Some(parse_port(port)?))),
        None => Ok((address.to_string(), None)),
    }
}

fn address_text(value: &Value) -> Result<Option<&str>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        other => Err(format!(
            "expected an address such as host:port, not {}",
            kind(other)
        )),
    }
}

/// The host part of an address (see `split_address` for the forms). Missing gives null.
pub fn host(value: &Value) -> HelperResult {
    let Some(address) = address_text(value)? else {
        return Ok(Value::Null);
    };
    split_address(address).map(|(host, _)| Value::String(host))
}

/// The explicit port of an address as a number; null when the address has none or is missing.
pub fn port(value: &Value) -> HelperResult {
    let Some(address) = address_text(value)? else {
        return Ok(Value::Null);
    };
    split_address(address).map(|(_, port)| port.map_or(Value::Null, Value::from))
}

/// The items of `list` (addresses, or networks written `address/prefix`) whose IP version is
/// `family` (4 or 6), in their order. A missing list gives an empty list, so `{{#if}}` over the
/// result says whether there are any. Firewall rules need this: IPv4 and IPv6 sources go to
/// different matches.
pub fn ip_family(list: &Value, family: &Value) -> HelperResult {
    let want_v4 = match family.as_u64() {
        Some(4) => true,
        Some(6) => false,
        _ => return Err(format!("the family must be 4 or 6, not {family}")),
    };
    let items = match list {
        Value::Null => return Ok(Value::Array(Vec::new())),
        Value::Array(items) => items,
        other => return Err(format!("expected a list of addresses, not {}", kind(other))),
    };
    let mut picked = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let Value::String(text) = item else {
            return Err(format!(
                "list item {index} must be an address, not {}",
                kind(item)
            ));
        };
        let address = text.split_once('/').map_or(text.as_str(), |(a, _)| a);
        let address: std::net::IpAddr = address
            .parse()
            .map_err(|_| format!("list item {index} ('{text}') is not an IP address or network"))?;
        if address.is_ipv4() == want_v4 {
            picked.push(item.clone());
        }
    }
    Ok(Value::Array(picked))
}

/// The address as a URL: unchanged when it already has a scheme, else `SCHEME://` prepended
/// (`https` unless given). Missing gives null.
pub fn with_scheme(value: &Value, scheme: Option<&Value>) -> HelperResult {
    let Some(address) = address_text(value)? else {
        return Ok(Value::Null);
    };
    let scheme = match scheme {
        None => "https",
        Some(Value::String(s))
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            s.as_str()
        }
        Some(other) => return Err(format!("'{other}' is not a URL scheme such as \"https\"")),
    };
    let address = address.trim();
    if address.is_empty() {
        return Err("the address is empty".into());
    }
    if address.contains("://") {
        return Ok(Value::String(address.to_string()));
    }
    Ok(Value::String(format!("{scheme}://{address}")))
}

/// Reads a settings map through the model, so the helper takes exactly what the API accepts.
fn typed<T: serde::de::DeserializeOwned + Default>(value: &Value, what: &str) -> Result<T, String> {
    if value.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(value.clone()).map_err(|e| format!("{what} is not valid: {e}"))
}

/// The capabilities set to true, by their kernel names, as compact JSON text; a missing map gives
/// `[]`. The order is the model's (alphabetical), so the same settings give the same file.
pub fn oci_capabilities(value: &Value) -> HelperResult {
    let map: BTreeMap<OciCapability, bool> = typed(value, "the capability map")?;
    let names: Vec<String> = map
        .iter()
        .filter(|(_, on)| **on)
        .map(|(cap, _)| cap.linux_name())
        .collect();
    json(&Value::from(names))
}

/// The resource limits as the OCI spec's `process.rlimits` list, compact JSON text; a missing map
/// gives `[]` and a limit with neither value is left out.
pub fn oci_rlimits(value: &Value) -> HelperResult {
    let map: BTreeMap<OciResourceLimitType, OciResourceLimit> =
        typed(value, "the resource limit map")?;
    let limits: Vec<Value> = map
        .iter()
        .filter_map(|(kind, limit)| {
            let (hard, soft) = limit.to_oci()?;
            Some(serde_json::json!({"type": kind.linux_name(), "hard": hard, "soft": soft}))
        })
        .collect();
    json(&Value::from(limits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_prefers_the_value() {
        assert_eq!(default(&json!("x"), &json!("y")).unwrap(), json!("y"));
        assert_eq!(default(&json!("x"), &Value::Null).unwrap(), json!("x"));
        assert_eq!(default(&json!("x"), &json!(false)).unwrap(), json!(false));
        assert_eq!(default(&json!(3), &json!("")).unwrap(), json!(""));
    }

    #[test]
    fn join_lists_and_refuses_nesting() {
        assert_eq!(join(&json!(["a", "b"]), &json!(" ")).unwrap(), json!("a b"));
        assert_eq!(
            join(&json!([1, true]), &json!(",")).unwrap(),
            json!("1,true")
        );
        assert_eq!(join(&Value::Null, &json!(",")).unwrap(), json!(""));
        assert_eq!(join(&json!("solo"), &json!(",")).unwrap(), json!("solo"));
        assert_eq!(join(&json!([]), &json!(",")).unwrap(), json!(""));
        assert!(join(&json!([["a"]]), &json!(","))
            .unwrap_err()
            .contains("list item 0"));
        assert!(join(&json!({"a": 1}), &json!(","))
            .unwrap_err()
            .contains("must be a list"));
        assert!(join(&json!(["a"]), &json!(1))
            .unwrap_err()
            .contains("separator"));
    }

    #[test]
    fn base64_decodes_text_and_refuses_garbage() {
        assert_eq!(base64_decode(&json!("aGk=")).unwrap(), json!("hi"));
        assert_eq!(base64_decode(&json!("aGk")).unwrap(), json!("hi"));
        assert_eq!(base64_decode(&json!("aG\nk=")).unwrap(), json!("hi"));
        assert_eq!(base64_decode(&Value::Null).unwrap(), json!(""));
        assert!(base64_decode(&json!("not base64!"))
            .unwrap_err()
            .contains("not valid base64"));
        assert!(base64_decode(&json!("//79"))
            .unwrap_err()
            .contains("not UTF-8"));
        assert!(base64_decode(&json!(1)).unwrap_err().contains("a number"));
    }

    #[test]
    fn toml_escape_round_trips_through_toml() {
        for text in [
            "plain",
            "quote \" and \\ back",
            "tab\tnew\nline",
            "bell\u{7}",
            "é",
        ] {
            let escaped = toml_escape(&json!(text)).unwrap();
            let document = format!("v = {}", escaped.as_str().unwrap());
            let parsed: toml::Table = toml::from_str(&document).unwrap();
            assert_eq!(parsed["v"].as_str(), Some(text), "{document}");
        }
        assert_eq!(toml_escape(&json!(5)).unwrap(), json!("\"5\""));
        assert_eq!(toml_escape(&Value::Null).unwrap(), json!("\"\""));
        assert!(toml_escape(&json!(["a"])).unwrap_err().contains("a list"));
    }

    #[test]
    fn json_writes_compact_json() {
        assert_eq!(
            json(&json!({"a": [1, "b"]})).unwrap(),
            json!(r#"{"a":[1,"b"]}"#)
        );
        assert_eq!(json(&Value::Null).unwrap(), json!("null"));
        assert_eq!(json(&json!("q\"")).unwrap(), json!(r#""q\"""#));
    }

    #[test]
    fn host_and_port_of_every_form() {
        let cases: &[(&str, &str, Option<u16>)] = &[
            ("pool.ntp.org", "pool.ntp.org", None),
            ("pool.ntp.org:123", "pool.ntp.org", Some(123)),
            ("10.0.0.1", "10.0.0.1", None),
            ("10.0.0.1:8080", "10.0.0.1", Some(8080)),
            ("fd00::1", "fd00::1", None),
            ("[fd00::1]", "fd00::1", None),
            ("[fd00::1]:123", "fd00::1", Some(123)),
            ("https://pool.ntp.org", "pool.ntp.org", None),
            ("https://pool.ntp.org/", "pool.ntp.org", None),
            ("http://proxy.example:3128/x", "proxy.example", Some(3128)),
            ("http://[fd00::2]:3128", "fd00::2", Some(3128)),
        ];
        for (address, expected_host, expected_port) in cases {
            assert_eq!(
                host(&json!(address)).unwrap(),
                json!(expected_host),
                "{address}"
            );
            assert_eq!(
                port(&json!(address)).unwrap(),
                expected_port.map_or(Value::Null, Value::from),
                "{address}"
            );
        }
        assert_eq!(host(&Value::Null).unwrap(), Value::Null);
        assert_eq!(port(&Value::Null).unwrap(), Value::Null);
    }

    #[test]
    fn host_and_port_refuse_bad_addresses() {
        for (address, expected) in [
            ("", "empty"),
            ("host:http", "not a port"),
            ("host:0", "not a port"),
            ("host:70000", "not a port"),
            (":123", "no host"),
            ("[fd00::1", "without closing"),
            ("[nothost]:1", "not an IPv6 address"),
            ("[fd00::1]x", "expected ':PORT'"),
            ("fd00::1::2:80:x", "several ':'"),
            ("https://", "not a valid URL"),
        ] {
            let message = host(&json!(address)).unwrap_err();
            assert!(message.contains(expected), "{address}: {message}");
        }
        assert!(port(&json!(["a"])).unwrap_err().contains("a list"));
    }

    #[test]
    fn ip_family_splits_sources_by_version() {
        let list = json!(["10.0.0.0/8", "fd00::/8", "192.168.1.7", "::1"]);
        assert_eq!(
            ip_family(&list, &json!(4)).unwrap(),
            json!(["10.0.0.0/8", "192.168.1.7"])
        );
        assert_eq!(
            ip_family(&list, &json!(6)).unwrap(),
            json!(["fd00::/8", "::1"])
        );
        assert_eq!(ip_family(&Value::Null, &json!(4)).unwrap(), json!([]));
        assert!(ip_family(&list, &json!(5)).unwrap_err().contains("4 or 6"));
        assert!(ip_family(&json!(["host"]), &json!(4))
            .unwrap_err()
            .contains("'host'"));
        assert!(ip_family(&json!([1]), &json!(4)).is_err());
    }

    #[test]
    fn with_scheme_adds_a_missing_scheme() {
        assert_eq!(
            with_scheme(&json!("mirror.example"), None).unwrap(),
            json!("https://mirror.example")
        );
        assert_eq!(
            with_scheme(&json!("mirror.example:5000"), Some(&json!("http"))).unwrap(),
            json!("http://mirror.example:5000")
        );
        assert_eq!(
            with_scheme(&json!("http://m.example/v2"), None).unwrap(),
            json!("http://m.example/v2")
        );
        assert_eq!(with_scheme(&Value::Null, None).unwrap(), Value::Null);
        assert!(with_scheme(&json!("m"), Some(&json!("a b")))
            .unwrap_err()
            .contains("not a URL scheme"));
        assert!(with_scheme(&json!(" "), None)
            .unwrap_err()
            .contains("empty"));
    }

    #[test]
    fn oci_capabilities_lists_the_enabled_ones_by_kernel_name() {
        let text =
            oci_capabilities(&json!({"sys-admin": false, "chown": true, "net-bind-service": true}))
                .unwrap();
        let names: Vec<String> = serde_json::from_str(text.as_str().unwrap()).unwrap();
        assert_eq!(names, ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]);
        assert_eq!(oci_capabilities(&Value::Null).unwrap(), json!("[]"));
        let err = oci_capabilities(&json!({"superpowers": true})).unwrap_err();
        assert!(err.contains("superpowers"), "{err}");
    }

    #[test]
    fn oci_rlimits_writes_oci_limits() {
        let text = oci_rlimits(&json!({
            "max-open-files": {"hard-limit": 1048576, "soft-limit": 65536},
            "max-core-file-size": {"hard-limit": -1},
        }))
        .unwrap();
        let limits: Value = serde_json::from_str(text.as_str().unwrap()).unwrap();
        assert_eq!(
            limits,
            json!([
                {"type": "RLIMIT_CORE", "hard": u64::MAX, "soft": u64::MAX},
                {"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 65536},
            ])
        );
        let err = oci_rlimits(&json!({"max-open-files": {"hard-limit": 1, "soft-limit": 2}}))
            .unwrap_err();
        assert!(err.contains("soft-limit 2 is above hard-limit 1"), "{err}");
    }
}
