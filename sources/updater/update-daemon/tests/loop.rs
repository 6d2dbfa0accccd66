//! The daemon's decisions against a real apiserver (with the test updater and a recording
//! reboot command) and a real FleetLock server.

use std::sync::Arc;
use testserver::TestServer;
use tokio::runtime::Runtime as Rt;
use update_daemon::{tick, Config, State};
use update_policy::Action;

fn config(server: &TestServer, boot_id: &str) -> Config {
    let boot = server.dir.path().join("boot_id");
    std::fs::write(&boot, boot_id).unwrap();
    Config {
        socket: server.socket.clone(),
        state_file: server.dir.path().join("daemon/state.json"),
        boot_id_file: boot,
        poll: std::time::Duration::from_secs(1),
    }
}

fn set(server: &TestServer, json: &str) {
    let out = server.apiclient(&["set", "--json", json]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Decides until the action is `until`, waiting for each started action to finish.
fn until(
    rt: &Rt,
    server: &TestServer,
    config: &Config,
    state: &mut State,
    until: Action,
) -> Vec<Action> {
    let mut seen = Vec::new();
    for _ in 0..40 {
        let d = rt.block_on(tick(config, state)).unwrap();
        seen.push(d.action);
        if d.action == until {
            return seen;
        }
        wait_for_command(server);
    }
    panic!("never decided {until:?}; decided {seen:?}");
}

/// Waits for the updater command the daemon started to end, so the next decision does not see
/// it running (on a loaded machine a prepare takes seconds).
fn wait_for_command(server: &TestServer) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let s = server.json("GET", "/updates/status", None);
        if s["most_recent_command"]["cmd_status"] != "Running" {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the updater command never ended: {s:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn auto_with_a_fleet_lock_checks_stages_waits_for_the_slot_reboots_once_and_releases() {
    let rt = Rt::new().unwrap();
    let server = TestServer::start_with_updates(&["0.2.0"]);
    // A FleetLock server whose only slot another node holds.
    let dir = tempfile::tempdir().unwrap();
    let locks = Arc::new(fleetlock_server::Locks::open(&dir.path().join("l.json"), 1).unwrap());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    rt.spawn(async move { fleetlock_server::serve(listener, locks).await });
    let other = fleetlock::ClientParams {
        id: "other".into(),
        group: "default".into(),
    };
    assert_eq!(
        rt.block_on(fleetlock::pre_reboot(&url, &other)).unwrap(),
        fleetlock::Answer::Granted
    );

    set(
        &server,
        &format!(r#"{{"updates": {{"policy": "auto", "fleet-lock": {{"url": "{url}"}}}}}}"#),
    );
    let config = config(&server, "boot-1");
    let mut state = State::load(&config.state_file).unwrap();

    let seen = until(&rt, &server, &config, &mut state, Action::AcquireLock);
    assert_eq!(
        seen,
        [Action::Refresh, Action::Prepare, Action::AcquireLock]
    );
    let s = server.json("GET", "/updates/status", None);
    assert_eq!(s["update_state"], "Staged");
    assert_eq!(s["daemon"]["lock"], "waiting", "{s:#}");
    assert!(
        s["daemon"]["reason"]
            .as_str()
            .unwrap()
            .contains("held (by other)"),
        "{s:#}"
    );
    assert_eq!(s["daemon"]["policy"], "auto");
    assert_eq!(server.reboots(), 0);

    // The other node is done: this one takes the slot, activates and reboots, once.
    rt.block_on(fleetlock::steady_state(&url, &other)).unwrap();
    let seen = until(&rt, &server, &config, &mut state, Action::Reboot);
    assert_eq!(
        seen,
        [Action::AcquireLock, Action::Activate, Action::Reboot]
    );
    assert_eq!(server.reboots(), 1);
    assert!(state.memory.lock_held);
    let again = rt.block_on(tick(&config, &mut state)).unwrap();
    assert_eq!(again.action, Action::Wait, "{}", again.reason);
    assert_eq!(server.reboots(), 1, "never twice for one update");
    assert!(
        rt.block_on(fleetlock::pre_reboot(&url, &other)).unwrap() != fleetlock::Answer::Granted
    );

    // The next boot runs 0.2.0 (the pretend node boots what was activated).
    let mut node = server.node();
    let staged = node.inactive.image.clone().unwrap();
    node.inactive.image = Some(node.running.clone());
    node.running = staged;
    node.next_boot = node.inactive.set.clone();
    std::mem::swap(&mut node.active_set, &mut node.inactive.set);
    node.offered.clear();
    server.set_node(&node);
    std::fs::remove_file(server.update_status_dir().join("status.json")).unwrap();
    let mut server = server;
    server.kill();
    server.spawn();
    let config = self::config(&server, "boot-2");
    let mut state = State::load(&config.state_file).unwrap();
    let d = rt.block_on(tick(&config, &mut state)).unwrap();
    assert_eq!(d.action, Action::ReleaseLock, "{}", d.reason);
    assert!(!state.memory.lock_held);
    assert_eq!(
        rt.block_on(fleetlock::pre_reboot(&url, &other)).unwrap(),
        fleetlock::Answer::Granted
    );
}

#[test]
fn manual_and_paused_do_nothing_and_say_so() {
    let rt = Rt::new().unwrap();
    let server = TestServer::start_with_updates(&["0.2.0"]);
    let config = config(&server, "boot-1");
    let mut state = State::load(&config.state_file).unwrap();
    let d = rt.block_on(tick(&config, &mut state)).unwrap();
    assert_eq!(d.action, Action::Wait);
    set(
        &server,
        r#"{"updates": {"policy": "auto", "pause-until": "indefinite"}}"#,
    );
    let d = rt.block_on(tick(&config, &mut state)).unwrap();
    assert_eq!(d.action, Action::Wait);
    let s = server.json("GET", "/updates/status", None);
    assert_eq!(s["daemon"]["paused"], "indefinite", "{s:#}");
    assert_eq!(s["update_state"], "Idle");
    assert!(server
        .updater_calls()
        .iter()
        .all(|c| !c.contains("check-update")));
}

/// The issue's bad settings are 400s naming the key, through the real apiserver.
#[test]
fn bad_policy_settings_are_400s_naming_the_key() {
    let server = TestServer::start();
    let cases = [
        (
            r#"{"updates": {"policy": "sometimes"}}"#,
            "settings.updates.policy",
        ),
        (
            r#"{"updates": {"maintenance-windows": {"w": {"start": "25:00"}}}}"#,
            "settings.updates.maintenance-windows.w.start",
        ),
        (
            r#"{"updates": {"fleet-lock": {"url": "not a url"}}}"#,
            "settings.updates.fleet-lock.url",
        ),
        (
            r#"{"updates": {"check-interval": "often"}}"#,
            "settings.updates.check-interval",
        ),
        (
            r#"{"updates": {"pause-until": "later"}}"#,
            constants::UPDATES_PAUSE_UNTIL_KEY,
        ),
    ];
    for (body, key) in cases {
        let (code, text) = server.raw("PATCH", "/settings", Some(body));
        assert_eq!(code, 400, "{body}: {text}");
        let error: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["key"], key, "{body}: {text}");
    }
}

#[test]
fn a_pending_try_holds_the_reboot_back_until_it_is_confirmed() {
    let rt = Rt::new().unwrap();
    let server = TestServer::start_with_updates(&["0.2.0"]);
    set(&server, r#"{"updates": {"policy": "auto"}}"#);
    let config = config(&server, "boot-1");
    let mut state = State::load(&config.state_file).unwrap();
    let seen = until(&rt, &server, &config, &mut state, Action::Prepare);
    assert_eq!(seen, [Action::Refresh, Action::Prepare]);
    // The try starts once the update is staged: while the prepare still runs, that is the
    // reason to wait.
    wait_for_command(&server);

    let out = server.apiclient(&["set", "--try", "10m", "motd=trying"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for _ in 0..3 {
        let d = rt.block_on(tick(&config, &mut state)).unwrap();
        assert_eq!(d.action, Action::Wait, "{}", d.reason);
        assert!(d.reason.contains("try-mode"), "{}", d.reason);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let s = server.json("GET", "/updates/status", None);
    assert_eq!(s["update_state"], "Staged", "{s:#}");
    assert_eq!(server.reboots(), 0);

    let out = server.apiclient(&["confirm"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = until(&rt, &server, &config, &mut state, Action::Reboot);
    assert_eq!(seen, [Action::Activate, Action::Reboot]);
    assert_eq!(server.reboots(), 1);
}
