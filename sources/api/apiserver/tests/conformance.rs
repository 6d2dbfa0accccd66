//! Schema conformance: the document served at /openapi.json against the real server.
//!
//! For every operation the test generates requests from the document itself (a seeded
//! generator that walks the schemas, and makes strings from their patterns), some valid and
//! some not (junk, long and Unicode strings, negative and huge numbers, unknown parameters,
//! malformed bodies), sends them to a real server on a temporary datastore over its Unix
//! socket, and fails on:
//! * any 5xx answer;
//! * any status the document does not list for that operation, or a 2xx JSON answer that does
//!   not match its documented schema;
//! * a schema-valid request refused as malformed (400) more than rarely: a schema that allows
//!   more than the server takes;
//! * a request whose transaction name or commit id breaks the schema, accepted (these
//!   parameters' schemas are exact).
//!
//! Nothing here can touch the machine: the update routes run the test updater over a pretend
//! node, the reboot route a recording script, `GET /logs` reads an empty journal directory,
//! `GET /units` and `GET /report/boot` a systemd user manager of the test's own (`testserver::systemd`; without one,
//! that route is left out with a notice), `GET /status` signpost on a disk image that does
//! not exist (its boot part is an error, as documented); dry runs run the real renderer over the
//! packages' templates under the test's directory, and applies are only recorded. Set `CONFORMANCE_SEED` to replay another seed,
//! `CONFORMANCE_CASES` to change the number of requests per operation (half valid, half
//! spoiled), and `CONFORMANCE_DOCUMENT` to a path to keep the served document.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use regex_syntax::hir::{Class, Hir, HirKind};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use testserver::systemd::UserManager;
use testserver::TestServer;

const DEFAULT_SEED: u64 = 0x0ba1_1a57;

/// Parameters whose valid values make an answer that never ends (`GET /logs?follow=true`
/// streams until the client leaves): only their spoiled values are sent here; tests/logs.rs
/// holds the stream against the server.
const NEVER_ENDING: &[(&str, &str)] = &[("/logs", "follow")];

/// Parameters whose valid values carry a checksum that no pattern can express (an age
/// recipient is Bech32): a string made from the pattern is almost never one, so only their
/// spoiled values are sent here; tests/support_bundle.rs sends real ones.
const CHECKSUMMED: &[(&str, &str)] = &[("/support-bundle", "recipient")];

/// Routes that only answer a protocol upgrade (`GET /exec` becomes a WebSocket): every plain
/// request is refused as malformed, by design. They are left out here; tests/exec.rs holds the
/// upgrade against the server, and tests/openapi.rs the documented 400.
const UPGRADES: &[&str] = &[api_types::exec::PATH];

/// Share of schema-valid requests an operation may refuse with 400 before the test fails.
const MAX_REFUSED_SHARE: f64 = 0.1;

// ---- a generator of values from JSON schemas ----

struct Gen {
    rng: StdRng,
    schemas: Value,
    regexes: BTreeMap<String, Hir>,
}

impl Gen {
    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => &self.schemas[r.rsplit('/').next().unwrap()],
            None => schema,
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    /// A value valid for `schema` (the generator's best effort: the test checks it with a
    /// validator before counting it as valid).
    fn valid(&mut self, schema: &Value, depth: usize) -> Value {
        let schema = self.resolve(schema).clone();
        for key in ["oneOf", "anyOf"] {
            if let Some(alternatives) = schema.get(key).and_then(Value::as_array) {
                let pick = alternatives[self.rng.random_range(0..alternatives.len())].clone();
                let mut merged = schema.clone();
                merged.as_object_mut().unwrap().remove(key);
                let pick = self.resolve(&pick).clone();
                for (k, v) in pick.as_object().unwrap() {
                    merged[k] = v.clone();
                }
                return self.valid(&merged, depth);
            }
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            return values[self.rng.random_range(0..values.len())].clone();
        }
        let ty = match schema.get("type") {
            Some(Value::String(t)) => t.clone(),
            Some(Value::Array(ts)) => {
                let ts: Vec<&str> = ts.iter().filter_map(Value::as_str).collect();
                ts[self.rng.random_range(0..ts.len())].to_string()
            }
            _ if schema.get("properties").is_some() => "object".into(),
            _ if schema.get("additionalProperties").is_some() => "object".into(),
            _ => "string".into(),
        };
        match ty.as_str() {
            "null" => Value::Null,
            "boolean" => json!(self.chance(0.5)),
            "integer" => self.integer(&schema),
            "number" => json!(self.rng.random_range(-1e6..1e6)),
            "string" => json!(self.string(&schema)),
            "array" => {
                let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
                let max = schema.get("maxItems").and_then(Value::as_u64).unwrap_or(3);
                let n = self.rng.random_range(min..=max.min(min + 3));
                let items = schema.get("items").cloned().unwrap_or(json!({}));
                json!((0..n)
                    .map(|_| self.valid(&items, depth + 1))
                    .collect::<Vec<_>>())
            }
            "object" => self.object(&schema, depth),
            other => panic!("no generator for type {other}"),
        }
    }

    fn integer(&mut self, schema: &Value) -> Value {
        let min = schema.get("minimum").and_then(Value::as_i64);
        let max = schema.get("maximum").and_then(Value::as_u64);
        let low = min.unwrap_or(-1000);
        // Mostly small numbers, sometimes the bounds.
        let n = match self.rng.random_range(0..4) {
            0 => return json!(max.unwrap_or(1000)),
            1 => low,
            _ => self.rng.random_range(low..low + 50),
        };
        json!(n)
    }

    fn object(&mut self, schema: &Value, depth: usize) -> Value {
        let mut out = Map::new();
        let required: Vec<String> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let min = schema
            .get("minProperties")
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize;
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            let names: Vec<&String> = props.keys().collect();
            // Each optional member with a small chance, so documents stay small.
            let p = if depth == 0 { 0.15 } else { 0.3 };
            for name in &names {
                if required.contains(name) || (depth < 6 && self.chance(p)) {
                    out.insert((*name).clone(), self.valid(&props[*name], depth + 1));
                }
            }
            while out.len() < min.min(names.len()) {
                let name = names[self.rng.random_range(0..names.len())];
                if !out.contains_key(name) {
                    out.insert(name.clone(), self.valid(&props[name], depth + 1));
                }
            }
        } else if let Some(inner) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            let names = schema.get("propertyNames").cloned().unwrap_or(json!({}));
            let n = self.rng.random_range(min.max(1)..=min.max(1) + 1);
            for _ in 0..n {
                let name = self.valid(&names, depth + 1);
                let value = self.valid(inner, depth + 1);
                out.insert(name.as_str().unwrap().to_string(), value);
            }
        }
        Value::Object(out)
    }

    fn string(&mut self, schema: &Value) -> String {
        let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .unwrap_or(40) as usize;
        let Some(pattern) = schema.get("pattern").and_then(Value::as_str) else {
            let n = self.rng.random_range(min..=max.min(min + 30));
            return (0..n).map(|_| self.any_char()).collect();
        };
        let hir = self.regexes.entry(pattern.to_string()).or_insert_with(|| {
            regex_syntax::parse(pattern).unwrap_or_else(|e| panic!("pattern {pattern}: {e}"))
        });
        let hir = hir.clone();
        // Draw until the length fits; the last draw is kept either way (and then checked).
        let mut text = String::new();
        for _ in 0..50 {
            text.clear();
            self.spell_hir(&hir, &mut text);
            let n = text.chars().count();
            if n >= min && n <= max {
                break;
            }
        }
        text
    }

    fn any_char(&mut self) -> char {
        match self.rng.random_range(0..10) {
            0 => char::from_u32(self.rng.random_range(0x80..0x3000)).unwrap_or('é'),
            1 => ['.', '"', '\\', '/', ',', ' ', '%', '='][self.rng.random_range(0..8)],
            _ => self.rng.random_range(b'a'..=b'z') as char,
        }
    }

    fn spell_hir(&mut self, hir: &Hir, out: &mut String) {
        match hir.kind() {
            HirKind::Empty | HirKind::Look(_) => {}
            HirKind::Literal(lit) => out.push_str(std::str::from_utf8(&lit.0).unwrap()),
            HirKind::Class(Class::Unicode(class)) => {
                let ranges = class.ranges();
                let range = ranges[self.rng.random_range(0..ranges.len())];
                let (lo, hi) = (range.start() as u32, range.end() as u32);
                // Keep to the Basic Multilingual Plane most of the time.
                let hi = if lo < 0x10000 && self.chance(0.9) {
                    hi.min(0xFFFF)
                } else {
                    hi
                };
                let c = loop {
                    if let Some(c) = char::from_u32(self.rng.random_range(lo..=hi)) {
                        break c;
                    }
                };
                out.push(c);
            }
            HirKind::Class(Class::Bytes(class)) => {
                let ranges = class.ranges();
                let range = ranges[self.rng.random_range(0..ranges.len())];
                out.push(self.rng.random_range(range.start()..=range.end()) as char);
            }
            HirKind::Repetition(rep) => {
                let max = rep.max.unwrap_or(rep.min + 8);
                let n = if self.chance(0.1) {
                    max
                } else {
                    self.rng.random_range(rep.min..=max.min(rep.min + 12))
                };
                for _ in 0..n {
                    self.spell_hir(&rep.sub, out);
                }
            }
            HirKind::Capture(cap) => self.spell_hir(&cap.sub, out),
            HirKind::Concat(parts) => {
                for part in parts {
                    self.spell_hir(part, out);
                }
            }
            HirKind::Alternation(alternatives) => {
                let pick = &alternatives[self.rng.random_range(0..alternatives.len())];
                self.spell_hir(pick, out);
            }
        }
    }

    /// A string a careless or hostile client might send.
    fn junk(&mut self) -> String {
        match self.rng.random_range(0..12) {
            0 => String::new(),
            1 => "-1".into(),
            2 => "18446744073709551616".into(),
            3 => "x".repeat(self.rng.random_range(200..3000)),
            4 => "a.".repeat(self.rng.random_range(50..200)),
            5 => "\"unbalanced".into(),
            6 => "é日本\u{1F600}".repeat(self.rng.random_range(1..40)),
            7 => "..".into(),
            8 => "a,,b, c".into(),
            9 => "settings.motd\u{0}".into(),
            10 => "1.5e3".into(),
            _ => (0..self.rng.random_range(1..60))
                .map(|_| self.any_char())
                .collect(),
        }
    }
}

// ---- the operations of the document ----

struct Operation {
    method: String,
    path: String,
    params: Vec<Value>,
    body: Option<Value>,
    responses: Map<String, Value>,
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if UPGRADES.contains(&path.as_str()) {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            out.push(Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                params: op
                    .get("parameters")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                body: op
                    .pointer("/requestBody/content/application~1json/schema")
                    .cloned(),
                responses: op["responses"].as_object().unwrap().clone(),
            });
        }
    }
    out
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn uri(path: &str, query: &[(String, String)]) -> String {
    if query.is_empty() {
        return path.to_string();
    }
    let query: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// One request: its URI, body, and whether every part is valid by the document.
struct Case {
    uri: String,
    body: Option<String>,
    valid: bool,
    /// An exact parameter (tx, id) was given a value its schema refuses.
    breaks_exact: bool,
}

struct Checker {
    doc: Value,
    validators: BTreeMap<String, jsonschema::Validator>,
}

impl Checker {
    /// Validates `value` against `schema`, which may refer to the document's components.
    fn valid(&mut self, schema: &Value, value: &Value) -> bool {
        let key = schema.to_string();
        let doc = &self.doc;
        let validator = self.validators.entry(key).or_insert_with(|| {
            let mut full = schema.clone();
            if let Some(map) = full.as_object_mut() {
                map.insert("components".into(), doc["components"].clone());
            } else {
                full = json!({"allOf": [schema], "components": doc["components"]});
            }
            jsonschema::validator_for(&full).unwrap_or_else(|e| panic!("schema {schema}: {e}"))
        });
        validator.is_valid(value)
    }
}

/// The value of query parameter `param` as JSON, as its schema would read it.
fn as_json(param: &Value, text: &str) -> Value {
    match param.pointer("/schema/type").and_then(Value::as_str) {
        Some("integer") => serde_json::from_str::<Value>(text)
            .ok()
            .filter(|v| v.is_i64() || v.is_u64())
            .unwrap_or(json!(text)),
        _ => json!(text),
    }
}

fn build_case(gen: &mut Gen, checker: &mut Checker, op: &Operation, mutate: bool) -> Case {
    let mut query = Vec::new();
    let mut valid = true;
    let mut breaks_exact = false;
    // Which part to spoil, when spoiling: a parameter, an unknown parameter, or the body.
    let parts = op.params.len() + 1 + usize::from(op.body.is_some());
    let spoil = mutate.then(|| gen.rng.random_range(0..parts));
    for (i, param) in op.params.iter().enumerate() {
        let name = param["name"].as_str().unwrap().to_string();
        let required = param["required"].as_bool().unwrap_or(false);
        let schema = param["schema"].clone();
        let never_ending = NEVER_ENDING.contains(&(op.path.as_str(), name.as_str()))
            || CHECKSUMMED.contains(&(op.path.as_str(), name.as_str()));
        let text = if spoil == Some(i) {
            if gen.chance(0.2) {
                // Left out, whether required or not.
                if required {
                    valid = false;
                }
                continue;
            }
            gen.junk()
        } else if never_ending {
            continue;
        } else if required || gen.chance(0.6) {
            match gen.valid(&schema, 0) {
                Value::String(s) => s,
                other => other.to_string(),
            }
        } else {
            continue;
        };
        if !checker.valid(&schema, &as_json(param, &text)) {
            valid = false;
            breaks_exact |= name == "tx" || name == "id";
        }
        query.push((name, text));
    }
    if spoil == Some(op.params.len()) {
        query.push(("no-such-parameter".into(), gen.junk()));
        valid = false;
    }
    let body = op.body.as_ref().map(|schema| {
        if spoil == Some(op.params.len() + 1) {
            valid = false;
            match gen.rng.random_range(0..6) {
                0 => String::new(),
                1 => "{".into(),
                2 => "[]".into(),
                3 => "null".into(),
                4 => json!({gen.junk(): gen.junk()}).to_string(),
                _ => json!(gen.junk()).to_string(),
            }
        } else {
            let value = gen.valid(schema, 0);
            if !checker.valid(schema, &value) {
                valid = false;
            }
            value.to_string()
        }
    });
    Case {
        uri: uri(&op.path, &query),
        body,
        valid,
        breaks_exact,
    }
}

#[derive(Default)]
struct Tally {
    valid: usize,
    valid_2xx: usize,
    valid_refused: usize,
    invalid: usize,
    statuses: BTreeMap<u16, usize>,
    refused_example: Option<String>,
}

/// A server whose dry runs run the real renderer over the packages' templates, under a
/// directory of the test; applies (which run in the background, after the answer) are only
/// recorded. The directory goes with the server.
fn server() -> (TestServer, tempfile::TempDir, Option<UserManager>) {
    testserver::build_test_updater();
    let renderer = testserver::workspace_bin("thar-be-settings");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let templates = root.join("usr/share/templates");
    std::fs::create_dir_all(&templates).unwrap();
    let packages = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../packages");
    for package in std::fs::read_dir(&packages).unwrap() {
        let source = package.unwrap().path().join("files/usr/share/templates");
        for template in std::fs::read_dir(source).into_iter().flatten() {
            let template = template.unwrap().path();
            let _ = std::os::unix::fs::symlink(
                &template,
                templates.join(template.file_name().unwrap()),
            );
        }
    }
    let log = dir.path().join("applied.log");
    let wrapper = dir.path().join("renderer");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \"$1\" in --dry-run) exec {r} --root {root} \"$@\";; esac\necho \"$*\" >> {log}\n",
            r = renderer.display(),
            root = root.display(),
            log = log.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let defaults = storewolf::load_defaults(&[]).expect("shared defaults");
    let mut server = TestServer::start_with(&defaults, true, Some(wrapper));
    let mut node = server.node();
    node.offered = vec!["0.2.0".into()];
    server.set_node(&node);
    let manager = UserManager::start();
    if let Some(manager) = &manager {
        server.use_manager(manager);
    }
    (server, dir, manager)
}

#[test]
fn served_document_matches_what_the_server_does() {
    let seed = std::env::var("CONFORMANCE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let cases: usize = std::env::var("CONFORMANCE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let (server, _renderer_dir, manager) = server();
    let doc = server.json("GET", "/openapi.json", None);
    // For an external checker (e.g. schemathesis through a bridge): the document as served.
    if let Some(path) = std::env::var_os("CONFORMANCE_DOCUMENT") {
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    }
    let mut gen = Gen {
        rng: StdRng::seed_from_u64(seed),
        schemas: doc["components"]["schemas"].clone(),
        regexes: BTreeMap::new(),
    };
    let mut checker = Checker {
        doc: doc.clone(),
        validators: BTreeMap::new(),
    };
    let mut ops = operations(&doc);
    if manager.is_none() {
        eprintln!(
            "NOTICE: no systemd manager to read; GET /units and GET /report/boot are not checked"
        );
        ops.retain(|op| op.path != "/units" && op.path != "/report/boot");
    }
    // Writes first, then what reads them (a dry run, the commits), then what drops them;
    // undo and the update actions last, in the order an update takes.
    let actions = [
        "refresh-updates",
        "prepare-update",
        "activate-update",
        "deactivate-update",
        "reboot",
    ];
    ops.sort_by_key(|op| {
        let action = op
            .path
            .strip_prefix("/actions/")
            .and_then(|a| actions.iter().position(|x| *x == a))
            .unwrap_or(0);
        let rank = match (op.method.as_str(), op.path.as_str()) {
            ("GET", _) => 0,
            ("PATCH", _) => 1,
            (_, "/tx/dry-run") => 2,
            ("DELETE", _) => 4,
            (_, "/history/undo") => 5,
            (_, p) if p.starts_with("/actions/") => 6,
            _ => 3,
        };
        (rank, action, op.path.clone(), op.method.clone())
    });
    assert!(ops.len() >= 25, "only {} operations", ops.len());
    let mut failures = Vec::new();
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    for op in &ops {
        let name = format!("{} {}", op.method, op.path);
        let tally = tallies.entry(name.clone()).or_default();
        for n in 0..cases * 2 {
            let case = build_case(&mut gen, &mut checker, op, n % 2 == 1);
            let (status, text) = server.raw(&op.method, &case.uri, case.body.as_deref());
            *tally.statuses.entry(status).or_default() += 1;
            let short = |s: &str| s.chars().take(300).collect::<String>();
            let shown = format!(
                "{} {} {}",
                op.method,
                short(&case.uri),
                short(case.body.as_deref().unwrap_or(""))
            );
            if status >= 500 {
                failures.push(format!("{shown}: answered {status}: {}", short(&text)));
            }
            let Some(documented) = op.responses.get(&status.to_string()) else {
                failures.push(format!(
                    "{shown}: answered {status}, not documented ({:?}): {}",
                    op.responses.keys().collect::<Vec<_>>(),
                    short(&text)
                ));
                continue;
            };
            // A route that may also answer text/plain (e.g. ?format=text) is held to its JSON
            // schema only when the answer is JSON.
            let plain = documented.pointer("/content/text~1plain").is_some();
            if let Some(schema) = documented.pointer("/content/application~1json/schema") {
                match serde_json::from_str::<Value>(&text) {
                    Ok(value) if checker.valid(schema, &value) => {}
                    Err(_) if plain => {}
                    _ => failures.push(format!(
                        "{shown}: the {status} answer does not match its schema: {}",
                        short(&text)
                    )),
                }
            }
            if case.valid {
                tally.valid += 1;
                if (200..300).contains(&status) {
                    tally.valid_2xx += 1;
                }
                if status == 400 || status == 413 {
                    tally.valid_refused += 1;
                    tally
                        .refused_example
                        .get_or_insert_with(|| format!("{shown} -> {}", short(&text)));
                }
            } else {
                tally.invalid += 1;
                if case.breaks_exact && (200..300).contains(&status) {
                    failures.push(format!(
                        "{shown}: accepted ({status}) although a parameter breaks its schema"
                    ));
                }
            }
        }
    }
    for (name, t) in &tallies {
        eprintln!(
            "{name}: {} valid ({} 2xx, {} refused), {} invalid; statuses {:?}",
            t.valid, t.valid_2xx, t.valid_refused, t.invalid, t.statuses
        );
        assert!(t.valid > 0, "{name}: no schema-valid request was generated");
        if t.valid_refused as f64 > MAX_REFUSED_SHARE * t.valid as f64 {
            failures.push(format!(
                "{name}: {} of {} schema-valid requests were refused as malformed, e.g. {}",
                t.valid_refused,
                t.valid,
                t.refused_example.as_deref().unwrap_or("")
            ));
        }
    }
    // Every operation answered 2xx at least once, so the generator reaches real work.
    let never: Vec<&String> = tallies
        .iter()
        .filter(|(_, t)| t.valid_2xx == 0)
        .map(|(name, _)| name)
        .collect();
    eprintln!("operations that never answered 2xx: {never:?}");
    assert!(
        failures.is_empty(),
        "seed {seed}: {} failures:\n{}",
        failures.len(),
        failures[..failures.len().min(40)].join("\n")
    );
}
