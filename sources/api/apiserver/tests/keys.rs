//! Every key the model accepts can be stored and reads back identically through the real API
//! server; every key it refuses is refused with a 400 that names the key, never a 500.
//!
//! The keys come from the maps of the model whose keys the user chooses (sysctl names,
//! host-container and PKI bundle names): a fixed list of the cases that matter (dots, slashes,
//! quotes, backslashes, unicode, the length limits) and a few hundred generated ones. The
//! generator is a fixed-seed xorshift, so a failure is reproducible; the seed is printed.

use serde_json::{json, Value};
use testserver::TestServer;

/// Deterministic pseudo-random numbers (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Characters of names the model's key types allow (sysctl names take all of them,
/// identifiers the letters, digits and '-').
const PLAUSIBLE: &[char] = &[
    'a', 'b', 'k', 'z', 'A', 'Q', '0', '4', '9', '-', '_', 'n', 'e', 't', '.', '/',
];

/// Characters that need quoting or that no key may hold.
const HOSTILE: &[char] = &[
    '"', '\\', ' ', '\'', 'é', '日', '%', ':', '*', '\t', '.', '/',
];

fn generated(rng: &mut Rng) -> String {
    let len = match rng.below(4) {
        0 => 1 + rng.below(8),
        1 => 1 + rng.below(80),
        2 => 220 + rng.below(40),
        _ => 1 + rng.below(260),
    };
    let hostile = rng.below(4) == 0;
    (0..len)
        .map(|_| {
            if hostile && rng.below(8) == 0 {
                HOSTILE[rng.below(HOSTILE.len())]
            } else if rng.below(6) == 0 {
                PLAUSIBLE[rng.below(PLAUSIBLE.len())]
            } else {
                PLAUSIBLE[rng.below(PLAUSIBLE.len() - 2)]
            }
        })
        .collect()
}

fn fixed() -> Vec<String> {
    let mut names: Vec<String> = [
        "net.ipv4.ip_forward",
        "net/ipv4/conf/eth0.100/rp_filter",
        "kernel.pid_max",
        "vm.max_map_count",
        "my-host",
        "admin",
        "a",
        "with space",
        "say \"hi\"",
        "back\\slash",
        "é",
        "日本",
        ".",
        "..",
        "-leading-dash",
        "trailing.",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Around every limit: 76 (identifiers), 230 (the longest sysctl segment that still fits a
    // 255-byte key), 255 (sysctl names, file names), with and without characters that the
    // datastore's file names spell as three bytes.
    for len in [75, 76, 77, 229, 230, 231, 254, 255, 256] {
        names.push("x".repeat(len));
        names.push(format!("net.{}", "y".repeat(len.saturating_sub(4))));
    }
    names.push("a/".repeat(85).trim_end_matches('/').to_string());
    names
}

/// Where a user-chosen map key goes, and a value the model accepts under it.
struct Place {
    path: &'static [&'static str],
    value: Value,
}

fn places() -> Vec<Place> {
    vec![
        Place {
            path: &["kernel", "sysctl"],
            value: json!("1"),
        },
        Place {
            path: &["host-containers"],
            value: json!({"enabled": false}),
        },
        Place {
            path: &["pki"],
            value: json!({"trusted": true}),
        },
    ]
}

fn nest(path: &[&str], name: &str, value: &Value) -> Value {
    let mut doc = json!({ name: value });
    for segment in path.iter().rev() {
        doc = json!({ *segment: doc });
    }
    doc
}

fn lookup<'a>(settings: &'a Value, path: &[&str], name: &str) -> Option<&'a Value> {
    let mut node = settings;
    for segment in path {
        node = node.get(*segment)?;
    }
    node.get(name)
}

/// Sets `name` under `place` through PATCH and commit; returns whether the model accepted it.
/// Accepted keys must read back identically; refused ones must be a 400 naming a key under
/// the place.
fn try_key(server: &TestServer, place: &Place, name: &str) -> bool {
    let doc = nest(place.path, name, &place.value);
    let (status, body) = server.raw("PATCH", "/settings?tx=keys", Some(&doc.to_string()));
    let map_key = settings_key::join(std::iter::once("settings").chain(place.path.iter().copied()));
    if status == 400 {
        let error: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        let key = error["key"]
            .as_str()
            .unwrap_or_else(|| panic!("no key: {body}"));
        assert!(
            key.starts_with(&map_key),
            "refusal of {name:?} names {key}, not a key under {map_key}: {body}"
        );
        return false;
    }
    assert_eq!(
        status, 204,
        "PATCH of {name:?} under {map_key}: {status} {body}"
    );
    let (status, committed) = server.raw("POST", "/tx/commit?tx=keys", None);
    assert_eq!(
        status, 200,
        "commit of {name:?} under {map_key}: {committed}"
    );
    let settings = server.json("GET", "/settings", None);
    let stored = lookup(&settings, place.path, name);
    // Compare what was set; a group may carry other fields from the defaults ("admin").
    let read_back = match (stored, &place.value) {
        (Some(Value::Object(stored)), Value::Object(set)) => {
            set.iter().all(|(k, v)| stored.get(k) == Some(v))
        }
        (stored, set) => stored == Some(set),
    };
    assert!(
        read_back,
        "{name:?} under {map_key} did not read back as it was set: {stored:?}"
    );
    // The keys the commit reports changed parse back to the same segments (a commit that
    // changes nothing, such as admin's `enabled` already false, reports none).
    let changed: Vec<String> = serde_json::from_str(&committed).unwrap_or_default();
    for key in changed {
        let segments = settings_key::split(&key).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(settings_key::join(&segments), key);
        assert!(segments.iter().any(|s| s == name), "{key} lacks {name:?}");
    }
    true
}

#[test]
fn every_key_the_model_accepts_is_stored_and_reads_back() {
    let server = TestServer::start();
    let seed = 0x5eed_f00d_ba11_a570;
    eprintln!("generated keys use seed {seed:#x}");
    let mut rng = Rng(seed);
    let mut names = fixed();
    names.extend((0..300).map(|_| generated(&mut rng)));
    let (mut accepted, mut refused) = (0, 0);
    for place in places() {
        for name in &names {
            if try_key(&server, &place, name) {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
    }
    eprintln!("{accepted} keys stored and read back, {refused} refused with 400");
    // The generated mix must exercise both sides, or the test proves nothing.
    assert!(accepted > 50, "only {accepted} accepted");
    assert!(refused > 50, "only {refused} refused");
}

/// A sysctl name the sysctl type accepts (at most 255 characters) but whose key would not fit
/// the datastore is refused up front, with the key named, not by the store with a 500.
#[test]
fn over_long_keys_are_a_400_naming_the_key() {
    let server = TestServer::start();
    let name = format!("net.{}", "y".repeat(240));
    let doc = nest(&["kernel", "sysctl"], &name, &json!("1"));
    let (status, body) = server.raw("PATCH", "/settings?tx=long", Some(&doc.to_string()));
    assert_eq!(status, 400, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        error["key"],
        format!("settings.kernel.sysctl.\"{name}\""),
        "{body}"
    );
    // The sysctl key type itself refuses a key too long to store, with its own limit.
    let limit = format!("at most {}", models::modeled_types::MAX_SYSCTL_KEY_LEN);
    assert!(error["error"].as_str().unwrap().contains(&limit), "{body}");
    // Nothing was written.
    let (status, _) = server.raw("POST", "/tx/commit?tx=long", None);
    assert_ne!(status, 200);

    // The same through apiclient's key=value form.
    let out = server.apiclient(&["set", &format!("kernel.sysctl.\"{name}\"=1")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Here the whole key is refused first, for its length in the key grammar.
    let whole = format!("at most {}", settings_key::MAX_KEY_LEN);
    assert!(stderr.contains(&whole), "{stderr}");
}
