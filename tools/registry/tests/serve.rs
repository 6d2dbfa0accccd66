//! The real registry (Debian's docker-registry) on loopback: it starts, answers, can be left
//! running for a later command, and stops.

use std::path::Path;

fn answers(addr: std::net::SocketAddr) -> bool {
    reqwest::blocking::get(format!("http://{addr}/v2/"))
        .map(|r| r.status().is_success())
        .unwrap_or(false)
}

#[test]
fn a_detached_registry_runs_until_stopped() {
    if !hosttools::require_tool(registry::REGISTRY_PROGRAM) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let started = registry::Registry::start(dir.path(), 0).unwrap();
    let addr = started.addr();
    assert!(addr.ip().is_loopback());
    let pid = started.detach().unwrap();
    // The handle is gone; the registry is not.
    assert!(answers(addr));
    let (found_pid, found_addr) = registry::running(dir.path()).unwrap();
    assert_eq!((found_pid, found_addr), (i32::try_from(pid).unwrap(), addr));
    assert!(registry::stop_detached(dir.path()).unwrap());
    let gone = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        !Path::new(&format!("/proc/{pid}/cmdline")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    assert!(gone, "the registry (pid {pid}) still runs after stop");
    assert!(!registry::stop_detached(dir.path()).unwrap());
}

#[test]
fn dropping_the_handle_stops_the_registry() {
    if !hosttools::require_tool(registry::REGISTRY_PROGRAM) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let started = registry::Registry::start(dir.path(), 0).unwrap();
    let addr = started.addr();
    assert!(answers(addr));
    drop(started);
    assert!(!answers(addr));
}

#[test]
fn a_registry_with_auth_wants_the_password_and_logs_the_user() {
    if !hosttools::require_tool(registry::REGISTRY_PROGRAM) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let credentials = registry::Credentials {
        username: "ballast".into(),
        password: "pa55word".into(),
    };
    let started = registry::Registry::start_with_auth(dir.path(), 0, &credentials).unwrap();
    let url = format!("http://{}/v2/_catalog", started.addr());
    let client = reqwest::blocking::Client::new();
    let status = |user: Option<(&str, &str)>| {
        let mut request = client.get(&url);
        if let Some((name, password)) = user {
            request = request.basic_auth(name, Some(password));
        }
        request.send().unwrap().status()
    };
    assert_eq!(status(None), reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(
        status(Some(("ballast", "wrong"))),
        reqwest::StatusCode::UNAUTHORIZED
    );
    assert!(status(Some(("ballast", "pa55word"))).is_success());
    // A refused user is named; an accepted request is "authorized" (there is one user).
    let log = std::fs::read_to_string(started.log_path()).unwrap();
    assert!(
        log.lines().any(|l| l.contains(registry::AUTHORIZED_LINE)
            && l.contains("http.request.uri=/v2/_catalog")),
        "{log}"
    );
    // logrus writes the message quoted, so the user's quotes come escaped.
    assert!(
        log.contains(r#"error authenticating user \"ballast\""#),
        "{log}"
    );
}
