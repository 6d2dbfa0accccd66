//! The real `bork` binary, as sundog runs it.

use std::process::Command;

#[test]
fn bork_seed_prints_one_in_range_json_integer() {
    let bork = testserver::workspace_bin("bork");
    for _ in 0..5 {
        let output = Command::new(&bork).arg("seed").output().unwrap();
        assert!(output.status.success(), "{output:?}");
        assert!(output.stderr.is_empty(), "{output:?}");
        let text = String::from_utf8(output.stdout).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let seed = value.as_u64().expect("an integer");
        assert!(seed <= u64::from(models::MAX_UPDATE_SEED), "{seed}");
    }
}

#[test]
fn bork_without_a_command_is_a_usage_error() {
    let output = Command::new(testserver::workspace_bin("bork"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}
