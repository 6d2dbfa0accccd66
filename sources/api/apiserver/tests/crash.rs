//! Crash test: SIGKILL the server at random moments while a client commits, restart it, and check
//! that live settings always equal one whole commit: the last acknowledged one, or the one that
//! was in flight when the server died. Never a mixture, never older.

use rand::Rng;
use std::time::Duration;
use testserver::TestServer;

const TARGET_COMMITS: u64 = 520;

fn generation(server: &TestServer) -> u64 {
    let s = server.json("GET", "/settings", None);
    let motd = s["motd"].as_str().unwrap_or_default();
    let Some(n) = motd.strip_prefix("gen-") else {
        return 0;
    };
    let host = s["network"]["hostname"].as_str().unwrap_or_default();
    let seed = s["updates"]["seed"].as_u64().unwrap_or(u64::MAX);
    let n: u64 = n.parse().unwrap();
    assert_eq!(host, format!("host-{n}"), "live store mixes commits: {s}");
    assert_eq!(seed, n % 2048, "live store mixes commits: {s}");
    n
}

#[test]
fn sigkill_during_commits_never_loses_or_mixes_a_commit() {
    let mut server = TestServer::start();
    let mut rng = rand::rng();
    let mut acked = generation(&server);
    let (mut kills, mut commits, mut in_flight_landed) = (0u32, 0u64, 0u32);
    while commits < TARGET_COMMITS {
        let pid = server.pid();
        let delay = Duration::from_micros(rng.random_range(0..40_000));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        });
        let mut in_flight = None;
        loop {
            let n = acked + 1;
            let tx = format!("crash-{n}");
            let body = format!(
                r#"{{"motd":"gen-{n}","network":{{"hostname":"host-{n}"}},"updates":{{"seed":{}}}}}"#,
                n % 2048
            );
            match server.try_raw("PATCH", &format!("/settings?tx={tx}"), Some(&body)) {
                Ok((204, _)) => {}
                Ok((status, text)) => panic!("PATCH answered {status}: {text}"),
                Err(_) => break,
            }
            in_flight = Some(n);
            match server.try_raw("POST", &format!("/tx/commit_and_apply?tx={tx}"), None) {
                Ok((200, _)) => {
                    acked = n;
                    commits += 1;
                    in_flight = None;
                }
                Ok((status, text)) => panic!("commit answered {status}: {text}"),
                Err(_) => break,
            }
        }
        killer.join().unwrap();
        server.reap();
        kills += 1;
        server.spawn();
        let live = generation(&server);
        if Some(live) == in_flight {
            in_flight_landed += 1;
            acked = live;
        } else {
            assert_eq!(
                live, acked,
                "after kill {kills}: live is generation {live}, last acknowledged {acked}, in flight {in_flight:?}"
            );
        }
    }
    println!(
        "crash test: {kills} SIGKILLs during {commits} acknowledged commits; \
         {in_flight_landed} in-flight commits were found complete after restart; \
         no lost or mixed commit"
    );
    assert!(kills >= 20, "only {kills} kills happened");
}
