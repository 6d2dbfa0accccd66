//! The node's CRI contract on the build host, with real parts: a containerd of the test's own
//! (Debian's, with runc) running the CRI plugin from the shipped `containerd-config` and
//! `cri-base-spec` templates, rendered from the shared defaults plus a registry mirror with
//! credentials; a real registry (Debian's docker-registry) that wants a password; and this
//! crate's client doing what kubelet does.
//!
//! Only the paths differ from a node: root, state and socket under a temporary directory, and
//! the cgroupfs driver, because the build host has no systemd to hand cgroups to (the VM test
//! covers the systemd driver). The images are made here from the host's own programs: a
//! pause image (`sleep infinity`) and a test workload with the project's test-workload command
//! (plus `cat` and `unshare`, for the checks).
//!
//! Needs root (containerd mounts overlayfs and runs runc); skipped with a message otherwise,
//! and when containerd, runc or docker-registry is missing (under CI that panics instead).

use cri_client::{Auth, ContainerRequest, Cri, PodRequest, Seccomp};
use sha2::Digest as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The name under which the node knows the images; only the mirror maps it to the registry.
const MIRRORED: &str = "registry.ballast.invalid";
/// The test workload's command, as in packages/container-images/test-workload/image.toml.
const WORKLOAD_CMD: &str = "echo ballast test workload started; exec sleep infinity";
const STARTED: &str = "ballast test workload started";
/// containerd's default capability set as a /proc mask (CHOWN DAC_OVERRIDE FOWNER FSETID KILL
/// SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP).
const DEFAULT_CAPS_MASK: &str = "00000000a80425fb";

const LIBS: &[&str] = &[
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/lib64/ld-linux-x86-64.so.2",
];

fn credentials() -> registry::Credentials {
    registry::Credentials {
        username: "kubelet".into(),
        password: "pull-s3cret".into(),
    }
}

fn ready() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: containerd needs root");
        return false;
    }
    ["containerd", "runc", "docker-registry", "unshare"]
        .iter()
        .all(|tool| hosttools::require_tool(tool))
        && LIBS
            .iter()
            .chain(&["/usr/bin/dash", "/usr/bin/sleep", "/usr/bin/cat"])
            .all(|path| {
                let there = Path::new(path).exists();
                if !there {
                    eprintln!("skipped: {path} is missing");
                }
                there
            })
}

/// One gzipped layer of host programs (`(host path, path in the image)`) and the C library,
/// and its diff ID.
fn layer(programs: &[(&str, &str)]) -> (Vec<u8>, String) {
    let mut tar = tar::Builder::new(Vec::new());
    for dir in [
        "bin",
        "lib",
        "lib/x86_64-linux-gnu",
        "lib64",
        "etc",
        "tmp",
        "run",
        "proc",
        "sys",
        "dev",
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        tar.append_data(&mut header, dir, std::io::empty()).unwrap();
    }
    let libs = LIBS.iter().map(|l| (*l, l.trim_start_matches('/')));
    for (from, to) in programs.iter().copied().chain(libs) {
        let data = std::fs::read(from).unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o755);
        header.set_size(data.len() as u64);
        tar.append_data(&mut header, to, &data[..]).unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let diff_id = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&tar)));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

/// Pushes an image of `programs` with `config` (the image config's `config` object) to the
/// registry at `host` as `repository:test`, with the registry's password.
async fn push(host: &str, repository: &str, programs: &[(&str, &str)], config: serde_json::Value) {
    let (layer, diff_id) = layer(programs);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let reference = oci_client::Reference::with_tag(host.into(), repository.into(), "test".into());
    let credentials = credentials();
    client
        .push(
            &reference,
            &[oci_client::client::ImageLayer::oci_v1_gzip(layer, None)],
            oci_client::client::Config::oci_v1(serde_json::to_vec(&config).unwrap(), None),
            &oci_client::secrets::RegistryAuth::Basic(credentials.username, credentials.password),
            None,
        )
        .await
        .unwrap();
}

fn template(name: &str) -> (String, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packages/containerd/files/usr/share/templates")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    (path.display().to_string(), text)
}

fn render(name: &str, settings: &serde_json::Value) -> String {
    let (path, text) = template(name);
    schnauzer::render_template(
        &path,
        &text,
        &serde_json::json!({"settings": settings, "os": {}}),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The settings of the node under test: the shared defaults, the mirror with credentials and
/// the pause image under the mirrored name.
fn settings(registry: &str) -> serde_json::Value {
    let mut settings = models::shared_defaults().settings;
    let credentials = credentials();
    settings["container-registry"] = serde_json::json!({
        "mirrors": [{"registry": MIRRORED, "endpoint": [format!("http://{registry}")]}],
        "credentials": [{"registry": registry, "username": credentials.username,
                         "password": credentials.password}],
    });
    settings["container-runtime"]["pause-image"] =
        serde_json::json!(format!("{MIRRORED}/ballast/pause:test"));
    // runc may not raise a hard limit above the test's own without CAP_SYS_RESOURCE, which a
    // restricted build host withholds; the node's default (1048576) is left to the VM test.
    let (soft, hard) = open_files_limits();
    settings["oci-defaults"]["resource-limits"]["max-open-files"] =
        serde_json::json!({"hard-limit": hard, "soft-limit": soft});
    models::parse_settings(&settings).unwrap_or_else(|e| panic!("settings invalid: {e}"));
    settings
}

/// The open files limits the test's containers get: the test's own hard limit, and half of
/// it as the soft one (so both are seen to come from the settings).
fn open_files_limits() -> (u64, u64) {
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    let hard = hard.min(1 << 20);
    (hard / 2, hard)
}

/// A containerd of the test's own with the rendered CRI configuration, stopped when dropped.
struct TestContainerd {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl TestContainerd {
    fn start(dir: &Path, settings: &serde_json::Value) -> TestContainerd {
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("containerd.sock");
        let base_spec = dir.join("cri-base.json");
        std::fs::write(&base_spec, render("cri-base-spec", settings)).unwrap();
        let mut config: toml::Table = render("containerd-config", settings).parse().unwrap();
        // The node's file, moved into the test's directory.
        config["root"] = dir.join("root").display().to_string().into();
        config["state"] = dir.join("state").display().to_string().into();
        config["grpc"]["address"] = socket.display().to_string().into();
        config.insert(
            "ttrpc".into(),
            toml::Value::Table(toml::Table::from_iter([(
                "address".to_string(),
                format!("{}.ttrpc", socket.display()).into(),
            )])),
        );
        let runc =
            &mut config["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["runc"];
        assert_eq!(
            runc["base_runtime_spec"].as_str(),
            Some(constants::CRI_BASE_SPEC)
        );
        runc["base_runtime_spec"] = base_spec.display().to_string().into();
        runc["options"]["SystemdCgroup"] = false.into();
        // The pause container's oom_score_adj (-998) needs CAP_SYS_RESOURCE, which a restricted
        // build host withholds: keep every score at or above containerd's own.
        config["plugins"]["io.containerd.grpc.v1.cri"]
            .as_table_mut()
            .unwrap()
            .insert("restrict_oom_score_adj".into(), true.into());
        let path = dir.join("config.toml");
        std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();

        let log = dir.join("containerd.log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&path)
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

    fn log(&self) -> String {
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

/// Waits until the log at `path` has a line holding `text`; the whole log.
async fn wait_for_log(path: &str, text: &str, containerd: &TestContainerd) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(lines) = cri_client::read_log(Path::new(path)) {
            if lines.iter().any(|l| l.text.contains(text)) {
                return lines
                    .iter()
                    .map(|l| format!("{} {}\n", l.stream, l.text))
                    .collect();
            }
        }
        assert!(
            Instant::now() < deadline,
            "'{text}' never showed in {path}; containerd's log:\n{}",
            containerd.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `script` in a new container of `pod` to its end; its exit code and output.
async fn run_script(
    cri: &mut Cri,
    pod: &cri_client::Pod,
    mut request: ContainerRequest,
    script: &str,
) -> (i32, String) {
    request.command = vec!["/bin/sh".into(), "-c".into(), script.into()];
    let id = cri.create_container(pod, &request).await.unwrap();
    cri.start_container(&id).await.unwrap();
    let status = cri
        .wait_for_exit(&id, Duration::from_secs(60))
        .await
        .unwrap();
    let output = cri_client::read_log(Path::new(&status.log_path))
        .unwrap()
        .iter()
        .map(|l| format!("{}\n", l.text))
        .collect();
    (status.exit_code.unwrap(), output)
}

#[test]
fn a_pod_runs_through_the_cri_as_kubelet_runs_it() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry =
        registry::Registry::start_with_auth(&dir.path().join("registry"), 0, &credentials())
            .unwrap();
    let host = registry.addr().to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        push(
            &host,
            "ballast/pause",
            &[("/usr/bin/sleep", "bin/sleep")],
            serde_json::json!({"Entrypoint": ["/bin/sleep", "infinity"]}),
        )
        .await;
        push(
            &host,
            "ballast/test-workload",
            &[
                ("/usr/bin/dash", "bin/sh"),
                ("/usr/bin/sleep", "bin/sleep"),
                ("/usr/bin/cat", "bin/cat"),
                ("/usr/bin/unshare", "bin/unshare"),
            ],
            serde_json::json!({"Entrypoint": ["/bin/sh", "-c"], "Cmd": [WORKLOAD_CMD],
                               "Env": ["PATH=/bin"]}),
        )
        .await;
    });
    let containerd = TestContainerd::start(&dir.path().join("containerd"), &settings(&host));
    let logs = dir.path().join("pods");
    let workload = format!("{MIRRORED}/ballast/test-workload:test");

    runtime.block_on(async {
        let host = registry.addr().to_string();
        let mut cri = Cri::connect(&containerd.socket).await.unwrap();
        let version = cri.version().await.unwrap();
        assert_eq!(version.runtime_name, "containerd");
        assert_eq!(version.runtime_api_version, "v1");

        // The pull secret given with the request; the pause image comes with the node's own
        // credentials from settings when the pod starts.
        let credentials = credentials();
        let auth = Auth {
            username: credentials.username.clone(),
            password: credentials.password.clone(),
        };
        let started = Instant::now();
        cri.pull(&workload, Some(&auth)).await.unwrap();
        let pull = started.elapsed();
        let started = Instant::now();
        let pod = cri
            .run_pod(&PodRequest::new(
                "workload",
                &logs.join("default_workload").display().to_string(),
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}\ncontainerd's log:\n{}", containerd.log()));
        let sandbox = started.elapsed();

        // The image's own command: it says it started and keeps running.
        let started = Instant::now();
        let main = cri
            .create_container(&pod, &ContainerRequest::new("main", &workload))
            .await
            .unwrap();
        cri.start_container(&main).await.unwrap();
        let status = cri.status(&main).await.unwrap();
        let log = wait_for_log(&status.log_path, STARTED, &containerd).await;
        println!(
            "pull {:.2} s, RunPodSandbox (pause pull included) {:.2} s, container to its first \
             line {:.2} s",
            pull.as_secs_f64(),
            sandbox.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        assert_eq!(log, format!("stdout {STARTED}\n"));
        assert_eq!(cri.status(&main).await.unwrap().state, "CONTAINER_RUNNING");

        // What every container gets without asking: the default seccomp profile (mode 2,
        // filter), containerd's default capabilities, the resource limits of
        // settings.oci-defaults. unshare --user is refused by the profile. no-new-privileges
        // is what the request says (kubelet: allowPrivilegeEscalation: false), whatever the
        // base spec holds: containerd 1.6's CRI sets it from the request for every container.
        let mut request = ContainerRequest::new("defaults", &workload);
        request.no_new_privs = true;
        let (code, output) = run_script(
            &mut cri,
            &pod,
            request,
            "cat /proc/self/status /proc/self/limits; unshare --user sleep 0; echo unshare-exit=$?",
        )
        .await;
        assert_eq!(code, 0, "{output}");
        for want in [
            "Seccomp:\t2",
            "NoNewPrivs:\t1",
            &format!("CapEff:\t{DEFAULT_CAPS_MASK}"),
            &format!("CapBnd:\t{DEFAULT_CAPS_MASK}"),
        ] {
            assert!(
                output.lines().any(|l| l == want),
                "no '{want}' in:\n{output}"
            );
        }
        let open_files = output
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap_or_else(|| panic!("no open files limit:\n{output}"));
        let (soft, hard) = open_files_limits();
        assert_eq!(
            open_files.split_whitespace().collect::<Vec<_>>()[3..5],
            [soft.to_string(), hard.to_string()],
            "{open_files}"
        );
        assert!(
            output.contains("Operation not permitted") && output.contains("unshare-exit=1"),
            "{output}"
        );

        // The same call without a filter succeeds: it is the default profile that refuses it.
        // This request leaves no-new-privileges off, and so does the runtime (see above).
        let mut request = ContainerRequest::new("unconfined", &workload);
        request.seccomp = Seccomp::Unconfined;
        let (_, output) = run_script(
            &mut cri,
            &pod,
            request,
            "unshare --user sleep 0; echo unshare-exit=$?; cat /proc/self/status",
        )
        .await;
        assert!(
            output.contains("unshare-exit=0")
                && output.lines().any(|l| l == "Seccomp:\t0")
                && output.lines().any(|l| l == "NoNewPrivs:\t0"),
            "{output}"
        );

        cri.remove_pod(&pod.id).await.unwrap();
        assert!(cri.pod_ids().await.unwrap().is_empty());

        // A wrong password, then an image the registry does not have: one clear error each.
        cri.remove_image(&workload).await.unwrap();
        let wrong = Auth {
            password: "wrong".into(),
            ..auth.clone()
        };
        let err = cri.pull(&workload, Some(&wrong)).await.unwrap_err();
        println!("wrong password: {err}");
        assert!(
            matches!(err, cri_client::Error::PullUnauthorized { .. }),
            "{err}"
        );
        // By the registry's own (loopback, so plain HTTP) name: through a mirror, containerd
        // 1.6 tries the upstream after the mirror's 404 and reports how that failed instead.
        let missing = format!("{host}/ballast/no-such-image:test");
        let err = cri.pull(&missing, None).await.unwrap_err();
        println!("unknown image: {err}");
        assert!(
            matches!(err, cri_client::Error::PullNotFound { .. }),
            "{err}"
        );
        // The runtime is still fine.
        cri.pull(&workload, Some(&auth)).await.unwrap();
        assert_eq!(cri.version().await.unwrap().runtime_name, "containerd");
    });

    // The registry saw the mirrored names with good credentials: the pause image's (the
    // node's settings) and the workload's (the request's), and named the refused user.
    let log = std::fs::read_to_string(registry.log_path()).unwrap();
    for uri in [
        "http.request.uri=/v2/ballast/pause/manifests/test",
        "http.request.uri=/v2/ballast/test-workload/manifests/test",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(registry::AUTHORIZED_LINE) && l.contains(uri)),
            "no authorized {uri} in the registry's log:\n{log}"
        );
    }
    assert!(
        log.contains(r#"error authenticating user \"kubelet\""#),
        "{log}"
    );
}
