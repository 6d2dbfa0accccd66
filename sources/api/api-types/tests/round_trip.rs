//! Every document survives serialize -> parse unchanged, parses the JSON its producers write
//! today, and (for the update status) parses a document shaped like Bottlerocket's.

use api_types::history::{HistoryChange, HistoryEntry};
use api_types::preview::{Change, FilePlan, Preview, ServicePlan};
use api_types::update::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) -> Value {
    let json = serde_json::to_value(value).unwrap();
    let back: T = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(&back, value, "changed on the way through {json}");
    let text = serde_json::to_string_pretty(value).unwrap();
    assert_eq!(&serde_json::from_str::<T>(&text).unwrap(), value);
    json
}

fn image(version: &str) -> UpdateImage {
    UpdateImage {
        arch: "x86_64".into(),
        version: version.into(),
        variant: "dev".into(),
    }
}

fn full_status() -> UpdateStatus {
    UpdateStatus {
        update_state: UpdateState::Staged,
        available_updates: vec!["1.2.0".into(), "1.1.0".into()],
        chosen_update: Some(image("1.2.0")),
        active_partition: PartitionInfo {
            image: image("1.1.0"),
            next_to_boot: true,
        },
        staging_partition: Some(PartitionInfo {
            image: image("1.2.0"),
            next_to_boot: false,
        }),
        most_recent_command: Some(CommandRecord {
            cmd_type: CommandType::Prepare,
            cmd_status: CommandStatus::Running,
            timestamp: "2025-03-01T10:00:00Z".into(),
            exit_status: None,
            stderr: String::new(),
        }),
        progress: Some(UpdateProgress {
            phase: PHASE_DOWNLOAD.into(),
            target: Some("root".into()),
            bytes_written: 33554432,
            bytes_expected: Some(67108864),
            targets_done: 1,
            targets_total: 3,
        }),
        failed_update: Some(FailedUpdate {
            version: "1.0.9".into(),
            set: "B".into(),
            health: None,
        }),
        daemon: None,
    }
}

/// The exact JSON the API server sends today: field names, order, value spellings.
#[test]
fn status_document_json_is_unchanged() {
    let json = round_trip(&full_status());
    let expected = json!({
        "update_state": "Staged",
        "available_updates": ["1.2.0", "1.1.0"],
        "chosen_update": {"arch": "x86_64", "version": "1.2.0", "variant": "dev"},
        "active_partition": {"image": {"arch": "x86_64", "version": "1.1.0", "variant": "dev"},
                             "next_to_boot": true},
        "staging_partition": {"image": {"arch": "x86_64", "version": "1.2.0", "variant": "dev"},
                              "next_to_boot": false},
        "most_recent_command": {"cmd_type": "prepare", "cmd_status": "Running",
                                "timestamp": "2025-03-01T10:00:00Z", "exit_status": null,
                                "stderr": ""},
        "progress": {"phase": "download", "target": "root", "bytes_written": 33554432,
                     "bytes_expected": 67108864, "targets_done": 1, "targets_total": 3},
        "failed_update": {"version": "1.0.9", "set": "B"},
        "daemon": null
    });
    assert_eq!(json, expected);
    // Field order in the text is Bottlerocket's, then Ballast's.
    let text = serde_json::to_string(&full_status()).unwrap();
    let positions: Vec<usize> = [
        "update_state",
        "available_updates",
        "chosen_update",
        "active_partition",
        "staging_partition",
        "most_recent_command",
        "progress",
        "failed_update",
    ]
    .iter()
    .map(|name| text.find(&format!("\"{name}\":")).unwrap())
    .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");

    let mut idle = full_status();
    idle.update_state = UpdateState::Idle;
    idle.most_recent_command = None;
    idle.progress = None;
    idle.failed_update = None;
    idle.staging_partition = None;
    let json = round_trip(&idle);
    assert_eq!(json["most_recent_command"], Value::Null);
    assert_eq!(json["progress"], Value::Null);
    assert_eq!(json["staging_partition"], Value::Null);

    for (cmd, name) in [
        (CommandType::Refresh, "refresh"),
        (CommandType::Prepare, "prepare"),
        (CommandType::Activate, "activate"),
        (CommandType::Deactivate, "deactivate"),
    ] {
        assert_eq!(serde_json::to_value(cmd).unwrap(), name);
        assert_eq!(cmd.to_string(), name);
        assert!(cmd.route().starts_with("/actions/"));
    }
    for (status, name) in [
        (CommandStatus::Success, "Success"),
        (CommandStatus::Failed, "Failed"),
        (CommandStatus::Running, "Running"),
        (CommandStatus::Unknown, "Unknown"),
    ] {
        assert_eq!(serde_json::to_value(status).unwrap(), name);
    }
}

/// A status document as Bottlerocket's thar-be-updates writes it: no `progress` or
/// `failed_update`, an `Unknown` command before the first action, nanosecond timestamps.
#[test]
fn bottlerocket_status_document_parses() {
    let text = r#"{
      "update_state": "Available",
      "available_updates": ["1.20.1", "1.20.0", "1.19.5"],
      "chosen_update": {"arch": "x86_64", "version": "1.20.1", "variant": "aws-k8s-1.29"},
      "active_partition": {
        "image": {"arch": "x86_64", "version": "1.19.5", "variant": "aws-k8s-1.29"},
        "next_to_boot": true
      },
      "staging_partition": null,
      "most_recent_command": {
        "cmd_type": "refresh", "cmd_status": "Success",
        "timestamp": "2024-05-06T17:58:31.426651346Z", "exit_status": 0, "stderr": ""
      }
    }"#;
    let status: UpdateStatus = serde_json::from_str(text).unwrap();
    assert_eq!(status.update_state, UpdateState::Available);
    assert_eq!(status.chosen_update.as_ref().unwrap().version, "1.20.1");
    assert_eq!(status.available_updates.len(), 3);
    let cmd = status.most_recent_command.as_ref().unwrap();
    assert_eq!(cmd.cmd_type, CommandType::Refresh);
    assert_eq!(cmd.exit_status, Some(0));
    assert_eq!(status.progress, None);
    assert_eq!(status.failed_update, None);
    assert!(status.running().is_none());

    let first = text
        .replace("\"Success\"", "\"Unknown\"")
        .replace("\"exit_status\": 0", "\"exit_status\": null");
    let status: UpdateStatus = serde_json::from_str(&first).unwrap();
    let cmd = status.most_recent_command.unwrap();
    assert_eq!(cmd.cmd_status, CommandStatus::Unknown);
    assert_eq!(cmd.exit_status, None);
}

/// Unknown fields (a newer server) are ignored by readers.
#[test]
fn newer_fields_are_ignored() {
    let mut json = serde_json::to_value(full_status()).unwrap();
    json["something_new"] = json!({"a": 1});
    json["most_recent_command"]["duration_ms"] = json!(12);
    let status: UpdateStatus = serde_json::from_value(json).unwrap();
    assert_eq!(status, full_status());
}

/// `exit_status` is an i32 everywhere: a negative code parses, a code beyond i32 is refused
/// with an error naming the field instead of being truncated.
#[test]
fn exit_status_is_an_i32() {
    let mut json = serde_json::to_value(full_status()).unwrap();
    json["most_recent_command"]["exit_status"] = json!(-1);
    let status: UpdateStatus = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(status.most_recent_command.unwrap().exit_status, Some(-1));
    json["most_recent_command"]["exit_status"] = json!(i32::MAX);
    let status: UpdateStatus = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(
        status.most_recent_command.unwrap().exit_status,
        Some(i32::MAX)
    );
    for too_big in [
        json!(i64::from(i32::MAX) + 1),
        json!(i64::from(i32::MIN) - 1),
    ] {
        json["most_recent_command"]["exit_status"] = too_big.clone();
        let text = json.to_string();
        let err = serde_json::from_str::<UpdateStatus>(&text).unwrap_err();
        assert!(err.to_string().contains("i32"), "{too_big}: {err}");
    }
}

/// The progress file: what updog writes, what the test updater writes, and how it maps to the
/// document's `progress`.
#[test]
fn progress_file_round_trips_and_tolerates_missing_fields() {
    let file = ProgressFile {
        progress: UpdateProgress {
            phase: PHASE_DONE.into(),
            target: Some("ballast-dev-x86_64-1.1.0-root.erofs.zst".into()),
            bytes_written: 1048576,
            bytes_expected: None,
            targets_done: 3,
            targets_total: 3,
        },
        download_bytes: 524288,
        download_expected: Some(3145728),
    };
    let json = round_trip(&file);
    assert_eq!(
        json,
        json!({"phase": "done", "target": "ballast-dev-x86_64-1.1.0-root.erofs.zst",
               "bytes_written": 1048576, "bytes_expected": null, "targets_done": 3,
               "targets_total": 3, "download_bytes": 524288, "download_expected": 3145728})
    );
    // The document's `progress` reads the file and leaves out the download counters.
    let progress: UpdateProgress = serde_json::from_value(json).unwrap();
    assert_eq!(progress, file.progress);
    assert!(serde_json::to_value(&progress)
        .unwrap()
        .get("download_bytes")
        .is_none());
    // A file without the download counters (the test updater's) reads as a progress file.
    let short: ProgressFile = serde_json::from_value(json!({"phase": "download",
        "target": "root", "bytes_written": 5, "bytes_expected": 10, "targets_done": 0,
        "targets_total": 3}))
    .unwrap();
    assert_eq!(short.download_bytes, 0);
    assert_eq!(short.progress.bytes_expected, Some(10));
    let empty: UpdateProgress = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, UpdateProgress::default());
}

#[test]
fn history_round_trips() {
    let entries = vec![
        HistoryEntry {
            id: 1,
            time: "2024-05-01T10:00:00Z".into(),
            transaction: "apiclient-set-abc".into(),
            changes: vec![
                HistoryChange {
                    key: "settings.motd".into(),
                    old: None,
                    new: Some("\"hi\"".into()),
                },
                HistoryChange {
                    key: "settings.kernel.sysctl.\"net.ipv4.ip_forward\"".into(),
                    old: Some("\"0\"".into()),
                    new: Some("\"1\"".into()),
                },
            ],
            caller: None,
        },
        HistoryEntry {
            id: 2,
            time: "2024-05-01T10:05:00Z".into(),
            transaction: "undo-1".into(),
            changes: vec![],
            caller: Some(api_types::audit::Caller {
                uid: 0,
                gid: 0,
                pid: Some(42),
                program: Some("apiclient".into()),
            }),
        },
    ];
    let json = round_trip(&entries);
    assert_eq!(
        json[0],
        json!({"id": 1, "time": "2024-05-01T10:00:00Z", "transaction": "apiclient-set-abc",
               "changes": [
                 {"key": "settings.motd", "old": null, "new": "\"hi\""},
                 {"key": "settings.kernel.sysctl.\"net.ipv4.ip_forward\"", "old": "\"0\"",
                  "new": "\"1\""}]})
    );
    // The caller is left out when unknown, and an entry without one (written before callers
    // were recorded) still reads.
    assert_eq!(
        json[1]["caller"],
        json!({"uid": 0, "gid": 0, "pid": 42, "program": "apiclient"})
    );
    assert!(serde_json::from_value::<Vec<HistoryEntry>>(json!({"not": "a list"})).is_err());
    assert!(serde_json::from_value::<Vec<HistoryEntry>>(json!([{"time": "x"}])).is_err());
}

#[test]
fn preview_round_trips_in_kebab_case() {
    let preview = Preview {
        changes: vec![Change {
            key: "settings.motd".into(),
            old: Value::Null,
            new: json!("hi"),
        }],
        services: vec![ServicePlan {
            name: "motd".into(),
            restart_commands: vec!["/bin/true".into()],
            would_restart: true,
        }],
        files: vec![FilePlan {
            path: "/etc/motd".into(),
            service: "motd".into(),
            diff: "--- /etc/motd\n+++ /etc/motd\n".into(),
        }],
    };
    let json = round_trip(&preview);
    assert_eq!(
        json,
        json!({"changes": [{"key": "settings.motd", "old": null, "new": "hi"}],
               "services": [{"name": "motd", "restart-commands": ["/bin/true"],
                             "would-restart": true}],
               "files": [{"path": "/etc/motd", "service": "motd",
                          "diff": "--- /etc/motd\n+++ /etc/motd\n"}]})
    );
    assert_eq!(
        serde_json::from_str::<Preview>("{}").unwrap(),
        Preview::default()
    );
}

/// `updog --json status`: what updog prints (a build id known for the running image, unknown
/// for the staged one), read back unchanged; an older updater's output without the set flags
/// still parses.
#[test]
fn updater_status_round_trips() {
    use api_types::updater::{ImageInfo, InactiveSet, NodeStatus};
    let status = NodeStatus {
        running: ImageInfo {
            variant: "dev".into(),
            arch: "x86_64".into(),
            version: "1.0.0".into(),
            build_id: Some("abc".into()),
        },
        active_set: "A".into(),
        next_boot: "B".into(),
        inactive: InactiveSet {
            set: "B".into(),
            image: Some(ImageInfo {
                variant: "dev".into(),
                arch: "x86_64".into(),
                version: "1.1.0".into(),
                build_id: None,
            }),
            valid: true,
            bootable: true,
            successful: false,
        },
        failed_update: Some(FailedUpdate {
            version: "0.9.0".into(),
            set: "B".into(),
            health: None,
        }),
    };
    let json = round_trip(&status);
    assert_eq!(
        json,
        json!({"running": {"variant": "dev", "arch": "x86_64", "version": "1.0.0",
                           "build_id": "abc"},
               "active_set": "A", "next_boot": "B",
               "inactive": {"set": "B", "image": {"variant": "dev", "arch": "x86_64",
                                                  "version": "1.1.0", "build_id": null},
                            "valid": true, "bootable": true, "successful": false},
               "failed_update": {"version": "0.9.0", "set": "B"}})
    );
    let short: NodeStatus = serde_json::from_value(json!({
        "running": {"variant": "dev", "arch": "x86_64", "version": "1.0.0"},
        "active_set": "A", "next_boot": "A",
        "inactive": {"set": "B", "image": null},
        "failed_update": null}))
    .unwrap();
    assert!(!short.inactive.valid);
    assert_eq!(short.running.build_id, None);
}
