//! Request logic over any [`DataStore`], free of HTTP: the server module parses a request, calls
//! one function here and turns the result into a response. Each function is small enough to be
//! read next to the route it serves.

use crate::error::ApiError;
use api_types::audit::Caller;
use datastore::{serialization, Committed, DataStore, Key, KeyType};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// Transaction used when a request does not name one.
pub const DEFAULT_TX: &str = "default";

/// The metadata keys the defaults file sets and the controller reads; their home is the model.
pub use models::defaults::{AFFECTED_SERVICES, SETTING_GENERATOR, TEMPLATE};

/// The first segment of every settings key; its home is the model.
pub use models::validate::SETTINGS_PREFIX as SETTINGS_ROOT;

/// Adds the "settings." prefix when the caller left it off, as Bottlerocket does.
pub fn settings_prefix(prefix: &str) -> String {
    match prefix.strip_prefix(SETTINGS_ROOT) {
        Some(rest) if rest.is_empty() || rest.starts_with('.') => prefix.to_string(),
        _ => format!("{SETTINGS_ROOT}.{prefix}"),
    }
}

/// The top-level parts of the model, as `GET /` returns them.
pub const MODEL_ROOTS: [&str; 4] = ["settings", "services", "configuration-files", "os"];

/// Which part of `root` (e.g. "settings") a user's prefix selects, following Bottlerocket: a
/// prefix that `root.` starts with ("se", "settings") selects all of it and gives `root.`; a
/// prefix that starts with `root.` ("settings.motd") selects what it names and is given back;
/// any other prefix selects nothing (`None`).
pub fn prefix_within<'a>(given: &'a str, root: &str) -> Option<Cow<'a, str>> {
    let whole = format!("{root}.");
    if whole.starts_with(given) {
        Some(Cow::Owned(whole))
    } else if given.starts_with(&whole) {
        Some(Cow::Borrowed(given))
    } else {
        None
    }
}

/// The OS facts whose field names start with what `prefix` selects within "os" (see
/// [`prefix_within`]): "os.v" keeps variant_id and version_id, "os" keeps all five. `None`
/// when the prefix selects nothing of "os".
pub fn os_fields(os: Value, prefix: &str) -> Option<Value> {
    let selected = prefix_within(prefix, "os")?;
    let field_prefix = &selected["os.".len()..];
    let Value::Object(fields) = os else {
        return Some(os);
    };
    Some(Value::Object(
        fields
            .into_iter()
            .filter(|(name, _)| name.starts_with(field_prefix))
            .collect(),
    ))
}

/// Refuses an empty query parameter (`?prefix=`), as Bottlerocket does: an empty value is far
/// more often an unset shell variable than a wish for everything.
pub fn non_empty<'a>(name: &str, value: &'a str) -> Result<&'a str, ApiError> {
    if value.is_empty() {
        return Err(ApiError::bad_request(format!(
            "?{name}= is empty; give a value or leave the parameter out"
        )));
    }
    Ok(value)
}

/// Reads everything under `prefix` ("settings", "services", ...) as one nested object without the
/// prefix itself: `{"motd": "hi", ...}`. An empty store gives `{}`.
pub fn get_tree<D: DataStore + ?Sized>(
    ds: &D,
    prefix: &str,
    committed: &Committed,
) -> Result<Value, ApiError> {
    let pairs = ds.get_prefix(&format!("{prefix}."), committed)?;
    nested(&pairs, prefix)
}

fn nested(pairs: &BTreeMap<Key, String>, strip: &str) -> Result<Value, ApiError> {
    if pairs.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    Ok(serialization::from_pairs(pairs, Some(strip))?)
}

/// Settings whose dotted name starts with `prefix` (a plain string prefix, as Bottlerocket's).
pub fn get_settings_prefix<D: DataStore + ?Sized>(
    ds: &D,
    prefix: &str,
    committed: &Committed,
) -> Result<Value, ApiError> {
    let prefix = settings_prefix(prefix);
    let pairs = ds.get_prefix(&prefix, committed)?;
    nested(&pairs, "settings")
}

/// The named settings keys that exist; unknown or unset keys are simply absent from the result.
pub fn get_settings_keys<D: DataStore + ?Sized>(
    ds: &D,
    keys: &[String],
    committed: &Committed,
) -> Result<Value, ApiError> {
    let mut pairs = BTreeMap::new();
    for name in keys {
        let key = data_key(&settings_prefix(name))?;
        // A key may name a whole group ("settings.ntp"): take the leaf or everything beneath it.
        if let Some(value) = ds.get_key(&key, committed)? {
            pairs.insert(key.clone(), value);
        }
        let below = ds.get_prefix(&format!("{}.", key.name()), committed)?;
        pairs.extend(below);
    }
    nested(&pairs, "settings")
}

/// Validates a partial settings object (without the outer "settings") against the model and
/// writes it into the pending transaction. Nothing is written when any part is refused, or
/// when the object holds no settings. Returns the keys and values staged, for the audit trail.
pub fn set_settings<D: DataStore + ?Sized>(
    ds: &mut D,
    settings: &Value,
    tx: &str,
) -> Result<crate::audit::Changes, ApiError> {
    let pairs = validated_pairs(settings)?;
    // `{}` is a valid (empty) partial settings document: accepted, as by Bottlerocket, and
    // nothing is written, so no empty transaction appears.
    if !pairs.is_empty() {
        ds.set_keys(&pairs, &Committed::Pending { tx: tx.to_string() })?;
    }
    // What the audit trail records: the keys staged, with their values unless secret.
    Ok(crate::audit::Changes::with_values(
        pairs.iter().map(|(k, v)| (k.name(), Some(v.as_str()))),
    ))
}

/// Runs the model's typed validation and returns the normalized key/value pairs.
pub fn validated_pairs(settings: &Value) -> Result<BTreeMap<Key, String>, ApiError> {
    if !settings.is_object() {
        return Err(ApiError::bad_request(
            "settings must be a JSON object such as {\"motd\": \"hi\"}",
        ));
    }
    let typed = models::parse_settings(settings).map_err(ApiError::from)?;
    let normalized = serde_json::to_value(&typed)
        .map_err(|e| ApiError::internal(format!("cannot serialize settings: {e}")))?;
    Ok(serialization::to_pairs(&normalized, "settings")?)
}

/// Turns `["motd=hi", "kernel.lockdown=none"]` into one settings object. Each value is tried as a
/// JSON list or object, a boolean, an unsigned integer, a float and finally a string; the first
/// form the model accepts for that key wins, so `motd=42` stays the string "42" while
/// `ntp.time-servers=["a"]` is a list.
pub fn keypairs_to_settings(payload: &[String]) -> Result<Value, ApiError> {
    let mut merged = Value::Object(Map::new());
    for pair in payload {
        let (name, raw) = pair.split_once('=').ok_or_else(|| {
            ApiError::bad_request(format!("'{pair}' is not of the form key=value"))
        })?;
        let key = data_key(&settings_prefix(name.trim()))?;
        let segments = &key.segments()[1..];
        if segments.is_empty() {
            return Err(ApiError::bad_request(format!(
                "'{name}' names no setting; use e.g. motd=hi"
            )));
        }
        let mut last_err = None;
        let mut chosen = None;
        for candidate in guesses(raw) {
            let single = nest(segments, candidate.clone());
            match models::parse_settings(&single) {
                Ok(_) => {
                    chosen = Some(single);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        match (chosen, last_err) {
            (Some(single), _) => merge(&mut merged, single),
            (None, Some(e)) => return Err(e.into()),
            (None, None) => unreachable!("guesses always yields at least the string form"),
        }
    }
    Ok(merged)
}

/// The values `raw` could stand for, tried in order against the model: a JSON list or object
/// (for list and map settings, e.g. `ntp.time-servers=["a","b"]`), a boolean, a number, and
/// last the string itself, which is what the error speaks of when nothing fits.
fn guesses(raw: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let trimmed = raw.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        if let Ok(value @ (Value::Array(_) | Value::Object(_))) = serde_json::from_str(raw) {
            out.push(value);
        }
    }
    if let Ok(b) = raw.parse::<bool>() {
        out.push(Value::Bool(b));
    }
    if let Ok(n) = raw.parse::<u64>() {
        out.push(Value::from(n));
    }
    if let Ok(f) = raw.parse::<f64>() {
        if let Some(n) = serde_json::Number::from_f64(f) {
            out.push(Value::Number(n));
        }
    }
    out.push(Value::String(raw.to_string()));
    out
}

fn nest(segments: &[String], leaf: Value) -> Value {
    segments.iter().rev().fold(leaf, |inner, segment| {
        let mut map = Map::new();
        map.insert(segment.clone(), inner);
        Value::Object(map)
    })
}

/// Deep merge: objects merge key by key, anything else is replaced by `later`.
pub fn merge(into: &mut Value, later: Value) {
    match (into, later) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, later) => *slot = later,
    }
}

/// Commits a transaction; `Ok(None)` means there was nothing pending (the API answers 422).
/// The launch transaction yields to values committed after its own were staged (see the crate
/// documentation).
pub fn commit<D: DataStore + ?Sized>(
    ds: &mut D,
    tx: &str,
    caller: Option<&Caller>,
) -> Result<Option<Vec<String>>, ApiError> {
    let committed = if tx == constants::LAUNCH_TX {
        ds.commit_transaction_keeping_newer(tx, caller)
    } else {
        ds.commit_transaction(tx, caller)
    };
    match committed {
        Ok(record) => Ok(Some(record.changes.into_iter().map(|c| c.key).collect())),
        Err(datastore::Error::EmptyTransaction { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Metadata `meta` of each requested key, or of every key carrying it when `keys` is empty.
pub fn get_metadata<D: DataStore + ?Sized>(
    ds: &D,
    meta: &str,
    keys: &[String],
) -> Result<BTreeMap<String, Value>, ApiError> {
    let meta_key = Key::new(KeyType::Meta, meta)?;
    let mut out = BTreeMap::new();
    let data_keys: Vec<Key> = if keys.is_empty() {
        ds.list_populated_metadata("", Some(&meta_key))?
            .into_keys()
            .collect()
    } else {
        keys.iter()
            .map(|k| data_key(&settings_prefix(k)))
            .collect::<Result<_, _>>()?
    };
    for key in data_keys {
        if let Some(text) = ds.get_metadata(&meta_key, &key)? {
            out.insert(key.name().to_string(), parse_stored(&key, &text)?);
        }
    }
    Ok(out)
}

/// Services affected by each key: the `affected-services` metadata of the key and of every
/// segment-wise parent ("settings.ntp.time-servers" inherits what "settings.ntp" declares).
pub fn affected_services<D: DataStore + ?Sized>(
    ds: &D,
    keys: &[String],
) -> Result<BTreeMap<String, BTreeSet<String>>, ApiError> {
    let meta_key = Key::new(KeyType::Meta, AFFECTED_SERVICES)?;
    let mut out = BTreeMap::new();
    for name in keys {
        let key = data_key(&settings_prefix(name))?;
        let mut services = BTreeSet::new();
        for len in 1..=key.segments().len() {
            let parent = Key::from_segments(KeyType::Data, &key.segments()[..len])?;
            if let Some(text) = ds.get_metadata(&meta_key, &parent)? {
                match parse_stored(&parent, &text)? {
                    Value::Array(items) => services.extend(
                        items
                            .into_iter()
                            .filter_map(|v| v.as_str().map(str::to_string)),
                    ),
                    Value::String(s) => {
                        services.insert(s);
                    }
                    _ => {}
                }
            }
        }
        out.insert(key.name().to_string(), services);
    }
    Ok(out)
}

/// Entries of a metadata tree ("services" or "configuration-files"), filtered by exact names or
/// by a name prefix. A name that does not exist is a 404 naming it (as in Bottlerocket). The
/// prefix may carry the root ("services.host" is "host"; "services" alone is everything).
pub fn get_named_tree<D: DataStore + ?Sized>(
    ds: &D,
    root: &str,
    names: &[String],
    prefix: Option<&str>,
) -> Result<Value, ApiError> {
    let tree = get_tree(ds, root, &Committed::Live)?;
    let Value::Object(map) = tree else {
        return Ok(Value::Object(Map::new()));
    };
    if let Some(missing) = names.iter().find(|name| !map.contains_key(name.as_str())) {
        return Err(ApiError::not_found(format!(
            "there is no {root} entry named '{missing}'; GET /{root} lists them"
        )));
    }
    let prefix = prefix.map(|p| {
        if p == root {
            ""
        } else {
            p.strip_prefix(root)
                .and_then(|rest| rest.strip_prefix('.'))
                .unwrap_or(p)
        }
    });
    let filtered = map
        .into_iter()
        .filter(|(name, _)| names.is_empty() || names.contains(name))
        .filter(|(name, _)| prefix.is_none_or(|p| name.starts_with(p)))
        .collect();
    Ok(Value::Object(filtered))
}

fn parse_stored(key: &Key, text: &str) -> Result<Value, ApiError> {
    serde_json::from_str(text).map_err(|e| {
        ApiError::internal(format!(
            "stored value of {key} is not valid JSON ({e}); the datastore may be damaged"
        ))
    })
}

/// Parses a dotted data key, answering 400 with the reason when it is malformed.
pub fn data_key(name: &str) -> Result<Key, ApiError> {
    Key::new(KeyType::Data, name).map_err(ApiError::from)
}

/// The newest commit that an argument-less undo should revert: not itself an undo, and not
/// already reverted by one.
pub fn newest_undoable<D: DataStore + ?Sized>(ds: &D) -> Result<Option<u64>, ApiError> {
    let history = ds.history()?;
    let undone: BTreeSet<u64> = history
        .iter()
        .filter_map(|r| r.transaction.strip_prefix("undo-")?.parse().ok())
        .collect();
    Ok(history
        .iter()
        .rev()
        .find(|r| !r.transaction.starts_with("undo-") && !undone.contains(&r.id))
        .map(|r| r.id))
}
