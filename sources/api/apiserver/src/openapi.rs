//! The finishing steps of the OpenAPI document: what utoipa generates from the route
//! declarations, plus the parts that hold for every route or that are derived from the model,
//! so that no route can forget them and the document states what the server accepts.
//!
//! * Every operation lists the refusals made before its handler runs (400 for a malformed
//!   request, 413 for a body over [`MAX_BODY_BYTES`]) and, except this document itself, the
//!   failures any handler can meet (500 when the datastore or a helper program fails, 503 when
//!   the server is out of file descriptors).
//! * `PATCH /settings` takes `SettingsPatch`, the settings schema with every object requiring
//!   at least one member and no `null`: the server refuses a request that sets nothing.
//! * `PATCH /settings/keypair` takes "key=value" strings whose pattern is built from the
//!   settings schema's leaves (see [`keypair_pattern`]).

use crate::server::MAX_BODY_BYTES;
use serde_json::{json, Map, Value};

/// Component names.
const ERROR_BODY: &str = "ErrorBody";
const SETTINGS: &str = "Settings";
const PATCH_SUFFIX: &str = "Patch";

/// Operation whose answer is this document: it touches neither the datastore nor a program.
const GET_OPENAPI: &str = "get_openapi";

/// Applies every finishing step to the generated document.
pub fn finish(doc: &utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(doc).unwrap_or_else(|e| {
        // Serializing plain data cannot fail; if it ever did, serve an honest stub.
        json!({"openapi": "3.1.0", "info": {"title": "Ballast API", "description": e.to_string()}})
    });
    add_settings_patch(&mut doc);
    describe_keypairs(&mut doc);
    add_shared_answers(&mut doc);
    doc
}

fn error_answer(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{ERROR_BODY}")}}}
    })
}

/// Every (method, operation) of the document, mutable.
fn operations_mut(doc: &mut Value) -> impl Iterator<Item = &mut Map<String, Value>> {
    doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(Value::as_object_mut)
        .filter(|op| op.contains_key("responses"))
}

fn add_shared_answers(doc: &mut Value) {
    let too_large =
        format!("The request body is larger than {MAX_BODY_BYTES} bytes; nothing was done");
    for op in operations_mut(doc) {
        let id = op
            .get("operationId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
            continue;
        };
        let mut add = |status: &str, description: &str| {
            responses
                .entry(status)
                .or_insert_with(|| error_answer(description));
        };
        add(
            "400",
            "The request is malformed (its framing, query string or body); nothing was done",
        );
        add("413", &too_large);
        if id != GET_OPENAPI {
            add(
                "500",
                "The datastore or a helper program failed; the server's log has the details",
            );
            add(
                "503",
                "The server is out of file descriptors or cannot run a helper program; retry shortly",
            );
        }
    }
}

// ---- PATCH /settings: at least one setting, no nulls ----

/// Adds `SettingsPatch` and its parts (a `...Patch` copy of every object component the
/// settings reach) and makes it the body of `PATCH /settings`.
fn add_settings_patch(doc: &mut Value) {
    let Some(schemas) = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
    else {
        return;
    };
    let objects: Vec<String> = schemas
        .iter()
        .filter(|(_, schema)| is_object_schema(schema))
        .map(|(name, _)| name.clone())
        .collect();
    let mut patches = Map::new();
    for name in &objects {
        patches.insert(
            format!("{name}{PATCH_SUFFIX}"),
            patch_variant(&schemas[name], &objects),
        );
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.extend(patches);
    }
    if let Some(body) =
        doc.pointer_mut("/paths/~1settings/patch/requestBody/content/application~1json/schema")
    {
        *body = json!({"$ref": format!("#/components/schemas/{SETTINGS}{PATCH_SUFFIX}")});
    }
}

fn is_object_schema(schema: &Value) -> bool {
    schema.get("properties").is_some()
        || schema
            .get("additionalProperties")
            .is_some_and(Value::is_object)
}

fn is_null_schema(schema: &Value) -> bool {
    schema.get("type") == Some(&json!("null"))
}

/// The schema for a PATCH: objects need a member, `null` is gone, references to object
/// components point at their `...Patch` copies.
fn patch_variant(schema: &Value, objects: &[String]) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in map {
        let v = match (k.as_str(), v) {
            ("$ref", Value::String(r)) => {
                let name = r.rsplit('/').next().unwrap_or_default();
                if objects.iter().any(|o| o == name) {
                    json!(format!("#/components/schemas/{name}{PATCH_SUFFIX}"))
                } else {
                    v.clone()
                }
            }
            ("type", Value::Array(types)) => {
                let kept: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
                match kept.as_slice() {
                    [one] => (*one).clone(),
                    _ => json!(kept),
                }
            }
            ("oneOf" | "anyOf", Value::Array(alternatives)) => {
                let kept: Vec<Value> = alternatives
                    .iter()
                    .filter(|a| !is_null_schema(a))
                    .map(|a| patch_variant(a, objects))
                    .collect();
                if let [one] = kept.as_slice() {
                    // A single alternative is the schema itself: merge it in.
                    if let Value::Object(inner) = one {
                        for (ik, iv) in inner {
                            out.entry(ik.clone()).or_insert_with(|| iv.clone());
                        }
                    }
                    continue;
                }
                json!(kept)
            }
            ("properties", Value::Object(props)) => Value::Object(
                props
                    .iter()
                    .map(|(name, p)| (name.clone(), patch_variant(p, objects)))
                    .collect(),
            ),
            ("additionalProperties" | "items", inner @ Value::Object(_)) => {
                patch_variant(inner, objects)
            }
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    let out = Value::Object(out);
    if is_object_schema(&out) {
        let mut out = out;
        out["minProperties"] = json!(1);
        return out;
    }
    out
}

// ---- PATCH /settings/keypair: "key=value" strings the model accepts ----

/// Sets the item pattern of `request_payload` from the settings schema, and requires at least
/// one item: the server refuses a request that sets nothing.
fn describe_keypairs(doc: &mut Value) {
    let Some(schemas) = doc.pointer("/components/schemas").cloned() else {
        return;
    };
    let pattern = keypair_pattern(&schemas);
    if let Some(payload) =
        doc.pointer_mut("/components/schemas/KeyPairRequest/properties/request_payload")
    {
        payload["minItems"] = json!(1);
        payload["items"] = json!({
            "type": "string",
            "pattern": pattern,
            "description": "key=value: a settings key (\"settings.\" may be left off) and a value the model accepts for it. The pattern lists the scalar settings; list and map settings are also accepted, with the value written as JSON (e.g. ntp.time-servers=[\"pool.ntp.org\"])",
        });
    }
}

/// An anchored pattern for "key=value" with every scalar leaf of the settings schema: the
/// key's path (map keys by their own pattern, quoted when they may hold a separator) and the
/// value by the leaf's pattern, enum or type.
pub fn keypair_pattern(schemas: &Value) -> String {
    let mut alternatives = Vec::new();
    leaves(
        schemas,
        &schemas[SETTINGS],
        String::new(),
        &mut alternatives,
        0,
    );
    format!("^(?:settings\\.)?(?:{})$", alternatives.join("|"))
}

fn resolve<'a>(schemas: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => &schemas[r.rsplit('/').next().unwrap_or_default()],
        None => schema,
    }
}

/// The non-null alternative of an optional schema.
fn unwrap_optional<'a>(schemas: &'a Value, schema: &'a Value) -> &'a Value {
    let schema = resolve(schemas, schema);
    if let Some(alternatives) = schema.get("oneOf").and_then(Value::as_array) {
        if let Some(inner) = alternatives.iter().find(|a| !is_null_schema(a)) {
            return resolve(schemas, inner);
        }
    }
    schema
}

/// A pattern without its anchors, to be embedded.
fn unanchored(pattern: &str) -> String {
    let p = pattern.strip_prefix('^').unwrap_or(pattern);
    let p = p.strip_suffix('$').unwrap_or(p);
    format!("(?:{p})")
}

fn escape(literal: &str) -> String {
    literal
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

fn leaves(schemas: &Value, schema: &Value, path: String, out: &mut Vec<String>, depth: usize) {
    if depth > 8 {
        return;
    }
    let schema = unwrap_optional(schemas, schema);
    let join = |segment: &str| {
        if path.is_empty() {
            segment.to_string()
        } else {
            format!("{path}\\.{segment}")
        }
    };
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, inner) in props {
            leaves(schemas, inner, join(&escape(name)), out, depth + 1);
        }
        return;
    }
    if let Some(inner) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        let names = resolve(schemas, schema.get("propertyNames").unwrap_or(&Value::Null));
        let Some(pattern) = names.get("pattern").and_then(Value::as_str) else {
            return;
        };
        // A name may always be written in quotes; bare only when its pattern cannot produce
        // a separator ('.' would split it into segments, '/' is not a bare character).
        let name = unanchored(pattern);
        let segment = if pattern.contains(['.', '/']) {
            format!("\"{name}\"")
        } else {
            format!("(?:{name}|\"{name}\")")
        };
        leaves(schemas, inner, join(&segment), out, depth + 1);
        return;
    }
    if let Some(value) = scalar_value_pattern(schema) {
        out.push(format!("{path}={value}"));
    }
}

/// The pattern of a scalar leaf's value as written after '=', or None for lists.
fn scalar_value_pattern(schema: &Value) -> Option<String> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let names: Vec<String> = values
            .iter()
            .filter_map(Value::as_str)
            .map(escape)
            .collect();
        return Some(format!("(?:{})", names.join("|")));
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if types.contains(&"boolean") {
        return Some("(?:true|false)".to_string());
    }
    if types.contains(&"integer") {
        return Some(integer_pattern(
            schema.get("minimum").and_then(Value::as_u64).unwrap_or(0),
            schema.get("maximum").and_then(Value::as_u64),
        ));
    }
    if types.contains(&"string") {
        return Some(match schema.get("pattern").and_then(Value::as_str) {
            Some(p) => unanchored(p),
            None => "(?:.*)".to_string(),
        });
    }
    None
}

/// A pattern for the decimal numbers from `min` (0 here) up to `max`: the numbers with fewer
/// digits than `max`, then those with as many, digit by digit.
fn integer_pattern(min: u64, max: Option<u64>) -> String {
    let Some(max) = max.filter(|_| min == 0) else {
        return "(?:0|[1-9][0-9]{0,18})".to_string();
    };
    let digits: Vec<u32> = max
        .to_string()
        .chars()
        .filter_map(|c| c.to_digit(10))
        .collect();
    let d = digits.len();
    let mut alternatives = Vec::new();
    // The numbers with fewer digits than max.
    if d >= 2 {
        alternatives.push("[0-9]".to_string());
    }
    if d >= 3 {
        alternatives.push(format!("[1-9][0-9]{{1,{}}}", d - 2));
    }
    // Those with as many: equal to max up to digit i, lower at digit i, anything after.
    for i in 0..d {
        let prefix: String = digits[..i].iter().map(|d| d.to_string()).collect();
        let lowest = if i == 0 && d > 1 { 1 } else { 0 };
        if digits[i] > lowest {
            let rest = match d - i - 1 {
                0 => String::new(),
                n => format!("[0-9]{{{n}}}"),
            };
            alternatives.push(format!("{prefix}[{lowest}-{}]{rest}", digits[i] - 1));
        }
    }
    alternatives.push(digits.iter().map(|d| d.to_string()).collect());
    format!("(?:{})", alternatives.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_pattern_covers_exactly_the_range() {
        for max in [1u64, 7, 9, 10, 42, 99, 100, 2047, 65535] {
            let pattern = format!("^{}$", integer_pattern(0, Some(max)));
            let re = regex_lite(&pattern);
            for n in 0..=(max + 20) {
                assert_eq!(re(&n.to_string()), n <= max, "{n} against {pattern}");
            }
            assert!(!re("01"), "{pattern}");
        }
    }

    /// A tiny matcher for the patterns integer_pattern makes, through the regex engine of the
    /// JSON Schema validator the tests use.
    fn regex_lite(pattern: &str) -> impl Fn(&str) -> bool {
        let schema = json!({"type": "string", "pattern": pattern});
        let validator = jsonschema::validator_for(&schema).unwrap();
        move |s| validator.is_valid(&json!(s))
    }
}
