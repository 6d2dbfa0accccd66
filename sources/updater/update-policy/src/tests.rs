use super::*;
use serde_json::json;

fn settings(value: serde_json::Value) -> UpdatesSettings {
    serde_json::from_value(value).unwrap()
}

fn status(state: &str, running: &str, staged: Option<&str>, cmd: Option<&str>) -> UpdateStatus {
    let image = |v: &str| json!({"arch": "x86_64", "version": v, "variant": "node"});
    serde_json::from_value(json!({
        "update_state": state,
        "available_updates": staged.map(|s| vec![s]).unwrap_or_default(),
        "chosen_update": staged.map(image),
        "active_partition": {"image": image(running), "next_to_boot": state != "Ready"},
        "staging_partition": match state {
            "Staged" | "Ready" => json!({"image": image(staged.unwrap()), "next_to_boot": state == "Ready"}),
            _ => serde_json::Value::Null,
        },
        "most_recent_command": cmd.map(|c| json!({"cmd_type": c, "cmd_status": "Running",
            "timestamp": "2025-03-01T09:00:00Z", "exit_status": null, "stderr": ""})),
    }))
    .unwrap()
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

const NOW: &str = "2025-03-05T10:00:00Z";

/// The inputs of a decision at `NOW`, on a boot other than the one that asked for a reboot, with
/// no jitter and no try pending; tests change what they need with `..inputs(...)`.
fn inputs<'a>(
    settings: &'a UpdatesSettings,
    status: &'a UpdateStatus,
    memory: &'a Memory,
) -> Inputs<'a> {
    Inputs {
        now: at(NOW),
        settings,
        status,
        memory,
        boot_id: "boot-2",
        jitter: 0.0,
        provisional: None,
    }
}

fn run(settings: &UpdatesSettings, status: &UpdateStatus, memory: &Memory) -> Decision {
    decide(&inputs(settings, status, memory))
}

fn checked_recently() -> Memory {
    Memory {
        last_check: Some(at("2025-03-05T09:30:00Z")),
        ..Memory::default()
    }
}

#[test]
fn manual_does_nothing_and_is_the_default() {
    for s in [json!({}), json!({"policy": "manual"})] {
        let d = run(
            &settings(s),
            &status("Available", "1.0.0", Some("1.1.0"), None),
            &Memory::default(),
        );
        assert_eq!(d.action, Action::Wait);
        assert_eq!(d.policy, UpdatePolicy::Manual);
        assert!(d.reason.contains("policy manual"), "{}", d.reason);
        assert_eq!(d.next_check, None);
    }
}

#[test]
fn first_check_is_at_once_then_after_the_jittered_interval() {
    let s = settings(json!({"policy": "check", "check-interval": "1h"}));
    let idle = status("Idle", "1.0.0", None, None);
    let d = run(&s, &idle, &Memory::default());
    assert_eq!(d.action, Action::Refresh);
    assert_eq!(d.next_check, Some(at(NOW)));

    let d = run(&s, &idle, &checked_recently());
    assert_eq!(d.action, Action::Wait);
    assert!(d.reason.contains("up to date"), "{}", d.reason);
    assert_eq!(d.next_check, Some(at("2025-03-05T10:30:00Z")));
    assert_eq!(d.wake_at, Some(at("2025-03-05T10:30:00Z")));

    // Jitter stretches the wait by up to a tenth: 0.5 of 6 minutes is 3 minutes.
    let memory = checked_recently();
    let d = decide(&Inputs {
        jitter: 0.5,
        ..inputs(&s, &idle, &memory)
    });
    assert_eq!(d.next_check, Some(at("2025-03-05T10:33:00Z")));

    let old = Memory {
        last_check: Some(at("2025-03-05T08:59:00Z")),
        ..Memory::default()
    };
    assert_eq!(run(&s, &idle, &old).action, Action::Refresh);
}

#[test]
fn the_default_interval_is_an_hour() {
    let s = settings(json!({"policy": "check"}));
    let d = run(
        &s,
        &status("Idle", "1.0.0", None, None),
        &checked_recently(),
    );
    assert_eq!(d.next_check, Some(at("2025-03-05T10:30:00Z")));
}

#[test]
fn each_policy_goes_as_far_as_it_may() {
    let available = status("Available", "1.0.0", Some("1.1.0"), None);
    let staged = status("Staged", "1.0.0", Some("1.1.0"), None);
    let ready = status("Ready", "1.0.0", Some("1.1.0"), None);
    let m = checked_recently();

    let check = settings(json!({"policy": "check"}));
    let d = run(&check, &available, &m);
    assert_eq!(d.action, Action::Wait);
    assert!(
        d.reason.contains("1.1.0 is available; policy check"),
        "{}",
        d.reason
    );

    let stage = settings(json!({"policy": "stage"}));
    assert_eq!(run(&stage, &available, &m).action, Action::Prepare);
    let d = run(&stage, &staged, &m);
    assert_eq!(d.action, Action::Wait);
    assert!(d.reason.contains("under policy stage"), "{}", d.reason);
    assert_eq!(run(&stage, &ready, &m).action, Action::Wait);

    let auto = settings(json!({"policy": "auto"}));
    assert_eq!(run(&auto, &available, &m).action, Action::Prepare);
    assert_eq!(run(&auto, &staged, &m).action, Action::Activate);
    let d = run(&auto, &ready, &m);
    assert_eq!(d.action, Action::Reboot);
    assert_eq!(d.reason, "rebooting into update 1.1.0");
}

#[test]
fn a_ready_node_is_not_refreshed_first() {
    let auto = settings(json!({"policy": "auto"}));
    let d = run(
        &auto,
        &status("Ready", "1.0.0", Some("1.1.0"), None),
        &Memory::default(),
    );
    assert_eq!(d.action, Action::Reboot);
    let d = run(
        &auto,
        &status("Staged", "1.0.0", Some("1.1.0"), None),
        &Memory::default(),
    );
    assert_eq!(
        d.action,
        Action::Refresh,
        "a staged node still looks for newer versions"
    );
}

#[test]
fn nothing_starts_while_an_action_runs() {
    let auto = settings(json!({"policy": "auto"}));
    for cmd in ["refresh", "prepare", "activate"] {
        let d = run(
            &auto,
            &status("Ready", "1.0.0", Some("1.1.0"), Some(cmd)),
            &Memory::default(),
        );
        assert_eq!(d.action, Action::Wait, "{cmd}");
        assert!(
            d.reason.contains(&format!("the {cmd} action is running")),
            "{}",
            d.reason
        );
    }
}

#[test]
fn reboots_wait_for_the_window() {
    let auto = settings(json!({"policy": "auto",
        "maintenance-windows": {"night": {"start": "22:00", "length": "2h"}}}));
    let ready = status("Ready", "1.0.0", Some("1.1.0"), None);
    let d = run(&auto, &ready, &checked_recently());
    assert_eq!(d.action, Action::Wait);
    assert!(
        d.reason.contains("window opens at 2025-03-05T22:00:00Z"),
        "{}",
        d.reason
    );
    assert_eq!(
        d.window,
        Some(WindowState::Closed {
            next: Some(at("2025-03-05T22:00:00Z"))
        })
    );
    assert_eq!(
        d.wake_at,
        Some(at("2025-03-05T10:30:00Z")),
        "the next check comes first"
    );

    let open = settings(json!({"policy": "auto",
        "maintenance-windows": {"day": {"start": "09:00", "length": "2h"}}}));
    let d = run(&open, &ready, &checked_recently());
    assert_eq!(d.action, Action::Reboot);
    assert_eq!(
        d.window,
        Some(WindowState::Open {
            until: at("2025-03-05T11:00:00Z")
        })
    );

    // Staging needs no window.
    let d = run(
        &auto,
        &status("Available", "1.0.0", Some("1.1.0"), None),
        &checked_recently(),
    );
    assert_eq!(d.action, Action::Prepare);
}

#[test]
fn a_broken_window_stops_reboots_and_says_why() {
    let auto = settings(json!({"policy": "auto",
        "maintenance-windows": {"w": {"start": "09:00", "length": "2h", "time-zone": "Nowhere/Special"}}}));
    let d = run(
        &auto,
        &status("Ready", "1.0.0", Some("1.1.0"), None),
        &checked_recently(),
    );
    assert_eq!(d.action, Action::Wait);
    assert!(d.reason.contains("'w' cannot be used"), "{}", d.reason);
    assert_eq!(d.window, None);
}

#[test]
fn the_fleet_lock_comes_before_activation() {
    let auto = settings(json!({"policy": "auto",
        "fleet-lock": {"url": "http://127.0.0.1:1/", "group": "g"}}));
    let staged = status("Staged", "1.0.0", Some("1.1.0"), None);
    let ready = status("Ready", "1.0.0", Some("1.1.0"), None);
    let d = run(&auto, &staged, &checked_recently());
    assert_eq!(d.action, Action::AcquireLock);
    let held = Memory {
        lock_held: true,
        ..checked_recently()
    };
    assert_eq!(run(&auto, &staged, &held).action, Action::Activate);
    assert_eq!(run(&auto, &ready, &held).action, Action::Reboot);
    // Without the lock, an activated update still waits for it.
    assert_eq!(
        run(&auto, &ready, &checked_recently()).action,
        Action::AcquireLock
    );
}

#[test]
fn a_lock_no_longer_needed_is_given_back() {
    let auto = settings(json!({"policy": "auto",
        "fleet-lock": {"url": "http://127.0.0.1:1/"},
        "maintenance-windows": {"night": {"start": "22:00", "length": "2h"}}}));
    let held = Memory {
        lock_held: true,
        ..checked_recently()
    };
    let d = run(&auto, &status("Ready", "1.0.0", Some("1.1.0"), None), &held);
    assert_eq!(
        d.action,
        Action::ReleaseLock,
        "the window closed after the lock was taken"
    );
    assert!(d.reason.contains("not needed now"), "{}", d.reason);
    let paused = settings(json!({"policy": "auto", "pause-until": "indefinite"}));
    assert_eq!(
        run(&paused, &status("Idle", "1.0.0", None, None), &held).action,
        Action::ReleaseLock
    );
}

#[test]
fn after_the_reboot_the_lock_is_released_on_the_new_boot_only() {
    let auto = settings(json!({"policy": "auto", "fleet-lock": {"url": "http://127.0.0.1:1/"}}));
    let reboot = RebootRecord {
        version: "1.1.0".into(),
        boot_id: "boot-1".into(),
        at: at("2025-03-05T09:50:00Z"),
    };
    let memory = Memory {
        lock_held: true,
        reboot: Some(reboot.clone()),
        ..checked_recently()
    };
    // Same boot: the reboot is under way.
    let same_boot = decide(&Inputs {
        boot_id: "boot-1",
        ..inputs(
            &auto,
            &status("Ready", "1.0.0", Some("1.1.0"), None),
            &memory,
        )
    });
    assert_eq!(same_boot.action, Action::Wait);
    assert!(
        same_boot.reason.contains("reboot into 1.1.0 was asked for"),
        "{}",
        same_boot.reason
    );

    // New boot on the new version: release.
    let d = run(&auto, &status("Idle", "1.1.0", None, None), &memory);
    assert_eq!(d.action, Action::ReleaseLock);
    assert!(
        d.reason
            .contains("runs 1.1.0 and its boot was marked successful"),
        "{}",
        d.reason
    );

    // New boot back on the old version (rolled back): release too, and never try 1.1.0 again.
    let d = run(
        &auto,
        &status("Staged", "1.0.0", Some("1.1.0"), None),
        &memory,
    );
    assert_eq!(d.action, Action::ReleaseLock);
    assert!(d.reason.contains("rolled back"), "{}", d.reason);
    let released = Memory {
        lock_held: false,
        ..memory
    };
    for state in ["Available", "Staged", "Ready"] {
        let d = run(
            &auto,
            &status(state, "1.0.0", Some("1.1.0"), None),
            &released,
        );
        assert_eq!(d.action, Action::Wait, "{state}");
        assert!(d.reason.contains("not tried again"), "{}", d.reason);
    }
    // A newer version is taken.
    assert_eq!(
        run(
            &auto,
            &status("Available", "1.0.0", Some("1.2.0"), None),
            &released
        )
        .action,
        Action::Prepare
    );
}

#[test]
fn a_rollback_reported_by_the_updater_counts_too() {
    let auto = settings(json!({"policy": "auto"}));
    let mut s = status("Staged", "1.0.0", Some("1.1.0"), None);
    s.failed_update = Some(api_types::update::FailedUpdate {
        version: "1.1.0".into(),
        set: "B".into(),
        health: None,
    });
    assert_eq!(run(&auto, &s, &checked_recently()).action, Action::Wait);

    // Back on the old version with nothing else offered, the status says why it stays.
    let mut idle = status("Idle", "1.0.0", None, None);
    idle.failed_update = s.failed_update.clone();
    let d = run(&auto, &idle, &checked_recently());
    assert_eq!(d.action, Action::Wait);
    assert!(
        d.reason.contains("update 1.1.0 failed to boot once") && !d.reason.contains("up to date"),
        "{}",
        d.reason
    );
}

#[test]
fn pauses_stop_everything_until_they_end() {
    let idle = status("Idle", "1.0.0", None, None);
    let s = settings(json!({"policy": "auto", "pause-until": "2025-03-05T12:00:00Z"}));
    let d = run(&s, &idle, &Memory::default());
    assert_eq!(d.action, Action::Wait);
    assert!(
        d.reason.contains("paused until 2025-03-05T12:00:00Z"),
        "{}",
        d.reason
    );
    assert_eq!(d.paused, Some(Some(at("2025-03-05T12:00:00Z"))));
    assert_eq!(d.next_check, None);
    assert_eq!(d.wake_at, Some(at("2025-03-05T12:00:00Z")));

    let expired = settings(json!({"policy": "auto", "pause-until": "2025-03-05T09:00:00Z"}));
    let d = run(&expired, &idle, &Memory::default());
    assert_eq!(d.action, Action::Refresh, "an expired pause is no pause");
    assert_eq!(d.paused, None);

    let forever = settings(json!({"policy": "auto", "pause-until": "indefinite"}));
    let d = run(
        &forever,
        &status("Ready", "1.0.0", Some("1.1.0"), None),
        &Memory::default(),
    );
    assert_eq!(d.action, Action::Wait);
    assert_eq!(d.paused, Some(None));
    assert!(d.reason.contains("resume"), "{}", d.reason);

    let none = settings(json!({"policy": "auto", "pause-until": "none"}));
    assert_eq!(
        run(&none, &idle, &Memory::default()).action,
        Action::Refresh
    );
}

#[test]
fn memory_round_trips_as_json() {
    let memory = Memory {
        last_check: Some(at(NOW)),
        lock_held: true,
        reboot: Some(RebootRecord {
            version: "1.1.0".into(),
            boot_id: "b".into(),
            at: at(NOW),
        }),
    };
    let text = serde_json::to_string(&memory).unwrap();
    assert_eq!(serde_json::from_str::<Memory>(&text).unwrap(), memory);
    assert_eq!(
        serde_json::from_str::<Memory>("{}").unwrap(),
        Memory::default()
    );
}

#[test]
fn a_pending_try_holds_the_reboot_and_the_lock_back() {
    let auto = settings(json!({"policy": "auto", "fleet-lock": {"url": "http://lock.invalid/"}}));
    let try_change: Provisional = serde_json::from_value(json!({
        "transaction": "try-motd",
        "changes": [{"key": "settings.motd", "old": "a", "new": "b"}],
        "started": "2025-03-05T09:59:00Z",
        "deadline": "2025-03-05T10:01:00Z",
        "timeout_seconds": 120,
        "remaining_seconds": 60
    }))
    .unwrap();
    for state in ["Staged", "Ready"] {
        let st = status(state, "1.0.0", Some("1.1.0"), None);
        let memory = checked_recently();
        let d = decide(&Inputs {
            provisional: Some(&try_change),
            ..inputs(&auto, &st, &memory)
        });
        assert_eq!(d.action, Action::Wait, "{state}: {}", d.reason);
        assert!(
            d.reason.contains("try-motd") && d.reason.contains("2025-03-05T10:01:00Z"),
            "{}",
            d.reason
        );
        // Once it is confirmed or reverted, the reboot goes on (the lock first).
        assert_eq!(run(&auto, &st, &memory).action, Action::AcquireLock);
    }
    // Staging goes on during a try: only the reboot waits.
    let st = status("Available", "1.0.0", Some("1.1.0"), None);
    let memory = checked_recently();
    let d = decide(&Inputs {
        provisional: Some(&try_change),
        ..inputs(&auto, &st, &memory)
    });
    assert_eq!(d.action, Action::Prepare);
}
