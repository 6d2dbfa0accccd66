//! `set`: changes some settings and applies them at once.
//!
//! Two input forms:
//!
//! * `KEY=VALUE` pairs, sent as `PATCH /settings/keypair?tx=…` with
//!   `{"request_payload": ["settings.motd=hi", …]}`.  The server chooses the value's type.
//!   Keys may be given with or without the `settings.` prefix; they are always sent with it.
//!   A server without that route (Bottlerocket before it added one answers 404) gets the
//!   pairs as one typed object on `PATCH /settings` instead, each value typed the way
//!   Bottlerocket's apiclient did it before the route existed (see [`typed_value`]).
//! * a JSON object, sent as `PATCH /settings?tx=…`.  An outer `{"settings": …}` is removed.
//!
//! Either way the transaction (`apiclient-set-<random>`) is then committed and applied with
//! `POST /tx/commit_and_apply?tx=…`.  If anything fails once the PATCH has been sent, the
//! transaction is deleted again (`DELETE /tx?tx=…`) so no half-done changes stay pending.

use crate::error::{self, Error, Result};
use crate::{check_status, raw_request, request, tx};
use serde_json::{Map, Value};
use snafu::{OptionExt, ResultExt};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use tracing::debug;

/// The prefix every settings key has in the datastore.
pub const SETTINGS_PREFIX: &str = "settings.";

/// One `KEY=VALUE` argument.  The key always carries the `settings.` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub key: String,
    pub value: String,
}

impl FromStr for KeyPair {
    type Err = Error;

    /// Splits at the first `=`, so values may contain `=` themselves.  The value may be empty.
    fn from_str(input: &str) -> Result<Self> {
        let (key, value) = input
            .split_once('=')
            .context(error::KeyPairNoEqualsSnafu { input })?;
        let bare = key.strip_prefix(SETTINGS_PREFIX).unwrap_or(key);
        if bare.is_empty() {
            return error::KeyPairEmptyKeySnafu { input }.fail();
        }
        Ok(KeyPair {
            key: normalize_key(key),
            value: value.to_string(),
        })
    }
}

impl fmt::Display for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// Adds the `settings.` prefix to a key that doesn't have it.
pub fn normalize_key(key: &str) -> String {
    if key.starts_with(SETTINGS_PREFIX) {
        key.to_string()
    } else {
        format!("{SETTINGS_PREFIX}{key}")
    }
}

/// What to set.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingsInput {
    /// Individual keys; the server infers each value's type.
    KeyPairs(Vec<KeyPair>),
    /// A (partial) settings object, without the outer `settings` key.
    Json(Map<String, Value>),
}

/// Parses the text of `set --json` into a settings object; see [`settings_object`].
pub fn parse_json_settings(text: &str) -> Result<Map<String, Value>> {
    let value: Value = serde_json::from_str(text).context(error::SetJsonParseSnafu)?;
    settings_object(value)
}

/// Accepts `{"motd": …}` or `{"settings": {"motd": …}}` and returns the inner object.
///
/// An outer `settings` key next to other keys is refused, because it's unclear which was meant
/// (there is no setting named `settings`).
pub fn settings_object(value: Value) -> Result<Map<String, Value>> {
    let Value::Object(mut map) = value else {
        return error::SetJsonNotObjectSnafu.fail();
    };
    if !map.contains_key("settings") {
        return Ok(map);
    }
    if map.len() > 1 {
        let others = map
            .keys()
            .filter(|key| key.as_str() != "settings")
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        return error::SetJsonMixedSnafu { others }.fail();
    }
    match map.remove("settings") {
        Some(Value::Object(inner)) => Ok(inner),
        _ => error::SetJsonSettingsNotObjectSnafu.fail(),
    }
}

/// The body of `PATCH /settings/keypair`.
pub fn keypair_body(pairs: &[KeyPair]) -> Result<String> {
    let payload: Vec<String> = pairs.iter().map(KeyPair::to_string).collect();
    serde_json::to_string(&serde_json::json!({ "request_payload": payload }))
        .context(error::SerializeBodySnafu)
}

/// The JSON value a `KEY=VALUE` value stands for when the client has to choose (see
/// [`keypairs_to_object`]): `true`/`false`, else a whole number from 0 up, else any other
/// number, each read as JSON; anything else is the text itself.  These are the rules of
/// Bottlerocket's apiclient before the server took over the typing, so `motd=42` sends the
/// number 42 (which a string setting refuses; use `--json` then), and lists are sent as text.
pub fn typed_value(raw: &str) -> Value {
    if let Ok(b) = serde_json::from_str::<bool>(raw) {
        Value::Bool(b)
    } else if let Ok(n) = serde_json::from_str::<u64>(raw) {
        Value::from(n)
    } else if let Some(n) = serde_json::from_str::<f64>(raw)
        .ok()
        .and_then(serde_json::Number::from_f64)
    {
        Value::Number(n)
    } else {
        Value::String(raw.to_string())
    }
}

/// The settings object (without the outer `settings`) that `PATCH /settings` takes for these
/// pairs: each key split into its segments (quoted segments may hold dots) and nested, each
/// value typed by [`typed_value`].  When two pairs overlap, the later one wins.
pub fn keypairs_to_object(pairs: &[KeyPair]) -> Result<Map<String, Value>> {
    let mut object = Map::new();
    for pair in pairs {
        let segments = settings_key::split(&pair.key).context(error::KeyPairKeySnafu {
            input: pair.to_string(),
        })?;
        // Every key carries the "settings" segment (see `normalize_key`); the body leaves it off.
        let Some((last, parents)) = segments[1..].split_last() else {
            return error::KeyPairEmptyKeySnafu {
                input: pair.to_string(),
            }
            .fail();
        };
        let mut level = &mut object;
        for segment in parents {
            let slot = level
                .entry(segment.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            let Value::Object(inner) = slot else {
                unreachable!("made an object just above")
            };
            level = inner;
        }
        level.insert(last.clone(), typed_value(&pair.value));
    }
    Ok(object)
}

/// The URI and body of the PATCH that stages `input` in `transaction`.
pub fn patch_request(input: &SettingsInput, transaction: &str) -> Result<(String, String)> {
    match input {
        SettingsInput::KeyPairs(pairs) => {
            if pairs.is_empty() {
                return error::NothingToSetSnafu.fail();
            }
            Ok((
                tx::with_tx("/settings/keypair", transaction),
                keypair_body(pairs)?,
            ))
        }
        SettingsInput::Json(map) => {
            if map.is_empty() {
                return error::NothingToSetSnafu.fail();
            }
            let body = serde_json::to_string(map).context(error::SerializeBodySnafu)?;
            Ok((tx::with_tx("/settings", transaction), body))
        }
    }
}

/// Stages `input` in a new transaction, then commits and applies it.  Returns the transaction's
/// name.
pub async fn set(socket_path: impl AsRef<Path>, input: &SettingsInput) -> Result<String> {
    set_and(socket_path, input, tx::Finish::CommitAndApply)
        .await
        .map(|(transaction, _)| transaction)
}

/// Stages `input` in a new transaction and finishes it as asked.  Returns the transaction's name
/// and the server's answer (changed keys, or the dry-run preview).
pub async fn set_and(
    socket_path: impl AsRef<Path>,
    input: &SettingsInput,
    how: tx::Finish,
) -> Result<(String, String)> {
    let socket_path = socket_path.as_ref();
    let transaction = tx::transaction_name("set");
    let (uri, body) = patch_request(input, &transaction)?;
    let stage = stage(socket_path, input, &transaction, uri, body);
    let answer = tx::stage_and_finish(socket_path, &transaction, how, stage).await?;
    Ok((transaction, answer))
}

/// Sends the PATCH; when a server has no `PATCH /settings/keypair` (404), sends the pairs as a
/// typed object to `PATCH /settings` instead.
async fn stage(
    socket_path: &Path,
    input: &SettingsInput,
    transaction: &str,
    uri: String,
    body: String,
) -> Result<()> {
    let (status, answer) = raw_request(socket_path, &uri, "PATCH", Some(body)).await?;
    if let (SettingsInput::KeyPairs(pairs), 404) = (input, status) {
        debug!(
            "The server has no PATCH /settings/keypair (404); sending the values typed by \
             apiclient to PATCH /settings"
        );
        let object = keypairs_to_object(pairs)?;
        let body = serde_json::to_string(&object).context(error::SerializeBodySnafu)?;
        let uri = tx::with_tx("/settings", transaction);
        request(socket_path, &uri, "PATCH", Some(body)).await?;
        return Ok(());
    }
    check_status("PATCH", &uri, status, &answer)
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_get_the_settings_prefix() {
        let pair: KeyPair = "motd=hello".parse().unwrap();
        assert_eq!(pair.key, "settings.motd");
        assert_eq!(pair.value, "hello");
        let pair: KeyPair = "settings.motd=hello".parse().unwrap();
        assert_eq!(pair.key, "settings.motd");
        assert_eq!(pair.to_string(), "settings.motd=hello");
    }

    #[test]
    fn values_keep_everything_after_the_first_equals() {
        let pair: KeyPair = "kernel.sysctl.\"net.core.x\"=a=b".parse().unwrap();
        assert_eq!(pair.key, "settings.kernel.sysctl.\"net.core.x\"");
        assert_eq!(pair.value, "a=b");
        let pair: KeyPair = "motd=".parse().unwrap();
        assert_eq!(pair.value, "");
        let pair: KeyPair = "motd= spaced ".parse().unwrap();
        assert_eq!(pair.value, " spaced ");
    }

    #[test]
    fn bad_pairs_are_refused() {
        let err = "motd".parse::<KeyPair>().unwrap_err();
        assert!(matches!(err, Error::KeyPairNoEquals { .. }));
        assert!(err.to_string().contains("expected KEY=VALUE"), "{err}");
        assert!(matches!(
            "=x".parse::<KeyPair>().unwrap_err(),
            Error::KeyPairEmptyKey { .. }
        ));
        assert!(matches!(
            "settings.=x".parse::<KeyPair>().unwrap_err(),
            Error::KeyPairEmptyKey { .. }
        ));
    }

    #[test]
    fn keypair_body_shape() {
        let pairs = vec![
            "motd=hi".parse().unwrap(),
            "settings.ntp.time-servers=[\"a\"]".parse().unwrap(),
        ];
        let body: Value = serde_json::from_str(&keypair_body(&pairs).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"request_payload": ["settings.motd=hi", "settings.ntp.time-servers=[\"a\"]"]})
        );
    }

    #[test]
    fn values_are_typed_as_bottlerocket_typed_them_before_the_keypair_route() {
        assert_eq!(typed_value("true"), json!(true));
        assert_eq!(typed_value("false"), json!(false));
        assert_eq!(typed_value("42"), json!(42));
        assert_eq!(typed_value("18446744073709551615"), json!(u64::MAX));
        assert_eq!(typed_value("-3"), json!(-3.0));
        assert_eq!(typed_value("0.5"), json!(0.5));
        assert_eq!(typed_value("1e3"), json!(1000.0));
        // JSON allows whitespace around a value, and Bottlerocket read the values as JSON.
        assert_eq!(typed_value(" true "), json!(true));
        for text in [
            "hi",
            "True",
            "",
            "null",
            "[\"a\"]",
            "{}",
            "\"quoted\"",
            "0x10",
            "1e999",
        ] {
            assert_eq!(typed_value(text), json!(text), "{text}");
        }
    }

    #[test]
    fn keypairs_nest_into_one_object() {
        let pairs: Vec<KeyPair> = [
            "motd=hi",
            "settings.updates.seed=7",
            "updates.ignore-waves=true",
            "kernel.sysctl.\"net.ipv4.ip_forward\"=on",
            "network.hostname=a=b",
        ]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
        assert_eq!(
            Value::Object(keypairs_to_object(&pairs).unwrap()),
            json!({
                "motd": "hi",
                "updates": {"seed": 7, "ignore-waves": true},
                "kernel": {"sysctl": {"net.ipv4.ip_forward": "on"}},
                "network": {"hostname": "a=b"},
            })
        );
        // Later pairs win, also over a whole group.
        let pairs: Vec<KeyPair> = ["ntp=x", "ntp.a=1", "motd=1", "motd=2"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(
            Value::Object(keypairs_to_object(&pairs).unwrap()),
            json!({"ntp": {"a": 1}, "motd": 2})
        );
        let bad: KeyPair = "kernel.sysctl.\"open=x".parse().unwrap();
        let err = keypairs_to_object(&[bad]).unwrap_err();
        assert!(matches!(err, Error::KeyPairKey { .. }), "{err}");
        assert!(err.to_string().contains("quote"), "{err}");
    }

    #[test]
    fn json_input_with_and_without_outer_settings() {
        let plain = parse_json_settings(r#"{"motd": "hi"}"#).unwrap();
        let wrapped = parse_json_settings(r#"{"settings": {"motd": "hi"}}"#).unwrap();
        assert_eq!(plain, wrapped);
        assert_eq!(Value::Object(plain), json!({"motd": "hi"}));
    }

    #[test]
    fn bad_json_input_is_refused() {
        assert!(matches!(
            parse_json_settings("{nope").unwrap_err(),
            Error::SetJsonParse { .. }
        ));
        assert!(matches!(
            parse_json_settings("[1]").unwrap_err(),
            Error::SetJsonNotObject
        ));
        assert!(matches!(
            parse_json_settings(r#"{"settings": 1}"#).unwrap_err(),
            Error::SetJsonSettingsNotObject
        ));
        let err = parse_json_settings(r#"{"settings": {}, "motd": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("motd"), "{err}");
    }

    #[test]
    fn patch_requests() {
        let pairs = SettingsInput::KeyPairs(vec!["motd=hi".parse().unwrap()]);
        let (uri, body) = patch_request(&pairs, "t1").unwrap();
        assert_eq!(uri, "/settings/keypair?tx=t1");
        assert_eq!(body, r#"{"request_payload":["settings.motd=hi"]}"#);

        let object = SettingsInput::Json(parse_json_settings(r#"{"motd":"hi"}"#).unwrap());
        let (uri, body) = patch_request(&object, "t2").unwrap();
        assert_eq!(uri, "/settings?tx=t2");
        assert_eq!(body, r#"{"motd":"hi"}"#);

        assert!(matches!(
            patch_request(&SettingsInput::KeyPairs(vec![]), "t").unwrap_err(),
            Error::NothingToSet
        ));
        assert!(matches!(
            patch_request(&SettingsInput::Json(Map::new()), "t").unwrap_err(),
            Error::NothingToSet
        ));
    }
}
