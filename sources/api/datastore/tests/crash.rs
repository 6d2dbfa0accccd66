//! Crash consistency: a child process commits generation after generation (every seventh one it
//! also undoes and redoes, and some pairs of generations it commits as one group commit of two
//! transactions) and is killed with SIGKILL at random moments; after every kill
//! the store is reopened and must hold exactly one complete generation: the state the child last
//! reported durable, or the one its operation in flight was producing.
//!
//! The child is this same test binary, started again with `DATASTORE_CRASH_WORKER` naming the
//! store; in that mode the `crash_worker` test runs the commit loop (in a normal run it does
//! nothing). Set `DATASTORE_CRASH_KILLS` to change the number of kills (default 200).

use datastore::{Committed, DataStore, FilesystemDataStore, Key, KeyType};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::Rng;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WORKER_ENV: &str = "DATASTORE_CRASH_WORKER";
const KILLS_ENV: &str = "DATASTORE_CRASH_KILLS";
const TX: &str = "crash";
/// The second transaction of a group commit.
const TX_B: &str = "crash-b";
const FIXED: usize = 5;
const VARY: u64 = 10;
const BULK: u64 = 13;

fn key(name: &str) -> Key {
    Key::new(KeyType::Data, name).unwrap()
}

/// Every key generation `n` writes, with the value `n`: five fixed keys, a quoted one, one of
/// ten rotating keys, and a varying number of "bulk" keys.
fn generation(n: u64) -> BTreeMap<Key, String> {
    let value = n.to_string();
    let mut pairs = BTreeMap::new();
    for i in 0..FIXED {
        pairs.insert(key(&format!("settings.fixed.k{i}")), value.clone());
    }
    pairs.insert(key("settings.quoted.\"a.b/c\""), value.clone());
    pairs.insert(key(&format!("settings.vary.v{}", n % VARY)), value.clone());
    for j in 0..n % BULK {
        pairs.insert(key(&format!("settings.bulk.b{j}")), value.clone());
    }
    pairs
}

/// The generation live holds, after checking that every key agrees with it.
fn check_live(ds: &FilesystemDataStore) -> u64 {
    let live = ds.get_prefix("settings.", &Committed::Live).unwrap();
    let value = |name: &str| live.get(&key(name)).map(|v| v.parse::<u64>().unwrap());
    let Some(g) = value("settings.fixed.k0") else {
        assert!(live.is_empty(), "keys without a generation: {live:?}");
        return 0;
    };
    for i in 0..FIXED {
        assert_eq!(
            value(&format!("settings.fixed.k{i}")),
            Some(g),
            "k{i} vs k0"
        );
    }
    assert_eq!(value("settings.quoted.\"a.b/c\""), Some(g));
    // The rotating keys hold the last ten generations.
    for back in 0..VARY.min(g) {
        let m = g - back;
        assert_eq!(
            value(&format!("settings.vary.v{}", m % VARY)),
            Some(m),
            "vary at {g}"
        );
    }
    // Bulk key j holds the newest generation m <= g that wrote it (m % 13 > j).
    for j in 0..BULK - 1 {
        let expected = (1..=g).rev().find(|m| m % BULK > j);
        assert_eq!(
            value(&format!("settings.bulk.b{j}")),
            expected,
            "b{j} at {g}"
        );
    }
    let expected_keys = FIXED as u64 + 1 + VARY.min(g) + (BULK - 1).min(g);
    assert_eq!(live.len() as u64, expected_keys, "unexpected keys at {g}");
    g
}

/// Every seventh generation is undone and redone, to crash inside undo commits too.
const UNDO_EVERY: u64 = 7;

/// The step after live reached generation `g` by a commit: generations n and n+1 with
/// n % 7 == 3 are committed together, as one group commit of two transactions (never next to an
/// undo); every other generation alone.
fn next_commit(g: u64) -> Step {
    if (g + 1) % UNDO_EVERY == 3 {
        Step::Group(g + 2)
    } else {
        Step::Commit(g + 1)
    }
}

/// The child: commits generations until it is killed, printing each step once it is durable.
#[test]
fn crash_worker() {
    let Ok(base) = std::env::var(WORKER_ENV) else {
        return;
    };
    let mut ds = FilesystemDataStore::open(&Path::new(&base).join("current")).unwrap();
    let start = check_live(&ds);
    println!("ready {start}");
    let mut n = start;
    loop {
        let tx = |name: &str| Committed::Pending { tx: name.into() };
        match next_commit(n) {
            Step::Group(m) => {
                ds.set_keys(&generation(m - 1), &tx(TX)).unwrap();
                ds.set_keys(&generation(m), &tx(TX_B)).unwrap();
                let records = ds.commit_transactions(&[(TX, None), (TX_B, None)]);
                for (record, g) in records.into_iter().zip([m - 1, m]) {
                    assert_eq!(record.unwrap().changes.len(), generation(g).len());
                }
                n = m;
            }
            _ => {
                n += 1;
                ds.set_keys(&generation(n), &tx(TX)).unwrap();
                let record = ds.commit_transaction(TX, None).unwrap();
                assert_eq!(record.changes.len(), generation(n).len());
            }
        }
        println!("done {n}");
        if n.is_multiple_of(UNDO_EVERY) {
            ds.undo(None, None).unwrap();
            println!("undone {n}");
            ds.undo(None, None).unwrap();
            println!("redone {n}");
        }
    }
}

/// What the worker does next, and the generation live holds once that step is complete.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    Commit(u64),
    /// Generations n-1 and n in one group commit: live goes from n-2 to n, never to n-1.
    Group(u64),
    Undo(u64),
    Redo(u64),
}

impl Step {
    fn target(self) -> u64 {
        match self {
            Step::Commit(n) | Step::Group(n) | Step::Redo(n) => n,
            Step::Undo(n) => n - 1,
        }
    }
}

/// The state after a reported line and the step the worker takes next.
fn after_line(line: &str) -> Option<(u64, Step)> {
    let number = |tag: &str| -> Option<u64> { Some(line.split_once(tag)?.1.parse().unwrap()) };
    if let Some(g) = number("ready ") {
        Some((g, next_commit(g)))
    } else if let Some(n) = number("undone ") {
        Some((n - 1, Step::Redo(n)))
    } else if let Some(n) = number("redone ") {
        Some((n, next_commit(n)))
    } else if let Some(n) = number("done ") {
        let next = if n % UNDO_EVERY == 0 {
            Step::Undo(n)
        } else {
            next_commit(n)
        };
        Some((n, next))
    } else {
        None
    }
}

/// Kills the worker if the test fails while it runs, so that no worker outlives the test.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = kill(
            Pid::from_raw(i32::try_from(self.0).unwrap()),
            Signal::SIGKILL,
        );
    }
}

/// Whether the store holds a journal newer than every history record, i.e. whether the next
/// `open` has a commit to finish. Reads the on-disk format directly.
fn journal_outstanding(version_dir: &Path) -> bool {
    let bytes = std::fs::read(version_dir.join("journal")).unwrap_or_default();
    let Some(header_end) = bytes.iter().position(|b| *b == b'\n') else {
        return false;
    };
    let header = String::from_utf8_lossy(&bytes[..header_end]).to_string();
    let Some(len) = header
        .split(' ')
        .nth(2)
        .and_then(|l| l.parse::<usize>().ok())
    else {
        return false;
    };
    let Some(body) = bytes.get(header_end + 1..header_end + 1 + len) else {
        return false;
    };
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    // One commit, or a group of them (the newest last).
    let newest = match body.get("commits") {
        Some(commits) => commits.as_array().unwrap().last().unwrap().clone(),
        None => body,
    };
    let id = newest["id"].as_u64().unwrap();
    let newest_recorded = std::fs::read_dir(version_dir.join("history"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".json")?.parse::<u64>().ok()
        })
        .max()
        .unwrap_or(0);
    id > newest_recorded
}

#[derive(Default)]
struct Totals {
    kills: u64,
    before_ready: u64,
    completed_by_recovery: u64,
    journal_replays: u64,
    partial_pending: u64,
}

#[test]
fn commits_survive_sigkill() {
    if std::env::var_os(WORKER_ENV).is_some() {
        return;
    }
    let kills: u64 = std::env::var(KILLS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    drop(FilesystemDataStore::create(base, "1").unwrap());
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    // The generation live holds as far as the worker reported, and its next step.
    let mut state = 0u64;
    let mut step = Step::Commit(1);
    let mut commits = 0u64;
    let mut totals = Totals::default();
    let started = Instant::now();

    while totals.kills < kills {
        let mut child = Command::new(&exe)
            .args(["crash_worker", "--exact", "--nocapture", "--test-threads=1"])
            .env(WORKER_ENV, base)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let guard = KillOnDrop(child.id());
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });

        // Mostly kill while it commits; sometimes while it starts up and recovers.
        let mut lines = Vec::new();
        if rng.random_range(0..8) == 0 {
            std::thread::sleep(Duration::from_micros(rng.random_range(0..3000)));
            totals.before_ready += 1;
        } else {
            // Skip the test harness's own lines up to "ready".
            loop {
                let line = lines_rx
                    .recv_timeout(Duration::from_secs(20))
                    .expect("worker did not start");
                if line.contains("ready ") {
                    lines.push(line);
                    break;
                }
            }
            // Let it finish a few commits (so that every life makes progress however slow the
            // machine is), then kill it at a random point of the next ones.
            let wait_for = rng.random_range(0..3);
            let mut done = 0;
            while done < wait_for {
                let line = lines_rx
                    .recv_timeout(Duration::from_secs(20))
                    .expect("worker stopped committing");
                done += usize::from(line.contains("done ") || line.contains("redone "));
                lines.push(line);
            }
            std::thread::sleep(Duration::from_micros(rng.random_range(0..20_000)));
        }
        kill(
            Pid::from_raw(i32::try_from(child.id()).unwrap()),
            Signal::SIGKILL,
        )
        .unwrap();
        let status = child.wait().unwrap();
        std::mem::forget(guard);
        reader.join().unwrap();
        lines.extend(lines_rx.try_iter());
        totals.kills += 1;
        assert!(
            status.code().is_none(),
            "the worker exited by itself ({status}); output: {lines:?}"
        );

        // Replay what the worker reported: each line is durable, and the next step is known.
        for line in &lines {
            let Some((reported, next)) = after_line(line) else {
                continue;
            };
            if line.contains("ready ") {
                assert_eq!(reported, state, "worker started from another generation");
            } else {
                assert_eq!(reported, step.target(), "{line} does not follow {step:?}");
            }
            state = reported;
            step = next;
            // Every reported line but "ready" is one commit (generation, undo or redo).
            commits += u64::from(!line.contains("ready "));
        }

        if journal_outstanding(&base.join("v1")) {
            totals.journal_replays += 1;
        }
        let ds = FilesystemDataStore::open(&base.join("current")).unwrap();
        let g = check_live(&ds);
        let pending_tx = ds.list_transactions().unwrap();
        if g != state {
            // Killed after the commit point of the step in flight but before it printed:
            // recovery (or the step itself) finished it.
            assert_eq!(
                g,
                step.target(),
                "live is neither the reported state {state} nor the result of {step:?}"
            );
            totals.completed_by_recovery += 1;
            state = g;
            assert!(pending_tx.is_empty(), "committed transaction still pending");
        } else if !pending_tx.is_empty() {
            // A commit in flight may have written part of its pending keys, never live ones.
            let expected: &[(&str, u64)] = match step {
                Step::Commit(m) => &[(TX, m)],
                Step::Group(m) => &[(TX, m - 1), (TX_B, m)],
                _ => panic!("pending keys left while {step:?} was in flight"),
            };
            totals.partial_pending += 1;
            for tx in &pending_tx {
                let (_, m) = expected
                    .iter()
                    .find(|(name, _)| name == tx)
                    .unwrap_or_else(|| panic!("unexpected pending transaction {tx}"));
                let pending = ds
                    .get_prefix("", &Committed::Pending { tx: tx.clone() })
                    .unwrap();
                assert!(
                    pending.values().all(|v| *v == m.to_string()),
                    "stale pending values in {tx}"
                );
            }
        }
        // A new worker starts from what live holds.
        step = next_commit(state);

        // The newest history record produced generation g, and ids only grow.
        let history = ds.history().unwrap();
        assert!(history.windows(2).all(|w| w[0].id < w[1].id));
        assert!(history.len() <= 256);
        if g > 0 {
            let newest = history.last().unwrap();
            let k0 = newest
                .changes
                .iter()
                .find(|c| c.key == "settings.fixed.k0")
                .unwrap();
            assert_eq!(k0.new.as_deref(), Some(g.to_string().as_str()));
        }
    }

    let elapsed = started.elapsed();
    println!(
        "crash test: {} kills ({} during start-up/recovery), {} commits reported durable \
         (last generation {state}), {} steps finished by recovery or just before the kill, \
         {} journals replayed by open, {} partial pending transactions left (never in live), \
         {:.1} s",
        totals.kills,
        totals.before_ready,
        commits,
        totals.completed_by_recovery,
        totals.journal_replays,
        totals.partial_pending,
        elapsed.as_secs_f64()
    );
    assert!(state > totals.kills / 2, "too few commits to mean anything");
}
