//! VM end-to-end tests of signed A/B updates on the dev image: a real TUF repository made with
//! the `repo` crate from real builds, signed with the development keys the images trust, served
//! over HTTP on the host's loopback and reached by the guest only through QEMU's user
//! networking (10.0.2.100:80 forwarded to 127.0.0.1). The node updates through its API
//! (`apiclient update ...`), reboots into the other set, rolls back by itself from an image that
//! never passes its health checks, refuses tampered repositories, and survives a power cut in the middle
//! of writing an update. A setting the user set moves to its new name with the update (a signed
//! migration run forward) and back with a rollback by hand (the same migration run backward).
//! The update daemon takes an update by itself under policy `auto`, waits for a maintenance
//! window and for a slot of a real FleetLock server (tools/fleetlock-server, reached at
//! 10.0.2.101:8080), and gives the slot back after the new boot succeeded.
//! The A/B state is read on the host with `sgdisk -A` after each run.
//!
//! Needs the builds of `cargo xtask test`: dev at the default version, the next version, the
//! one after it with the test-broken-boot package (its host containerd cannot start), and the one after that with the next model
//! (see `xtask::image::update_test_builds`).

use disk_layout::{read_flags, BootFlags, BootSet, PartitionFlags, PartitionRole};
use rand::Rng;
use repo::serve::ServedDir;
use repo::{add_images, AddOptions, Expirations, ImageSet, KeyDir, KeyOptions, RepoDir};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use xtask::image::{self, Built};
use xtask::vm::{BootOptions, Node};

const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const SHELL_TIMEOUT: Duration = Duration::from_secs(60);
/// Where the guest finds the repository server.
const REPO_ADDR: Ipv4Addr = image::GUEST_REPO_ADDR;

fn built(version: &str) -> Built {
    image::existing("dev", version).unwrap_or_else(|| {
        panic!("no dev {version} image; run `cargo xtask test` (it builds the update test images)")
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The development keys the images trust.
fn image_keys() -> KeyDir {
    KeyDir::new(xtask::host::root().join(image::REPO_KEYS_DIR))
}

/// A repository in `dir` holding the update images of `builds`, signed with `keys`.
fn make_repo(dir: &Path, keys: &KeyDir, builds: &[&Built], options: AddOptions) -> RepoDir {
    let repo = RepoDir::new(dir);
    let rt = runtime();
    for b in builds {
        let images = ImageSet::from_build_dir(&b.out_dir).unwrap();
        rt.block_on(add_images(&repo, keys, &images, &options))
            .unwrap_or_else(|e| {
                panic!(
                    "cannot add {} to {}: {e}",
                    b.out_dir.display(),
                    dir.display()
                )
            });
    }
    repo
}

/// Guest networking in which 10.0.2.100:80 leads to `served`, and nothing else is reachable.
fn network(served: &ServedDir) -> vmtest::UserNet {
    vmtest::UserNet {
        guest_forwards: vec![vmtest::GuestForward::to_host_tcp(
            REPO_ADDR,
            80,
            served.port(),
        )],
        restrict: true,
        ..Default::default()
    }
}

fn apiclient_output(node: &Node, args: &[&str]) -> Output {
    node.apiclient_output(args)
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn apiclient(node: &Node, args: &[&str]) -> String {
    node.apiclient(args).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Points the node's updater at the repository under `/<sub>/` of the server.
fn use_repo(node: &Node, sub: &str) {
    apiclient(
        node,
        &[
            "set",
            &format!("updates.metadata-base-url=http://{REPO_ADDR}/{sub}/metadata/"),
            &format!("updates.targets-base-url=http://{REPO_ADDR}/{sub}/targets/"),
        ],
    );
}

/// `apiclient update check`: the update status document.
fn update_check(node: &Node) -> Value {
    let text = apiclient(node, &["update", "check"]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn update_status(node: &Node) -> Value {
    let (code, body) = node.api("GET", "/updates/status", None).unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn os_version(node: &Node) -> String {
    let (code, body) = node.api("GET", "/os", None).unwrap();
    assert_eq!(code, 200, "{body}");
    let os: Value = serde_json::from_str(&body).unwrap();
    os["version_id"].as_str().unwrap_or_default().to_string()
}

fn sh(node: &mut Node, command: &str) -> String {
    let (out, status) = node.vm.run_shell(command, SHELL_TIMEOUT).unwrap();
    assert_eq!(status, 0, "`{command}` failed in the guest: {out}");
    out.trim().to_string()
}

/// Polls a guest command until its output satisfies `ok`.
fn wait_for(node: &mut Node, command: &str, timeout: Duration, ok: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        let out = node.vm.run_shell(command, SHELL_TIMEOUT).unwrap().0;
        if ok(out.trim()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "`{command}` still printed {out:?} after {} s",
            timeout.as_secs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `apiclient update apply --reboot`, then waits until the guest goes down (QEMU runs with
/// -no-reboot, so a reboot ends the process).
fn apply_and_reboot(mut node: Node) {
    let out = apiclient_output(&node, &["update", "apply", "--reboot"]);
    assert!(
        out.status.success(),
        "update apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    node.vm.wait_for_exit(Duration::from_secs(180)).unwrap();
}

/// Waits until the boot is marked successful (configured, API up).
fn wait_until_successful(node: &mut Node) {
    wait_for(
        node,
        "systemctl is-active mark-successful-boot",
        Duration::from_secs(120),
        |s| s.ends_with("active") && !s.ends_with("inactive"),
    );
}

fn boot(built: &Built, name: &str, served: &ServedDir, keep_disk: bool) -> Node {
    boot_with_lock(built, name, served, None, keep_disk)
}

/// [`boot`], with the fleet lock server reachable at `LOCK_ADDR:LOCK_PORT` when given.
fn boot_with_lock(
    built: &Built,
    name: &str,
    served: &ServedDir,
    lock: Option<&LockServer>,
    keep_disk: bool,
) -> Node {
    let mut opts = BootOptions::new(name);
    let mut net = network(served);
    if let Some(lock) = lock {
        net.guest_forwards.push(vmtest::GuestForward::to_host_tcp(
            LOCK_ADDR, LOCK_PORT, lock.port,
        ));
    }
    opts.network = Some(net);
    opts.keep_disk = keep_disk;
    let mut node = Node::boot(built, &opts).unwrap();
    node.wait_for_api(BOOT_TIMEOUT).unwrap();
    node
}

/// Stops the guest cleanly and waits for QEMU to exit.
fn power_off(mut node: Node) {
    node.vm.type_on_console("systemctl poweroff\n").unwrap();
    node.vm.wait_for_exit(Duration::from_secs(120)).unwrap();
}

/// The A/B bits of the node's disk (its qcow2 overlay, converted to raw), read by our GPT
/// reader and checked against `sgdisk -A`.
fn disk_flags(run_dir: &Path) -> BootFlags {
    let raw = run_dir.join("disk-check.raw");
    let status = Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(run_dir.join("disk.qcow2"))
        .arg(&raw)
        .status()
        .unwrap();
    assert!(status.success(), "qemu-img convert failed");
    let flags = read_flags(&raw).unwrap();
    for (set, f) in [(BootSet::A, flags.boot_a), (BootSet::B, flags.boot_b)] {
        let number = PartitionRole::Boot(set).number();
        let mut expected = BTreeSet::new();
        for bit in 0..4 {
            if f.priority & (1 << bit) != 0 {
                expected.insert(48 + bit);
            }
            if f.tries_left & (1 << bit) != 0 {
                expected.insert(52 + bit);
            }
        }
        if f.successful {
            expected.insert(56);
        }
        assert_eq!(
            sgdisk_bits(&raw, number),
            expected,
            "sgdisk -A {number}:show disagrees with our reader for BOOT-{set:?}"
        );
    }
    let _ = std::fs::remove_file(&raw);
    flags
}

fn sgdisk_bits(disk: &Path, number: u32) -> BTreeSet<u32> {
    let output = Command::new("sgdisk")
        .args(["-A", &format!("{number}:show")])
        .arg(disk)
        .output()
        .expect("sgdisk is installed (apt-get install gdisk)");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let n: u32 = fields.next()?.trim().parse().ok()?;
            let bit: u32 = fields.next()?.parse().ok()?;
            (n == number && fields.next()?.starts_with('1')).then_some(bit)
        })
        .collect()
}

fn flags(priority: u8, tries_left: u8, successful: bool) -> PartitionFlags {
    PartitionFlags {
        priority,
        tries_left,
        successful,
    }
}

fn run_dir(name: &str) -> PathBuf {
    xtask::host::root().join("build/run").join(name)
}

#[test]
#[ignore = "boots a VM; run by `cargo xtask test`"]
fn update_through_the_api_boots_the_new_version_from_b_with_settings_kept() {
    let current = built(&image::default_version());
    let next = built(&image::later_version(1));
    let dir = tempfile::tempdir().unwrap();
    // The running version is published too: once on the next one, it is a downgrade.
    make_repo(
        &dir.path().join("good"),
        &image_keys(),
        &[&current, &next],
        AddOptions::default(),
    );
    let served = ServedDir::start(dir.path()).unwrap();

    let name = "test-update";
    let mut node = boot(&current, name, &served, false);
    wait_until_successful(&mut node);
    assert_eq!(os_version(&node), current.manifest.version);
    apiclient(&node, &["set", "motd=kept across the update"]);
    use_repo(&node, "good");

    let status = update_check(&node);
    assert_eq!(status["update_state"], "Available", "{status:#}");
    assert_eq!(
        status["chosen_update"]["version"], next.manifest.version,
        "{status:#}"
    );
    // Prepare, activate and reboot; the API answers 204 to the reboot.
    apply_and_reboot(node);
    // Before the next boot: B has its one try and the highest priority.
    let state = disk_flags(&run_dir(name));
    assert_eq!(state.boot_a, flags(1, 0, true), "{state:?}");
    assert_eq!(state.boot_b, flags(2, 1, false), "{state:?}");

    let mut node = boot(&current, name, &served, true);
    assert_eq!(os_version(&node), next.manifest.version);
    wait_until_successful(&mut node);
    let (code, settings) = node.api("GET", "/settings", None).unwrap();
    assert_eq!(code, 200);
    assert!(
        settings.contains("kept across the update"),
        "settings lost: {settings}"
    );
    assert_eq!(sh(&mut node, "cat /etc/motd"), "kept across the update");
    let signpost: Value =
        serde_json::from_str(&sh(&mut node, "signpost status --json 2>/dev/null")).unwrap();
    assert_eq!(signpost["active"], "B", "{signpost:#}");
    let status = update_status(&node);
    assert_eq!(status["update_state"], "Idle", "{status:#}");
    assert!(status["failed_update"].is_null(), "{status:#}");
    // Nothing newer; the older version is refused unless a downgrade is asked for, and the
    // refusal leaves the other set (the previous version, a rollback target) as it was.
    let status = update_check(&node);
    assert!(status["chosen_update"].is_null(), "{status:#}");
    let (out, code) = node
        .vm
        .run_shell(
            &format!("updog update-image --image {}", current.manifest.version),
            SHELL_TIMEOUT,
        )
        .unwrap();
    assert_ne!(code, 0, "a downgrade without --allow-downgrade: {out}");
    assert!(out.contains("downgrade"), "{out}");
    let signpost: Value =
        serde_json::from_str(&sh(&mut node, "signpost status --json 2>/dev/null")).unwrap();
    assert_eq!(signpost["inactive_bootable"], true, "{signpost:#}");
    // A proxy set for the node reaches the updater's configuration.
    apiclient(
        &node,
        &[
            "set",
            "network.https-proxy=proxy.ballast.invalid:3128",
            "network.no-proxy=[\"10.0.2.100\"]",
        ],
    );
    wait_for(
        &mut node,
        "grep -e ^https_proxy -e ^no_proxy /etc/updog.toml",
        Duration::from_secs(60),
        |out| {
            out.lines().map(str::trim).collect::<Vec<_>>()
                == [
                    "https_proxy = \"proxy.ballast.invalid:3128\"",
                    "no_proxy = [\"10.0.2.100\"]",
                ]
        },
    );
    // The repository is outside the proxy: checking still works.
    let status = update_check(&node);
    assert!(status["chosen_update"].is_null(), "{status:#}");
    power_off(node);
    // B booted, spent its try and is now the successful set with the higher priority.
    let state = disk_flags(&run_dir(name));
    assert_eq!(state.boot_a, flags(1, 0, true), "{state:?}");
    assert_eq!(state.boot_b, flags(2, 0, true), "{state:?}");
}

/// Where the guest finds the fleet lock server (its own port: QEMU names a guest forward's
/// device after the guest port alone, so two forwards cannot share port 80).
const LOCK_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 101);
const LOCK_PORT: u16 = 8080;

/// A real FleetLock server (tools/fleetlock-server) on host loopback, in its own thread, with
/// one slot per group and the given holders to start with.
struct LockServer {
    port: u16,
    locks: std::sync::Arc<fleetlock_server::Locks>,
    rt: tokio::runtime::Runtime,
}

impl LockServer {
    fn start(dir: &Path, holders: &str) -> LockServer {
        let state = dir.join("fleetlock.json");
        std::fs::write(&state, holders).unwrap();
        let locks = std::sync::Arc::new(fleetlock_server::Locks::open(&state, 1).unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        rt.spawn(fleetlock_server::serve(listener, locks.clone()));
        LockServer { port, locks, rt }
    }

    fn holders(&self) -> fleetlock_server::Holders {
        self.rt.block_on(self.locks.holders())
    }

    /// Gives back `id`'s slot, as that node would after its own update.
    fn release(&self, id: &str) {
        let params = fleetlock::ClientParams {
            id: id.to_string(),
            group: fleetlock::DEFAULT_GROUP.to_string(),
        };
        let url = format!("http://127.0.0.1:{}/", self.port);
        self.rt
            .block_on(fleetlock::steady_state(&url, &params))
            .unwrap();
    }
}

/// The daemon's part of the update status once `ok` holds for it, polling for `timeout`.
fn wait_for_daemon(
    node: &Node,
    timeout: Duration,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let status = update_status(node);
        if ok(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon never reached {what}: {status:#}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Issue 18: the update daemon acts by itself under policy `auto`, and only when allowed. A
/// pause holds everything back until resumed; a closed maintenance window holds the reboot
/// back (the update is staged meanwhile), and so does a fleet lock whose only slot another
/// node holds; once the slot is free the node takes it, reboots into the update with no update
/// call from anyone, and gives the slot back after the new boot is marked successful.
#[test]
#[ignore = "boots a VM; run by `cargo xtask test`"]
fn a_closed_window_and_a_held_fleet_lock_hold_the_reboot_back() {
    let current = built(&image::default_version());
    let next = built(&image::later_version(1));
    let dir = tempfile::tempdir().unwrap();
    make_repo(
        &dir.path().join("held"),
        &image_keys(),
        &[&next],
        AddOptions::default(),
    );
    let served = ServedDir::start(dir.path()).unwrap();
    let lock = LockServer::start(dir.path(), r#"{"default": ["another-node"]}"#);

    let name = "test-window-lock";
    let boot_node =
        |keep_disk: bool| boot_with_lock(&current, name, &served, Some(&lock), keep_disk);
    let mut node = boot_node(false);
    wait_until_successful(&mut node);
    use_repo(&node, "held");

    // A window that opens in six hours (the guest's clock is the host's): staged, no reboot.
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let later = now
        .checked_add(jiff::SignedDuration::from_hours(6))
        .unwrap();
    let window = |start: &jiff::Zoned| {
        serde_json::json!({"updates": {"maintenance-windows": {"test": {
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start": start.strftime("%H:%M").to_string(),
            "length": "2h"
        }}}})
        .to_string()
    };
    // Paused first: the daemon reports the pause and does nothing.
    apiclient(&node, &["update", "pause"]);
    apiclient(&node, &["set", "--json", &window(&later)]);
    apiclient(
        &node,
        &[
            "set",
            &format!("updates.fleet-lock.url=http://{LOCK_ADDR}:{LOCK_PORT}/"),
            "updates.policy=auto",
        ],
    );
    let status = wait_for_daemon(&node, Duration::from_secs(150), "policy auto", |s| {
        s["daemon"]["policy"] == "auto"
    });
    assert_eq!(status["daemon"]["paused"], "indefinite", "{status:#}");
    assert_eq!(status["daemon"]["last_decision"], "wait", "{status:#}");
    assert!(status["most_recent_command"].is_null(), "{status:#}");
    apiclient(&node, &["update", "resume"]);
    let status = wait_for_daemon(
        &node,
        Duration::from_secs(300),
        "a staged update waiting for its window",
        |s| s["update_state"] == "Staged" && s["daemon"]["next_window"].is_string(),
    );
    assert_eq!(status["daemon"]["last_decision"], "wait", "{status:#}");
    assert!(
        node.vm.is_running(),
        "the node rebooted with the window closed"
    );

    // The window opens (it started ten minutes ago), but the only slot is taken.
    let earlier = now
        .checked_sub(jiff::SignedDuration::from_mins(10))
        .unwrap();
    apiclient(&node, &["set", "--json", &window(&earlier)]);
    let status = wait_for_daemon(
        &node,
        Duration::from_secs(180),
        "waiting for the fleet lock",
        |s| s["daemon"]["lock"] == "waiting",
    );
    println!("waiting for the lock: {}", status["daemon"]["reason"]);
    assert_eq!(status["update_state"], "Staged", "{status:#}");
    std::thread::sleep(Duration::from_secs(20));
    assert!(node.vm.is_running(), "the node rebooted without the lock");
    assert_eq!(
        lock.holders()["default"].iter().collect::<Vec<_>>(),
        ["another-node"]
    );

    // The other node gives its slot back: this one takes it and reboots into the update.
    lock.release("another-node");
    node.vm
        .wait_for_exit(Duration::from_secs(600))
        .expect("the daemon should reboot the node once it holds the lock");
    drop(node);
    let held = lock.holders();
    assert_eq!(held["default"].len(), 1, "{held:?}");
    assert!(!held["default"].contains("another-node"), "{held:?}");

    // The new boot is marked successful, then the slot is given back.
    let mut node = boot_node(true);
    assert_eq!(os_version(&node), next.manifest.version);
    wait_until_successful(&mut node);
    let deadline = Instant::now() + Duration::from_secs(180);
    while lock.holders().get("default").is_some_and(|h| !h.is_empty()) {
        assert!(
            Instant::now() < deadline,
            "the slot was never given back: {:?} {:#}",
            lock.holders(),
            update_status(&node)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let status = update_status(&node);
    assert_eq!(status["update_state"], "Idle", "{status:#}");
    assert!(status["failed_update"].is_null(), "{status:#}");
    power_off(node);
    let state = disk_flags(&run_dir(name));
    assert_eq!(state.boot_b, flags(2, 0, true), "{state:?}");
}

/// An update that never finishes booting is rolled back with nobody involved, and the fleet
/// lock it took is given back by the old version. The node's health checks
/// (`settings.health.units`) require the host containerd, which the broken image cannot start.
/// The update daemon (policy `auto`, a lock server with one free slot) stages the update, takes
/// the slot and reboots into it; the broken image reaches configured.target and answers on its
/// API, but its health gate never marks the boot successful, so it never gives the slot back,
/// and its boot deadline resets the node; the old version boots from A, reports the failed
/// update and the check that failed, gives the slot back and does not try that update again.
#[test]
#[ignore = "boots a VM; run by `cargo xtask test`"]
fn an_update_that_never_finishes_booting_is_rolled_back_by_itself() {
    let current = built(&image::default_version());
    let broken = built(&image::later_version(2));
    let dir = tempfile::tempdir().unwrap();
    make_repo(
        &dir.path().join("broken"),
        &image_keys(),
        &[&broken],
        AddOptions::default(),
    );
    let served = ServedDir::start(dir.path()).unwrap();
    let lock = LockServer::start(dir.path(), "{}");

    let name = "test-rollback";
    let boot_node =
        |keep_disk: bool| boot_with_lock(&current, name, &served, Some(&lock), keep_disk);
    let mut node = boot_node(false);
    wait_until_successful(&mut node);
    use_repo(&node, "broken");
    // Healthy here (the host containerd runs), so it changes nothing on this version.
    apiclient(
        &node,
        &[
            "set",
            "--json",
            r#"{"health": {"units": ["host-containerd.service"], "boot-wait": "60s"}}"#,
        ],
    );
    apiclient(
        &node,
        &[
            "set",
            &format!("updates.fleet-lock.url=http://{LOCK_ADDR}:{LOCK_PORT}/"),
            "updates.policy=auto",
        ],
    );
    node.vm
        .wait_for_exit(Duration::from_secs(600))
        .expect("the daemon should stage the update, take the slot and reboot into it");
    drop(node);
    let held = lock.holders();
    let holders: Vec<String> = held
        .get("default")
        .map(|h| h.iter().cloned().collect())
        .unwrap_or_default();
    assert_eq!(
        holders.len(),
        1,
        "the node rebooted without the slot: {held:?}"
    );

    // The broken image boots from B (its API answers), never marks success, and its boot
    // deadline resets the node. It never reached success, so it never gave the slot back.
    let mut node = boot_node(true);
    assert_eq!(os_version(&node), broken.manifest.version);
    node.vm
        .wait_for_exit(Duration::from_secs(300))
        .expect("the broken image should reset itself at its boot deadline");
    let log = node.vm.console_log();
    assert!(
        log.contains("was not marked successful within"),
        "no deadline message on the console"
    );
    assert!(
        log.contains("unit host-containerd.service is"),
        "the health gate did not name the failed check on the console"
    );
    drop(node);
    let state = disk_flags(&run_dir(name));
    assert!(!state.boot_b.successful, "{state:?}");
    assert_eq!(
        state.boot_b.tries_left, 0,
        "B's one try is spent: {state:?}"
    );
    let held = lock.holders();
    assert!(
        held.get("default").is_some_and(|h| h.contains(&holders[0])),
        "the failed boot gave the slot back: {held:?}"
    );

    // The next boot is the old version from A: once it is marked successful, it gives the
    // slot back, reports the failed update, and leaves that update alone.
    let mut node = boot_node(true);
    assert_eq!(os_version(&node), current.manifest.version);
    wait_until_successful(&mut node);
    let deadline = Instant::now() + Duration::from_secs(180);
    while lock.holders().get("default").is_some_and(|h| !h.is_empty()) {
        assert!(
            Instant::now() < deadline,
            "the old version never gave the slot back: {:?} {:#}",
            lock.holders(),
            update_status(&node)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let status = wait_for_daemon(
        &node,
        Duration::from_secs(120),
        "leaving the failed update alone",
        |s| s["daemon"]["lock"] != "held" && s["daemon"]["last_decision"] == "wait",
    );
    assert_eq!(
        status["failed_update"]["version"], broken.manifest.version,
        "{status:#}"
    );
    let health = status["failed_update"]["health"]
        .as_str()
        .unwrap_or_default();
    assert!(health.contains("host-containerd.service"), "{status:#}");
    let text = apiclient(&node, &["status"]);
    assert!(
        text.contains(&format!("rolled back from {}", broken.manifest.version))
            && text.contains("host-containerd.service"),
        "{text}"
    );
    let reason = status["daemon"]["reason"].as_str().unwrap_or_default();
    println!("after the rollback, the daemon says: {reason}");
    assert!(reason.contains("not tried again"), "{status:#}");
    std::thread::sleep(Duration::from_secs(20));
    assert!(
        node.vm.is_running(),
        "the node rebooted into the failed update again"
    );
    power_off(node);
    let state = disk_flags(&run_dir(name));
    assert!(state.boot_a.successful, "{state:?}");
    assert!(!state.boot_b.successful, "{state:?}");
}

#[test]
#[ignore = "boots a VM; run by `cargo xtask test`"]
fn tampered_repositories_are_refused_and_the_node_keeps_booting() {
    let current = built(&image::default_version());
    let next = built(&image::later_version(1));
    let dir = tempfile::tempdir().unwrap();
    let keys = image_keys();

    // A target changed after signing: one byte of the root image target.
    let tampered = make_repo(
        &dir.path().join("tampered"),
        &keys,
        &[&next],
        AddOptions::default(),
    );
    let root_target = std::fs::read_dir(tampered.targets_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("root.erofs.zst"))
        .expect("a root target");
    let mut bytes = std::fs::read(&root_target).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&root_target, bytes).unwrap();

    // Signed by keys the image does not trust.
    let rt = runtime();
    let other_keys = rt
        .block_on(KeyDir::generate(
            dir.path().join("other-keys"),
            &KeyOptions::default(),
        ))
        .unwrap();
    make_repo(
        &dir.path().join("other-keys-repo"),
        &other_keys,
        &[&next],
        AddOptions::default(),
    );

    // Expired: signed three weeks ago with the default expiries (two weeks at most).
    let three_weeks_ago = repo::Timestamp::now()
        .checked_sub(repo::Span::new().hours(24 * 21))
        .unwrap();
    make_repo(
        &dir.path().join("expired"),
        &keys,
        &[&next],
        AddOptions {
            now: three_weeks_ago,
            expirations: Expirations::default(),
            ..AddOptions::default()
        },
    );
    let served = ServedDir::start(dir.path()).unwrap();

    let name = "test-tamper";
    let mut node = boot(&current, name, &served, false);
    wait_until_successful(&mut node);

    for (sub, expect) in [("other-keys-repo", "sign"), ("expired", "expire")] {
        use_repo(&node, sub);
        let out = apiclient_output(&node, &["update", "check"]);
        let status = update_status(&node);
        let stderr = status["most_recent_command"]["stderr"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        assert_eq!(
            status["most_recent_command"]["cmd_status"], "Failed",
            "{sub}: the check should fail: {status:#}\napiclient: {out:?}"
        );
        assert!(
            stderr.contains(expect),
            "{sub}: the error should mention '{expect}': {stderr}"
        );
        assert!(status["chosen_update"].is_null(), "{sub}: {status:#}");
    }

    use_repo(&node, "tampered");
    let status = update_check(&node);
    assert_eq!(status["update_state"], "Available", "{status:#}");
    let out = apiclient_output(&node, &["update", "apply"]);
    assert!(
        !out.status.success(),
        "a tampered target must not be applied"
    );
    let status = update_status(&node);
    let stderr = status["most_recent_command"]["stderr"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        stderr.contains("root.erofs"),
        "the error should name the target: {stderr}"
    );
    assert_ne!(status["update_state"], "Staged", "{status:#}");
    assert_ne!(status["update_state"], "Ready", "{status:#}");
    let signpost: Value =
        serde_json::from_str(&sh(&mut node, "signpost status --json 2>/dev/null")).unwrap();
    assert_eq!(signpost["next"], "A", "{signpost:#}");
    assert_eq!(signpost["inactive_bootable"], false, "{signpost:#}");
    node.vm.type_on_console("systemctl reboot\n").unwrap();
    node.vm.wait_for_exit(Duration::from_secs(120)).unwrap();
    drop(node);

    let state = disk_flags(&run_dir(name));
    assert_eq!(state.boot_b, flags(0, 0, false), "{state:?}");
    let node = boot(&current, name, &served, true);
    assert_eq!(os_version(&node), current.manifest.version);
}

#[test]
#[ignore = "boots a VM; run by `cargo xtask test`"]
fn a_power_cut_while_writing_an_update_leaves_the_old_version_booting() {
    let current = built(&image::default_version());
    let next = built(&image::later_version(1));
    let dir = tempfile::tempdir().unwrap();
    make_repo(
        &dir.path().join("good"),
        &image_keys(),
        &[&next],
        AddOptions::default(),
    );
    let served = ServedDir::start(dir.path()).unwrap();

    let name = "test-power-cut";
    let mut node = boot(&current, name, &served, false);
    wait_until_successful(&mut node);
    use_repo(&node, "good");
    let status = update_check(&node);
    assert_eq!(status["update_state"], "Available", "{status:#}");
    let (code, body) = node.api("POST", "/actions/prepare-update", None).unwrap();
    assert!(code < 300, "prepare-update: {code} {body}");

    // Wait until bytes are being written, then cut the power a random moment later.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let status = update_status(&node);
        let written = status["progress"]["bytes_written"].as_u64().unwrap_or(0);
        if written > 0 {
            break;
        }
        assert_eq!(
            status["update_state"], "Available",
            "the write finished before any progress was seen: {status:#}"
        );
        assert!(Instant::now() < deadline, "no write progress: {status:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let delay = Duration::from_millis(rand::rng().random_range(0..3000));
    eprintln!("cutting the power {} ms into the write", delay.as_millis());
    std::thread::sleep(delay);
    node.vm.kill().unwrap();
    drop(node);

    let state = disk_flags(&run_dir(name));
    assert_eq!(
        state.boot_b.priority, 0,
        "a half-written set must not be chosen: {state:?}"
    );
    let mut node = boot(&current, name, &served, true);
    assert_eq!(os_version(&node), current.manifest.version);
    wait_until_successful(&mut node);
    power_off(node);
}

/// `apiclient get settings.dns` on the node: the `settings.dns` object.
fn dns_settings(node: &Node) -> Value {
    let text = apiclient(node, &["get", "settings.dns"]);
    let value: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    value["settings"]["dns"].clone()
}

/// The template the node renders /etc/resolv.conf from (the image's definition, in the API).
fn resolv_conf_template(node: &Node) -> String {
    let text = apiclient(node, &["get", "configuration-files.resolv-conf"]);
    let value: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    value["configuration-files"]["resolv-conf"]["template-path"]
        .as_str()
        .unwrap_or_else(|| panic!("no template-path: {value:#}"))
        .to_string()
}

/// Waits until the `search` line of the node's /etc/resolv.conf is `expected`.
fn wait_for_search_line(node: &mut Node, expected: &str) {
    wait_for(
        node,
        "grep '^search' /etc/resolv.conf || true",
        Duration::from_secs(30),
        |out| out.lines().any(|l| l.trim() == expected),
    );
}

/// The names of the node's live `settings.dns` keys, from the datastore's directory, and the
/// version directory `current` names.
fn stored_dns_keys(node: &mut Node) -> (Vec<String>, String) {
    let base = constants::DATASTORE_DIR;
    let listing = sh(node, &format!("ls -1 {base}/current/live/settings/dns/"));
    let mut keys: Vec<String> = listing
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    keys.sort();
    let current = sh(node, &format!("readlink {base}/current"));
    (keys, current)
}

/// The migrator's log of this boot, without terminal colour codes.
fn migrator_journal(node: &mut Node) -> String {
    let log = sh(node, "journalctl -b -u migrator.service -o cat --no-pager");
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequence: ESC [ parameters final-letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

#[test]
#[ignore = "boots a VM; run by `cargo xtask test`"]
fn a_renamed_setting_follows_the_update_and_the_rollback() {
    let current = built(&image::default_version());
    let renamed = built(&image::later_version(3));
    let dir = tempfile::tempdir().unwrap();
    let keys = image_keys();
    let repo_dir = dir.path().join("rename");
    let repo = make_repo(&repo_dir, &keys, &[&renamed], AddOptions::default());
    // The migration, published under the name of the version it migrates to.
    let program = image::build_rename_dns_migration().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    let migration_name = format!(
        "migrate_v{}_{}",
        renamed.manifest.version,
        image::RENAME_DNS_MIGRATION
    );
    let migration = migrations.join(&migration_name);
    std::fs::copy(&program, &migration).unwrap();
    runtime()
        .block_on(repo::add_migrations(
            &repo,
            &keys,
            repo::Version::parse(&current.manifest.version).unwrap(),
            repo::Version::parse(&renamed.manifest.version).unwrap(),
            &[migration],
        ))
        .unwrap_or_else(|e| panic!("cannot add {migration_name}: {e}"));
    let served = ServedDir::start(dir.path()).unwrap();

    // N: the user sets the search list, and resolv.conf follows.
    let name = "test-rename";
    let mut node = boot(&current, name, &served, false);
    wait_until_successful(&mut node);
    assert_eq!(os_version(&node), current.manifest.version);
    apiclient(&node, &["set", r#"dns.search-list=["example.test"]"#]);
    wait_for_search_line(&mut node, "search example.test");
    assert_eq!(
        dns_settings(&node)["search-list"],
        serde_json::json!(["example.test"])
    );
    assert_eq!(
        resolv_conf_template(&node),
        "/usr/share/templates/resolv-conf"
    );

    use_repo(&node, "rename");
    let status = update_check(&node);
    assert_eq!(status["update_state"], "Available", "{status:#}");
    assert_eq!(
        status["chosen_update"]["version"], renamed.manifest.version,
        "{status:#}"
    );
    apply_and_reboot(node);

    // N+3: the migrator ran the signed migration forward; the value is under the new name
    // only, in the API and on disk, and resolv.conf is rendered from it.
    let mut node = boot(&current, name, &served, true);
    assert_eq!(os_version(&node), renamed.manifest.version);
    wait_until_successful(&mut node);
    let journal = migrator_journal(&mut node);
    assert!(
        journal.contains("running migration")
            && journal.contains(&migration_name)
            && journal.contains("forward"),
        "no forward run of {migration_name} in the migrator's journal:\n{journal}"
    );
    let dns = dns_settings(&node);
    assert_eq!(
        dns["search-domains"],
        serde_json::json!(["example.test"]),
        "{dns:#}"
    );
    assert!(dns.get("search-list").is_none(), "{dns:#}");
    let (stored, version_dir) = stored_dns_keys(&mut node);
    assert_eq!(stored, ["search-domains"]);
    assert_eq!(version_dir, format!("v{}", renamed.manifest.version));
    assert_eq!(
        resolv_conf_template(&node),
        "/usr/share/templates/resolv-conf-next"
    );
    wait_for_search_line(&mut node, "search example.test");
    // The next model refuses the old name, and the new name drives the resolver's file.
    let out = apiclient_output(&node, &["set", r#"dns.search-list=["old.test"]"#]);
    assert!(!out.status.success(), "the old name was accepted on N+3");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("search-list"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    apiclient(
        &node,
        &[
            "set",
            r#"dns.search-domains=["example.test","changed.test"]"#,
        ],
    );
    wait_for_search_line(&mut node, "search example.test changed.test");

    // Roll back by hand, as on Bottlerocket: the other set (N) first, then reboot.
    sh(&mut node, "signpost rollback-to-inactive");
    node.vm.type_on_console("systemctl reboot\n").unwrap();
    node.vm.wait_for_exit(Duration::from_secs(120)).unwrap();
    drop(node);
    let state = disk_flags(&run_dir(name));
    assert_eq!(state.boot_a, flags(2, 0, true), "{state:?}");
    assert_eq!(state.boot_b, flags(1, 0, true), "{state:?}");

    // N again: the migrator ran the migration backward from the mirror updog saved, so the
    // value set on N+3 is back under the old name (not N's old store reused).
    let mut node = boot(&current, name, &served, true);
    assert_eq!(os_version(&node), current.manifest.version);
    wait_until_successful(&mut node);
    let journal = migrator_journal(&mut node);
    assert!(
        journal.contains("running migration")
            && journal.contains(&migration_name)
            && journal.contains("backward"),
        "no backward run of {migration_name} in the migrator's journal:\n{journal}"
    );
    let dns = dns_settings(&node);
    assert_eq!(
        dns["search-list"],
        serde_json::json!(["example.test", "changed.test"]),
        "{dns:#}"
    );
    assert!(dns.get("search-domains").is_none(), "{dns:#}");
    let (stored, version_dir) = stored_dns_keys(&mut node);
    assert_eq!(stored, ["search-list"]);
    assert_eq!(version_dir, format!("v{}", current.manifest.version));
    assert_eq!(
        resolv_conf_template(&node),
        "/usr/share/templates/resolv-conf"
    );
    wait_for_search_line(&mut node, "search example.test changed.test");
    power_off(node);
}
