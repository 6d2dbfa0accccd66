//! The server over real TCP, driven by the node's client.

use fleetlock::{Answer, ClientParams, PRE_REBOOT_PATH, STEADY_STATE_PATH};
use fleetlock_server::{router, Locks};
use std::path::Path;
use std::sync::Arc;

/// Starts a server on a free port; returns its base URL and the task serving it.
async fn serve(state: &Path, slots: usize) -> (String, tokio::task::JoinHandle<()>) {
    let locks = Arc::new(Locks::open(state, slots).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, router(locks)).await.unwrap();
    });
    (url, task)
}

fn node(id: &str) -> ClientParams {
    ClientParams {
        id: id.into(),
        group: "workers".into(),
    }
}

#[tokio::test]
async fn one_slot_two_nodes_in_turn_and_a_restart_keeps_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let (url, task) = serve(&state, 1).await;

    assert_eq!(
        fleetlock::pre_reboot(&url, &node("a")).await.unwrap(),
        Answer::Granted
    );
    assert_eq!(
        fleetlock::pre_reboot(&url, &node("a")).await.unwrap(),
        Answer::Granted,
        "asking again while holding it is granted"
    );
    let Answer::Refused(why) = fleetlock::pre_reboot(&url, &node("b")).await.unwrap() else {
        panic!("b must wait while a holds the only slot");
    };
    assert!(
        why.contains("HTTP 409") && why.contains("held (by a)"),
        "{why}"
    );
    // Another group has its own slot.
    let other = ClientParams {
        id: "c".into(),
        group: "db".into(),
    };
    assert_eq!(
        fleetlock::pre_reboot(&url, &other).await.unwrap(),
        Answer::Granted
    );

    // Restart: the holder is remembered.
    task.abort();
    let _ = task.await;
    let (url, _task) = serve(&state, 1).await;
    assert!(matches!(
        fleetlock::pre_reboot(&url, &node("b")).await.unwrap(),
        Answer::Refused(_)
    ));

    // b releasing a slot it does not hold changes nothing; a releasing frees it for b.
    assert_eq!(
        fleetlock::steady_state(&url, &node("b")).await.unwrap(),
        Answer::Granted
    );
    assert!(matches!(
        fleetlock::pre_reboot(&url, &node("b")).await.unwrap(),
        Answer::Refused(_)
    ));
    assert_eq!(
        fleetlock::steady_state(&url, &node("a")).await.unwrap(),
        Answer::Granted
    );
    assert_eq!(
        fleetlock::pre_reboot(&url, &node("b")).await.unwrap(),
        Answer::Granted
    );

    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved, serde_json::json!({"db": ["c"], "workers": ["b"]}));
}

#[tokio::test]
async fn two_slots_admit_two() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _task) = serve(&dir.path().join("s.json"), 2).await;
    for id in ["a", "b"] {
        assert_eq!(
            fleetlock::pre_reboot(&url, &node(id)).await.unwrap(),
            Answer::Granted
        );
    }
    assert!(matches!(
        fleetlock::pre_reboot(&url, &node("c")).await.unwrap(),
        Answer::Refused(_)
    ));
}

#[tokio::test]
async fn malformed_requests_are_400s_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.json");
    let (url, _task) = serve(&state, 1).await;
    let cases = [
        (true, "not json", "client_params"),
        (true, r#"{"client_params": {"id": "a"}}"#, "group"),
        (
            true,
            r#"{"client_params": {"id": "", "group": "g"}}"#,
            "must not be empty",
        ),
        (true, r#"{"id": "a", "group": "g"}"#, "client_params"),
        (
            false,
            r#"{"client_params": {"id": "a", "group": "g"}}"#,
            "fleet-lock-protocol",
        ),
    ];
    for path in [PRE_REBOOT_PATH, STEADY_STATE_PATH] {
        for (header, body, says) in cases {
            let (code, text) = fleetlock::raw(&url, path, header, body.to_string())
                .await
                .unwrap();
            assert_eq!(code, 400, "{path} {body}: {text}");
            let error: fleetlock::ErrorBody = serde_json::from_str(&text).unwrap();
            assert!(error.value.contains(says), "{path} {body}: {text}");
        }
    }
    assert!(!state.exists(), "nothing was written");
}

#[test]
fn a_corrupt_state_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.json");
    std::fs::write(&state, "{").unwrap();
    let Err(e) = Locks::open(&state, 1) else {
        panic!("corrupt state must be refused")
    };
    assert!(e.to_string().contains("s.json"), "{e}");
}
