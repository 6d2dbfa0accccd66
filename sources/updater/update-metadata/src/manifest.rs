//! `manifest.json`, the update manifest: a TUF target that lists every update in the repository.
//!
//! The shape is Bottlerocket's, so that its tools and habits carry over:
//!
//! ```json
//! {
//!   "updates": [
//!     {
//!       "variant": "dev",
//!       "arch": "x86_64",
//!       "version": "0.2.0",
//!       "max_version": "0.2.0",
//!       "waves": { "0": "2024-01-15T01:00:00Z", "20": "2024-01-15T04:00:00Z" },
//!       "images": {
//!         "boot": "ballast-dev-x86_64-0.2.0-4f2a9c1-boot.ext4.zst",
//!         "root": "ballast-dev-x86_64-0.2.0-4f2a9c1-root.erofs.zst",
//!         "hash": "ballast-dev-x86_64-0.2.0-4f2a9c1-root.verity.zst"
//!       }
//!     }
//!   ],
//!   "migrations": { "(0.1.0, 0.2.0)": ["migrate_v0.2.0_example"] }
//! }
//! ```
//!
//! * `version` and `max_version` are semantic versions. A node takes updates of its own variant
//!   and arch with `version <= max_version`; lowering `max_version` walks a fleet back from a
//!   pulled release.
//! * `waves` maps a seed bound (0-2048) to the time from which nodes whose seed is in that part of
//!   the fleet may update (see [`crate::waves`]). No waves: every node may update at once.
//! * `images` name the TUF targets written to the inactive BOOT, ROOT and HASH partitions.
//! * `migrations` maps `"(from, to)"` to the settings migrations to run between two versions
//!   (each a target name), in order. Pairs must not overlap; a node going from one version to
//!   another runs the lists of every pair on the way ([`Manifest::migrations_between`]).
//!
//! Like Bottlerocket since 2020 there is no `datastore_version`: the datastore version is the OS
//! version. Unknown fields are refused, so a typo does not silently disable a check.

use crate::error::{self, Result};
use jiff::Timestamp;
use semver::Version;
use serde::{Deserialize, Serialize};
use snafu::{ensure, ResultExt};
use std::collections::{BTreeMap, BTreeSet};

/// The target name of the manifest.
pub const MANIFEST_TARGET: &str = "manifest.json";
/// The largest seed a node may draw; wave bounds are at most this.
pub const MAX_SEED: u32 = 2048;

/// The target names of one update's images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Images {
    /// For BOOT-A or BOOT-B.
    pub boot: String,
    /// For ROOT-A or ROOT-B.
    pub root: String,
    /// For HASH-A or HASH-B.
    pub hash: String,
}

impl Images {
    /// The three names, boot first.
    pub fn names(&self) -> [&str; 3] {
        [&self.boot, &self.root, &self.hash]
    }
}

/// One OS version of one variant and arch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    pub variant: String,
    pub arch: String,
    pub version: Version,
    pub max_version: Version,
    #[serde(default)]
    pub waves: BTreeMap<u32, Timestamp>,
    pub images: Images,
}

impl Update {
    /// Whether the node with `seed` may take this update at `now` (see [`crate::waves`]).
    pub fn is_ready(&self, seed: u32, now: Timestamp) -> bool {
        crate::waves::is_ready(&self.waves, seed, now)
    }

    /// From when the node with `seed` may take this update; `None` means at once.
    pub fn ready_at(&self, seed: u32) -> Option<Timestamp> {
        crate::waves::ready_at(&self.waves, seed)
    }
}

/// The whole manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub updates: Vec<Update>,
    #[serde(default, with = "migration_map")]
    pub migrations: BTreeMap<(Version, Version), Vec<String>>,
}

impl Manifest {
    /// Parses `manifest.json`; the error names the field that failed (`updates[1].version`).
    pub fn parse(bytes: &[u8]) -> Result<Manifest> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(de).map_err(|e| {
            error::ManifestParseSnafu {
                path: e.path().to_string(),
                message: e.inner().to_string(),
            }
            .build()
        })
    }

    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut bytes = serde_json::to_vec_pretty(self).context(error::ManifestSerializeSnafu)?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// The update of `variant`, `arch` and `version`, if listed.
    pub fn find(&self, variant: &str, arch: &str, version: &Version) -> Option<&Update> {
        self.updates
            .iter()
            .find(|u| u.variant == variant && u.arch == arch && &u.version == version)
    }

    /// Adds `update`, as Bottlerocket's publishing tool does: its `max_version` becomes
    /// `max_version` if given, else the higher of its version and the current `max_version` of
    /// its variant and arch; every update of the same variant and arch then gets that
    /// `max_version`. An update of the same variant, arch and version is refused unless
    /// `replace` is set, in which case it is removed and returned (so its targets can go too).
    pub fn add_update(
        &mut self,
        mut update: Update,
        max_version: Option<Version>,
        replace: bool,
    ) -> Result<Option<Update>> {
        let same = |u: &Update| {
            u.variant == update.variant && u.arch == update.arch && u.version == update.version
        };
        let replaced = match self.updates.iter().position(same) {
            Some(_) if !replace => {
                return error::DuplicateSnafu {
                    variant: update.variant,
                    arch: update.arch,
                    version: update.version,
                }
                .fail()
            }
            Some(i) => Some(self.updates.remove(i)),
            None => None,
        };
        let max_version = max_version.unwrap_or_else(|| {
            self.updates
                .iter()
                .filter(|u| u.variant == update.variant && u.arch == update.arch)
                .map(|u| &u.max_version)
                .chain([&update.version])
                .max()
                .expect("the new version is in the list")
                .clone()
        });
        ensure!(
            max_version >= update.version,
            error::MaxBelowVersionSnafu {
                version: update.version.clone(),
                max_version,
            }
        );
        for u in &mut self.updates {
            if u.variant == update.variant && u.arch == update.arch {
                u.max_version = max_version.clone();
            }
        }
        update.max_version = max_version;
        self.updates.push(update);
        // Stable order for readers: by variant and arch, newest version first.
        self.updates.sort_by(|a, b| {
            (&a.variant, &a.arch)
                .cmp(&(&b.variant, &b.arch))
                .then_with(|| b.version.cmp(&a.version))
        });
        Ok(replaced)
    }

    /// The migrations a node runs when it goes from `from` to `to`, in the order it runs them.
    ///
    /// The pairs `(a, b)` with both ends between the two versions (inclusive) are taken in
    /// version order and their lists joined; for a downgrade (`to < from`) the joined list is
    /// reversed, since each migration then runs backward. Pairs that straddle `from` or `to`
    /// are not on the way and are skipped. Pairs on the way that overlap are refused: there
    /// would be no single order to run them in.
    pub fn migrations_between(&self, from: &Version, to: &Version) -> Result<Vec<String>> {
        let (low, high) = if from <= to { (from, to) } else { (to, from) };
        let on_the_way: Vec<(&(Version, Version), &Vec<String>)> = self
            .migrations
            .iter()
            .filter(|((a, b), _)| a >= low && b <= high && a < b)
            .collect();
        for pair in on_the_way.windows(2) {
            let ((a1, b1), (a2, b2)) = (pair[0].0, pair[1].0);
            ensure!(
                a2 >= b1,
                error::MigrationsOverlapSnafu {
                    first: format!("({a1}, {b1})"),
                    second: format!("({a2}, {b2})"),
                }
            );
        }
        let mut names: Vec<String> = on_the_way
            .into_iter()
            .flat_map(|(_, names)| names.iter().cloned())
            .collect();
        if to < from {
            names.reverse();
        }
        Ok(names)
    }

    /// Every target name the manifest refers to: images and migrations.
    pub fn referenced_targets(&self) -> BTreeSet<&str> {
        let images = self.updates.iter().flat_map(|u| u.images.names());
        let migrations = self.migrations.values().flatten().map(String::as_str);
        images.chain(migrations).collect()
    }

    /// Everything wrong with the manifest, given which target names the repository holds:
    /// missing targets, `max_version` below `version`, duplicate updates, images shared between
    /// updates, waves out of range or out of order, migrations that go nowhere.
    pub fn problems(&self, has_target: impl Fn(&str) -> bool) -> Vec<String> {
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        let mut image_owner: BTreeMap<&str, String> = BTreeMap::new();
        for u in &self.updates {
            let id = format!("{} {} {}", u.variant, u.arch, u.version);
            if !seen.insert((&u.variant, &u.arch, &u.version)) {
                problems.push(format!("{id} is listed more than once"));
            }
            if u.max_version < u.version {
                problems.push(format!(
                    "{id} has max_version {} below its version",
                    u.max_version
                ));
            }
            for (kind, name) in [
                ("boot", &u.images.boot),
                ("root", &u.images.root),
                ("hash", &u.images.hash),
            ] {
                if !has_target(name) {
                    problems.push(format!("{id}: {kind} image {name} is not a target"));
                }
                if let Some(other) = image_owner.insert(name, id.clone()) {
                    problems.push(format!("{id}: {kind} image {name} is also used by {other}"));
                }
            }
            let mut previous: Option<(u32, Timestamp)> = None;
            for (&seed, &time) in &u.waves {
                if seed > MAX_SEED {
                    problems.push(format!("{id}: wave bound {seed} is above {MAX_SEED}"));
                }
                if let Some((prev_seed, prev_time)) = previous {
                    if time <= prev_time {
                        problems.push(format!(
                            "{id}: wave {seed} starts at {time}, not after wave {prev_seed} \
                             ({prev_time})"
                        ));
                    }
                }
                previous = Some((seed, time));
            }
        }
        let pairs: Vec<&(Version, Version)> = self.migrations.keys().collect();
        for pair in pairs.windows(2) {
            let ((a1, b1), (a2, b2)) = (pair[0], pair[1]);
            if a2 < b1 {
                problems.push(format!(
                    "migrations ({a1}, {b1}) and ({a2}, {b2}) overlap: a node would not know \
                     which to run"
                ));
            }
        }
        for ((from, to), names) in &self.migrations {
            if from > to {
                problems.push(format!(
                    "migrations ({from}, {to}) go backward; list them forward, nodes run them \
                     backward on a downgrade"
                ));
            }
            if from == to {
                problems.push(format!(
                    "migrations ({from}, {to}) go from a version to itself"
                ));
            }
            for name in names {
                if !has_target(name) {
                    problems.push(format!(
                        "migration {name} for ({from}, {to}) is not a target"
                    ));
                }
            }
        }
        problems
    }

    /// Fails with every problem found by [`problems`](Self::problems).
    pub fn check(&self, has_target: impl Fn(&str) -> bool) -> Result<()> {
        let problems = self.problems(has_target);
        ensure!(
            problems.is_empty(),
            error::ManifestInvalidSnafu { problems }
        );
        Ok(())
    }
}

/// `{"(1.0.4, 1.0.5)": [...]}` in JSON, a map keyed by version pairs in memory.
mod migration_map {
    use semver::Version;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeMap;

    type Map = BTreeMap<(Version, Version), Vec<String>>;

    pub fn serialize<S: Serializer>(map: &Map, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(
            map.iter()
                .map(|((from, to), names)| (format!("({from}, {to})"), names)),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map, D::Error> {
        let raw = BTreeMap::<String, Vec<String>>::deserialize(d)?;
        let mut map = Map::new();
        for (key, names) in raw {
            let pair = key
                .strip_prefix('(')
                .and_then(|k| k.strip_suffix(')'))
                .and_then(|k| k.split_once(','))
                .ok_or_else(|| {
                    D::Error::custom(format!(
                        "migration key {key:?} is not of the form \"(FROM, TO)\""
                    ))
                })?;
            let parse = |v: &str| {
                Version::parse(v.trim()).map_err(|e| {
                    D::Error::custom(format!("migration key {key:?}: {:?}: {e}", v.trim()))
                })
            };
            map.insert((parse(pair.0)?, parse(pair.1)?), names);
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(version: &str) -> Update {
        Update {
            variant: "dev".into(),
            arch: "x86_64".into(),
            version: version.parse().unwrap(),
            max_version: version.parse().unwrap(),
            waves: BTreeMap::new(),
            images: Images {
                boot: format!("b-{version}"),
                root: format!("r-{version}"),
                hash: format!("h-{version}"),
            },
        }
    }

    #[test]
    fn bottlerocket_shape_round_trips() {
        let text = r#"{
          "updates": [{
            "variant": "aws-k8s-1.31", "arch": "x86_64",
            "version": "1.20.0", "max_version": "1.20.1",
            "waves": {"0": "2024-01-15T00:00:00Z", "512": "2024-01-15T12:00:00Z"},
            "images": {"boot": "b.lz4", "root": "r.lz4", "hash": "h.lz4"}
          }],
          "migrations": {"(1.19.0, 1.20.0)": ["migrate_v1.20.0_x"]}
        }"#;
        let m = Manifest::parse(text.as_bytes()).unwrap();
        assert_eq!(m.updates[0].max_version, Version::new(1, 20, 1));
        assert_eq!(m.updates[0].waves.len(), 2);
        let key = (Version::new(1, 19, 0), Version::new(1, 20, 0));
        assert_eq!(m.migrations[&key], ["migrate_v1.20.0_x"]);
        let json: serde_json::Value = serde_json::from_slice(&m.to_json().unwrap()).unwrap();
        assert_eq!(
            json["migrations"]["(1.19.0, 1.20.0)"][0],
            "migrate_v1.20.0_x"
        );
        assert_eq!(json["updates"][0]["waves"]["512"], "2024-01-15T12:00:00Z");
        assert_eq!(Manifest::parse(&m.to_json().unwrap()).unwrap(), m);
    }

    #[test]
    fn parse_errors_name_the_field() {
        let bad = r#"{"updates": [{"variant": "dev", "arch": "x86_64", "version": "1.x",
            "max_version": "1.0.0", "images": {"boot": "b", "root": "r", "hash": "h"}}],
            "migrations": {}}"#;
        let err = Manifest::parse(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("updates[0].version"), "{err}");
        let bad = r#"{"updates": [], "migrations": {"1.0.0 -> 1.1.0": []}}"#;
        let err = Manifest::parse(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("(FROM, TO)"), "{err}");
        let bad = r#"{"updates": [], "datastore_version": "1.0"}"#;
        assert!(Manifest::parse(bad.as_bytes()).is_err());
    }

    #[test]
    fn max_version_follows_bottlerocket() {
        let mut m = Manifest::default();
        m.add_update(update("1.0.0"), None, false).unwrap();
        m.add_update(update("1.1.0"), None, false).unwrap();
        assert!(m
            .updates
            .iter()
            .all(|u| u.max_version == Version::new(1, 1, 0)));
        assert_eq!(m.updates[0].version, Version::new(1, 1, 0), "newest first");
        // Adding an older one keeps the ceiling.
        m.add_update(update("1.0.5"), None, false).unwrap();
        assert!(m
            .updates
            .iter()
            .all(|u| u.max_version == Version::new(1, 1, 0)));
        // An explicit ceiling walks the fleet back.
        m.add_update(update("1.0.6"), Some(Version::new(1, 0, 6)), false)
            .unwrap();
        assert!(m
            .updates
            .iter()
            .all(|u| u.max_version == Version::new(1, 0, 6)));
        let err = m
            .add_update(update("1.2.0"), Some(Version::new(1, 0, 0)), false)
            .unwrap_err();
        assert!(err.to_string().contains("lower than the version"), "{err}");

        let err = m.add_update(update("1.0.0"), None, false).unwrap_err();
        assert!(err.to_string().contains("--replace"), "{err}");
        let old = m.add_update(update("1.0.0"), None, true).unwrap().unwrap();
        assert_eq!(old.version, Version::new(1, 0, 0));
        assert_eq!(m.updates.len(), 4);
    }

    #[test]
    fn migrations_on_the_way() {
        let v = |s: &str| Version::parse(s).unwrap();
        let mut m = Manifest::default();
        for (from, to, names) in [
            ("1.0.0", "1.1.0", vec!["m_a", "m_b"]),
            ("1.1.0", "1.2.0", vec![]),
            ("1.2.0", "1.3.0", vec!["m_c"]),
        ] {
            m.migrations.insert(
                (v(from), v(to)),
                names.into_iter().map(Into::into).collect(),
            );
        }
        let between = |a, b| m.migrations_between(&v(a), &v(b)).unwrap();
        assert_eq!(between("1.0.0", "1.3.0"), ["m_a", "m_b", "m_c"]);
        assert_eq!(between("1.3.0", "1.0.0"), ["m_c", "m_b", "m_a"]);
        assert_eq!(between("1.1.0", "1.3.0"), ["m_c"]);
        assert_eq!(between("1.0.0", "1.1.0"), ["m_a", "m_b"]);
        assert!(
            between("1.0.5", "1.2.0").is_empty(),
            "(1.0, 1.1) straddles 1.0.5"
        );
        assert!(between("1.3.0", "1.3.0").is_empty());
        assert!(m.problems(|_| true).is_empty());

        m.migrations
            .insert((v("1.0.0"), v("1.2.0")), vec!["m_x".into()]);
        let err = m
            .migrations_between(&v("1.0.0"), &v("1.3.0"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("(1.0.0, 1.1.0)") && err.contains("(1.0.0, 1.2.0)"),
            "{err}"
        );
        assert!(m.problems(|_| true).join("\n").contains("overlap"));
    }

    #[test]
    fn problems_are_all_listed() {
        let mut m = Manifest::default();
        let mut u = update("1.0.0");
        u.max_version = Version::new(0, 9, 0);
        u.waves.insert(0, "2024-01-02T00:00:00Z".parse().unwrap());
        u.waves.insert(100, "2024-01-01T00:00:00Z".parse().unwrap());
        u.waves
            .insert(4096, "2024-01-03T00:00:00Z".parse().unwrap());
        m.updates.push(u.clone());
        m.updates.push(u);
        m.migrations.insert(
            (Version::new(1, 0, 0), Version::new(1, 0, 0)),
            vec!["migrate_x".into()],
        );
        let has = |name: &str| name.starts_with("b-");
        let problems = m.problems(has);
        let text = problems.join("\n");
        for expected in [
            "listed more than once",
            "max_version 0.9.0 below",
            "root image r-1.0.0 is not a target",
            "hash image h-1.0.0 is not a target",
            "is also used by",
            "not after wave 0",
            "4096 is above 2048",
            "from a version to itself",
            "migration migrate_x",
        ] {
            assert!(text.contains(expected), "{expected}: {text}");
        }
        assert!(
            !text.contains("boot image b-1.0.0 is not a target"),
            "{text}"
        );
        assert!(m
            .check(has)
            .unwrap_err()
            .to_string()
            .contains("inconsistent"));
    }
}
