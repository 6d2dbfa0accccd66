//! A containerd of the test's own (Debian's `containerd`, with `runc`), for the tests of the
//! parts that drive the host containerd: host-ctr's pull and run, the API server's `GET /exec`,
//! the health gate's command probes. It has its own root, state and socket in the test's
//! directory, no CRI plugin, and is stopped when dropped.
//!
//! [`start_container`] runs a container made of a few host files (dash as `/bin/sh`, sleep,
//! cat, stty and the C library) with host-ctr's own runtime spec, the way host-ctr starts a
//! host container, without a registry.
//!
//! Needs root (containerd mounts overlayfs and runs runc): [`ready`] says whether this host can
//! run such a test, printing why not.

use ctr_client::Containerd;
use host_ctr::store::ImageStore as _;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Host files that make a tiny image (host path, path in the image): dash as /bin/sh, sleep,
/// cat and stty, and the C library they link.
pub const TINY_IMAGE_FILES: &[(&str, &str)] = &[
    ("/usr/bin/dash", "bin/sh"),
    ("/usr/bin/sleep", "bin/sleep"),
    ("/usr/bin/cat", "bin/cat"),
    ("/usr/bin/stty", "bin/stty"),
    (
        "/lib/x86_64-linux-gnu/libc.so.6",
        "lib/x86_64-linux-gnu/libc.so.6",
    ),
    ("/lib64/ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2"),
];

/// Whether this host can run a containerd test: root, containerd, runc, every program of
/// `tools` (names in hosttools' table) and the files of [`TINY_IMAGE_FILES`]. Prints why
/// not; under CI a missing tool panics instead (see [`hosttools::require_tool`]).
pub fn ready(tools: &[&str]) -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: containerd needs root");
        return false;
    }
    ["containerd", "runc"]
        .iter()
        .chain(tools)
        .all(|tool| hosttools::require_tool(tool))
        && TINY_IMAGE_FILES.iter().all(|(from, _)| {
            let there = Path::new(from).exists();
            if !there {
                eprintln!("skipped: {from} is missing");
            }
            there
        })
}

/// A containerd of the test's own, stopped when dropped.
pub struct TestContainerd {
    child: Child,
    /// Its gRPC socket.
    pub socket: PathBuf,
    /// Its log (stderr), for failure messages.
    pub log: PathBuf,
}

impl TestContainerd {
    /// Starts containerd with its root, state, socket and log in `dir`, and waits (up to 30 s)
    /// for its socket.
    pub fn start(dir: &Path) -> TestContainerd {
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.internal.v1.opt\"]\n\
                 [grpc]\naddress = \"{socket}\"\n[ttrpc]\naddress = \"{socket}.ttrpc\"\n",
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                socket = socket.display(),
            ),
        )
        .unwrap();
        let log = dir.join("containerd.log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start containerd");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "containerd did not listen: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        TestContainerd { child, socket, log }
    }

    /// What containerd has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TestContainerd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("a pid fits in i32")),
            nix::sys::signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// An uncompressed tar layer of `files` (host path, path in the image), with the directories
/// a container's root needs.
pub fn layer(files: &[(&str, &str)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for dir in [
        "bin",
        "lib",
        "lib/x86_64-linux-gnu",
        "lib64",
        "etc",
        "tmp",
        "run",
        "dev",
        "proc",
        "sys",
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        tar.append_data(&mut header, dir, std::io::empty()).unwrap();
    }
    for (from, to) in files {
        let data = std::fs::read(from).unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o755);
        header.set_size(data.len() as u64);
        tar.append_data(&mut header, to, &data[..]).unwrap();
    }
    tar.into_inner().unwrap()
}

/// Starts host container `name` from [`TINY_IMAGE_FILES`], running `entrypoint` with `env`
/// (`PATH=/bin` first), as host-ctr would: its layer through the content store and the diff
/// service, host-ctr's runtime spec (confined), its storage in `dir/storage`. Its output is
/// not kept. Remove it with `host_ctr::run::remove`.
pub async fn start_container(
    containerd: &Containerd,
    name: &str,
    entrypoint: &[&str],
    env: &[&str],
    dir: &Path,
    api_socket: &Path,
) {
    // Under a lease until the container refers to its snapshot: containerd's garbage
    // collector, which first runs right after its start, removes content nothing refers to.
    let leased = containerd
        .with_lease(&format!("test-{name}"))
        .await
        .unwrap();
    let tar = layer(TINY_IMAGE_FILES);
    let descriptor = containerd_client::types::Descriptor {
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        digest: host_ctr::pull::sha256_digest(&tar),
        size: i64::try_from(tar.len()).unwrap(),
        annotations: HashMap::new(),
    };
    leased
        .write_content(
            &descriptor,
            futures::stream::once(async move { bytes::Bytes::from(tar) }),
            HashMap::new(),
        )
        .await
        .unwrap();
    let mounts = leased.prepare_snapshot(name, "").await.unwrap();
    leased
        .apply_layer(&descriptor, mounts.clone())
        .await
        .unwrap();
    let mut environment = vec!["PATH=/bin"];
    environment.extend(env);
    let process = host_ctr::spec::ImageProcess::from_config(&serde_json::json!({"config": {
        "Entrypoint": entrypoint, "Env": environment}}));
    let storage = dir.join("storage");
    std::fs::create_dir_all(&storage).unwrap();
    let spec = host_ctr::spec::build(&host_ctr::spec::SpecInput {
        kind: host_ctr::spec::Kind::Host,
        name,
        superpowered: false,
        process: &process,
        storage: &storage,
        api_socket,
        bounding: host_ctr::spec::bounding_set(),
    })
    .unwrap();
    leased
        .create_container(name, &format!("test/{name}"), &spec)
        .await
        .unwrap();
    leased.release().await.unwrap();
    containerd
        .start_task(name, mounts, Path::new(""), Path::new(""))
        .await
        .unwrap();
}
