//! The real renderer driven by the real API server (and the real apiclient): each test seeds a
//! store with the shared defaults, pointed at a temporary root and at restart commands that
//! append the service name to a log, so the tests see exactly what was written and restarted.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use testserver::TestServer;

struct Env {
    server: TestServer,
    defaults: models::Defaults,
    root: tempfile::TempDir,
    tools: tempfile::TempDir,
}

fn write_script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn copy_templates(root: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    let target = root.join("usr/share/templates");
    std::fs::create_dir_all(&target).unwrap();
    for package in ["api", "containerd"] {
        let dir = repo
            .join("packages")
            .join(package)
            .join("files/usr/share/templates");
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
        }
    }
}

/// Shared defaults whose services restart by logging their name; `failing` first runs a
/// command that fails, then the logging one.
fn setup(failing: Option<&str>) -> Env {
    let root = tempfile::tempdir().unwrap();
    let tools = tempfile::tempdir().unwrap();
    copy_templates(root.path());
    let log = tools.path().join("restarts.log");
    let restart = tools.path().join("restart");
    write_script(
        &restart,
        &format!("#!/bin/sh\necho \"$1\" >> {}\n", log.display()),
    );
    let fail = tools.path().join("fail");
    write_script(&fail, "#!/bin/sh\necho \"broken on purpose\" >&2\nexit 3\n");
    let wrapper = tools.path().join("renderer");
    write_script(
        &wrapper,
        &format!(
            "#!/bin/sh\n{bin} --root {root} --restart-timeout 20 \"$@\" 2>>{tools}/renderer.log\n\
             status=$?\necho \"$status $*\" >> {tools}/runs.log\nexit $status\n",
            bin = testserver::workspace_bin("thar-be-settings").display(),
            root = root.path().display(),
            tools = tools.path().display(),
        ),
    );

    let mut defaults = models::shared_defaults();
    for (name, service) in defaults.services.iter_mut() {
        let mut commands = vec![format!("{} {name}", restart.display())];
        if failing == Some(name.as_str()) {
            commands.insert(0, format!("{} {name}", fail.display()));
        }
        service.restart_commands = commands;
    }
    let server = TestServer::start_with(&defaults, true, Some(wrapper));
    Env {
        server,
        defaults,
        root,
        tools,
    }
}

impl Env {
    /// Runs the renderer directly (not through the server), with `stdin` as its input.
    fn render(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(testserver::workspace_bin("thar-be-settings"))
            .arg("--socket-path")
            .arg(&self.server.socket)
            .arg("--root")
            .arg(self.root.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn path(&self, file: &str) -> PathBuf {
        let path = &self.defaults.configuration_files[file].path;
        self.root.path().join(path.trim_start_matches('/'))
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path(file)).unwrap()
    }

    /// Inode of every configuration file: an atomic rewrite gives a new one.
    fn inodes(&self) -> BTreeMap<String, u64> {
        self.defaults
            .configuration_files
            .keys()
            .map(|name| {
                let inode = std::fs::metadata(self.path(name)).map_or(0, |m| m.ino());
                (name.clone(), inode)
            })
            .collect()
    }

    fn restarts(&self) -> Vec<String> {
        std::fs::read_to_string(self.tools.path().join("restarts.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn clear_restarts(&self) {
        let _ = std::fs::remove_file(self.tools.path().join("restarts.log"));
    }

    fn renderer_log(&self) -> String {
        std::fs::read_to_string(self.tools.path().join("renderer.log")).unwrap_or_default()
    }

    /// Waits until the server has run the renderer `n` times (dry runs included); returns the
    /// "status args" lines.
    fn runs(&self, n: usize) -> Vec<String> {
        let start = Instant::now();
        loop {
            let text =
                std::fs::read_to_string(self.tools.path().join("runs.log")).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the renderer ran {} times, expected {n}; its log:\n{}",
                lines.len(),
                self.renderer_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn apiclient(&self, args: &[&str]) -> String {
        let output = self.server.apiclient(args);
        assert!(
            output.status.success(),
            "apiclient {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// `--all`, checked to succeed.
    fn render_all(&self) {
        let output = self.render(&["--all"], "");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn all_services(env: &Env) -> Vec<String> {
    env.defaults.services.keys().cloned().collect()
}

/// Services with no configuration file (e.g. lockdown, applied by a command from the API's
/// settings): nothing tells whether they are up to date, so every `--all` runs them.
fn fileless_services(env: &Env) -> Vec<String> {
    env.defaults
        .services
        .iter()
        .filter(|(_, s)| s.configuration_files.is_empty())
        .map(|(name, _)| name.clone())
        .collect()
}

#[test]
fn all_renders_everything_and_a_commit_touches_only_its_service() {
    let env = setup(None);
    env.render_all();
    for (name, file) in &env.defaults.configuration_files {
        let path = env.path(name);
        assert!(path.is_file(), "{name} was not rendered");
        let mode = u32::from_str_radix(file.mode.as_deref().unwrap_or("0644"), 8).unwrap();
        let actual = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(actual, mode, "{name}");
    }
    assert_eq!(env.read("motd"), "Welcome to Ballast!\n");
    assert!(env.read("timesyncd-conf").contains("\nNTP=pool.ntp.org\n"));
    let mut restarted = env.restarts();
    restarted.sort();
    assert_eq!(restarted, all_services(&env));

    // A second --all changes nothing and restarts only the services without files.
    env.clear_restarts();
    let before = env.inodes();
    env.render_all();
    let mut restarted = env.restarts();
    restarted.sort();
    assert_eq!(restarted, fileless_services(&env));
    assert!(
        !restarted.is_empty(),
        "the shared defaults have a service without files"
    );
    assert_eq!(env.inodes(), before);

    // A commit through the API re-renders only timesyncd's file and restarts only timesyncd.
    env.clear_restarts();
    env.apiclient(&[
        "set",
        "--json",
        r#"{"ntp": {"time-servers": ["a.example", "https://b.example"]}}"#,
    ]);
    let runs = env.runs(1);
    assert!(
        runs[0].starts_with("0 "),
        "{runs:?}\n{}",
        env.renderer_log()
    );
    assert!(env
        .read("timesyncd-conf")
        .ends_with("\nNTP=a.example b.example\n"));
    assert_eq!(env.restarts(), ["timesyncd"]);
    let after = env.inodes();
    for (name, inode) in &before {
        if name == "timesyncd-conf" {
            assert_ne!(after[name], *inode, "{name} was not rewritten");
        } else {
            assert_eq!(after[name], *inode, "{name} was rewritten");
        }
    }

    // Setting the same value again: nothing changes, so nothing is applied or restarted...
    env.clear_restarts();
    env.apiclient(&[
        "set",
        "--json",
        r#"{"ntp": {"time-servers": ["a.example", "https://b.example"]}}"#,
    ]);
    // ...and rendering the key anyway finds the file up to date.
    let output = env.render(&[], r#"["settings.ntp.time-servers"]"#);
    assert!(output.status.success());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(env.runs(1).len(), 1, "an unchanged commit ran the renderer");
    assert!(env.restarts().is_empty(), "{:?}", env.restarts());
    assert_eq!(env.inodes(), after);
}

#[test]
fn a_broken_template_names_file_and_line_and_keeps_the_old_file() {
    let env = setup(None);
    env.render_all();
    env.clear_restarts();
    let template = env.root.path().join("usr/share/templates/motd");
    std::fs::write(&template, "{{settings.motd}}\n\n{{#each settings.ntp}}\n").unwrap();

    env.apiclient(&[
        "set",
        "--json",
        r#"{"motd": "changed", "ntp": {"time-servers": ["c.example"]}}"#,
    ]);
    let runs = env.runs(1);
    assert!(runs[0].starts_with("1 "), "{runs:?}");
    let log = env.renderer_log();
    assert!(log.contains(&template.display().to_string()), "{log}");
    assert!(log.contains("line "), "{log}");
    assert!(log.contains("left as it was"), "{log}");
    assert_eq!(env.read("motd"), "Welcome to Ballast!\n");
    // The other file of the same commit was still rendered and its service restarted.
    assert!(env.read("timesyncd-conf").ends_with("\nNTP=c.example\n"));
    assert_eq!(env.restarts(), ["timesyncd"]);

    // A missing template is a clear error too.
    std::fs::remove_file(&template).unwrap();
    let output = env.render(&[], r#"["settings.motd"]"#);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is missing or unreadable"), "{stderr}");
}

#[test]
fn a_failing_restart_command_is_reported_and_the_others_still_run() {
    let env = setup(Some("timesyncd"));
    let output = env.render(&["--all", "--no-restart"], "");
    assert!(output.status.success());
    assert!(env.restarts().is_empty());

    for file in ["motd", "timesyncd-conf"] {
        std::fs::remove_file(env.path(file)).unwrap();
    }
    let output = env.render(&["--all"], "");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("of service 'timesyncd' failed"), "{stderr}");
    assert!(stderr.contains("broken on purpose"), "{stderr}");
    let mut expected = fileless_services(&env);
    expected.extend(["motd".to_string(), "timesyncd".to_string()]);
    expected.sort();
    assert_eq!(env.restarts(), expected);
}

#[test]
fn dry_run_previews_and_changes_nothing() {
    let env = setup(None);
    env.render_all();
    env.clear_restarts();
    let before = env.inodes();
    let content = env.read("timesyncd-conf");

    let text = env.apiclient(&[
        "set",
        "--dry-run",
        "--json",
        r#"{"ntp": {"time-servers": ["x.example", "https://y.example/"]}}"#,
    ]);
    assert!(text.contains("settings.ntp.time-servers"), "{text}");
    assert!(text.contains("timesyncd"), "{text}");
    assert!(text.contains("-NTP=pool.ntp.org"), "{text}");
    assert!(text.contains("+NTP=x.example y.example"), "{text}");
    assert!(text.contains("--- /etc/systemd/timesyncd.conf"), "{text}");

    // The raw document, through the server's POST /tx/dry-run.
    let (status, _) = env.server.raw(
        "PATCH",
        "/settings?tx=preview",
        Some(r#"{"ntp": {"time-servers": ["z.example"]}, "motd": "Welcome to Ballast!"}"#),
    );
    assert_eq!(status, 204);
    let preview = env.server.json("POST", "/tx/dry-run?tx=preview", None);
    assert_eq!(
        preview["changes"],
        serde_json::json!([{"key": "settings.ntp.time-servers",
                            "old": ["pool.ntp.org"], "new": ["z.example"]}])
    );
    assert_eq!(
        preview["services"],
        serde_json::json!([{"name": "timesyncd",
                            "restart-commands": env.defaults.services["timesyncd"].restart_commands,
                            "would-restart": true}])
    );
    let files = preview["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{preview}");
    assert_eq!(files[0]["path"], "/etc/systemd/timesyncd.conf");
    assert_eq!(files[0]["service"], "timesyncd");
    let diff = files[0]["diff"].as_str().unwrap();
    assert!(diff.starts_with("--- /etc/systemd/timesyncd.conf\n+++ /etc/systemd/timesyncd.conf\n"));
    assert!(diff.contains("+NTP=z.example\n"), "{diff}");

    // Nothing was written, restarted or committed.
    assert_eq!(env.inodes(), before);
    assert_eq!(env.read("timesyncd-conf"), content);
    assert!(env.restarts().is_empty());
    let live = env.server.json("GET", "/settings", None);
    assert_eq!(
        live["ntp"]["time-servers"],
        serde_json::json!(["pool.ntp.org"])
    );
    assert!(env.runs(2).iter().all(|l| l.contains("--dry-run")));
}

/// A render that has to wait for another one reads the settings only once it runs, so it never
/// writes values older than a commit made while it waited (the boot's `--all` against a user's
/// commit_and_apply, issue 14).
#[test]
fn a_waiting_render_reads_the_settings_committed_while_it_waited() {
    let env = setup(None);
    let lock_path = env.root.path().join("run/thar-be-settings.lock");
    std::fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let held = std::fs::File::create(&lock_path).unwrap();
    held.lock().unwrap();

    let mut all = Command::new(testserver::workspace_bin("thar-be-settings"))
        .arg("--socket-path")
        .arg(&env.server.socket)
        .arg("--root")
        .arg(env.root.path())
        .arg("--all")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(all.try_wait().unwrap().is_none(), "--all did not wait");
    assert!(
        !env.path("motd").exists(),
        "--all wrote while another render ran"
    );

    // Commit without apply, so that only the waiting --all can render the new value.
    let (status, body) = env.server.raw(
        "PATCH",
        "/settings?tx=while-waiting",
        Some(r#"{"motd": "committed while waiting"}"#),
    );
    assert_eq!(status, 204, "{body}");
    env.server.json("POST", "/tx/commit?tx=while-waiting", None);
    drop(held);

    let output = all.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(env.read("motd"), "committed while waiting\n");
}
