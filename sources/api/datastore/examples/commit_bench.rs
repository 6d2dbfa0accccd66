//! Prints how long datastore operations take on this machine's disk:
//! `cargo run --release -p datastore --example commit_bench [DIR] [ROUNDS]`.
//! DIR (default: a temporary directory) should be on the file system to measure.
//!
//! Each round is what `apiclient set motd=...` does: write one key into a pending transaction,
//! then commit it. The commit is timed on its own; "settle" is the background work of the
//! previous commit that the next write waits for (usually already done by then).

use datastore::{Committed, DataStore, FilesystemDataStore, Key, KeyType};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[expect(
    clippy::cast_sign_loss,
    reason = "the ranks are fractions of the sample count, never negative"
)]
fn percentiles(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0;
    println!(
        "{label:<28} p50 {:7.3} ms   p90 {:7.3} ms   p99 {:7.3} ms   (n={})",
        at(0.5),
        at(0.9),
        at(0.99),
        samples.len()
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let temp = tempfile::tempdir()?;
    let base = args
        .next()
        .map(Into::into)
        .unwrap_or_else(|| temp.path().to_path_buf());
    let rounds: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(300);

    let mut ds = FilesystemDataStore::create(&base, "bench")?;
    // A store of realistic size: a few hundred settings.
    let mut seed = BTreeMap::new();
    for i in 0..400 {
        seed.insert(
            Key::new(KeyType::Data, format!("settings.group{}.key{i}", i % 20))?,
            format!("\"value {i}\""),
        );
    }
    ds.set_keys(&seed, &Committed::Live)?;

    let motd = Key::new(KeyType::Data, "settings.motd")?;
    let tx = Committed::Pending {
        tx: "bench".to_string(),
    };
    let (mut patch, mut commit, mut settle, mut five) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        let started = Instant::now();
        ds.sync()?;
        settle.push(started.elapsed());

        let started = Instant::now();
        ds.set_keys(
            &BTreeMap::from([(motd.clone(), format!("\"motd {round}\""))]),
            &tx,
        )?;
        patch.push(started.elapsed());

        let started = Instant::now();
        let record = ds.commit_transaction("bench", None)?;
        commit.push(started.elapsed());
        assert_eq!(record.changes.len(), 1);
    }
    for round in 0..rounds / 3 {
        let pairs: BTreeMap<Key, String> = (0..5)
            .map(|i| {
                let key = Key::new(KeyType::Data, format!("settings.group{i}.key{i}")).unwrap();
                (key, format!("{round}"))
            })
            .collect();
        ds.set_keys(&pairs, &tx)?;
        let started = Instant::now();
        ds.commit_transaction("bench", None)?;
        five.push(started.elapsed());
    }
    println!("datastore at {}", ds.path().display());
    percentiles("set_keys, 1 key (pending)", patch);
    percentiles("commit, 1 key", commit);
    percentiles("commit, 5 keys", five);
    percentiles("settle of previous commit", settle);
    Ok(())
}
