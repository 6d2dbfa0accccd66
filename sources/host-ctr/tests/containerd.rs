//! host-ctr against the real parts, on the build host: a containerd of its own (Debian's,
//! with runc), a real registry (Debian's docker-registry, through the `registry` crate) that
//! serves a small image pushed by an OCI distribution client, reached through a plain-HTTP
//! mirror from the settings. The container must really run: its script writes into its
//! persistent directory, which the test reads on the host side; a stop removes it again.
//!
//! Needs root (containerd mounts overlayfs and runs runc); skipped with a message otherwise,
//! and when containerd, runc or docker-registry is missing (under CI that panics instead).

use base64::Engine as _;
use ctr_client::Containerd;
use host_ctr::{Outcome, Paths};
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};
use testserver::containerd::{self, TestContainerd};

/// The container's script: proves the mounts (user data, storage, API socket), then idles.
const SCRIPT: &str = "echo started; \
    cat /.ballast/host-containers/t/user-data > /.ballast/host-containers/t/seen; \
    [ -S /run/api.sock ] && echo yes > /.ballast/host-containers/t/api; \
    [ -d /.ballast/rootfs/proc ] && echo yes > /.ballast/host-containers/t/rootfs; \
    exec sleep 1000";

fn ready() -> bool {
    containerd::ready(&["docker-registry"])
}

/// The image's single layer, gzipped, and its diff ID.
fn layer() -> (Vec<u8>, String) {
    let tar = containerd::layer(containerd::TINY_IMAGE_FILES);
    let diff_id = host_ctr::pull::sha256_digest(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

/// Pushes the test image to the registry at `host` as `test/hello:1`.
async fn push_image(host: &str) {
    let (layer, diff_id) = layer();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/sh", "-c", SCRIPT], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let reference = oci_client::Reference::with_tag(host.into(), "test/hello".into(), "1".into());
    client
        .push(
            &reference,
            &[oci_client::client::ImageLayer::oci_v1_gzip(layer, None)],
            oci_client::client::Config::oci_v1(serde_json::to_vec(&config).unwrap(), None),
            &oci_client::secrets::RegistryAuth::Anonymous,
            None,
        )
        .await
        .unwrap();
}

fn write_config(path: &Path, registry: &str, source: &str, superpowered: bool) {
    let user_data = base64::engine::general_purpose::STANDARD.encode("hello t");
    std::fs::write(
        path,
        format!(
            "[containers.t]\nsource = \"{source}\"\nenabled = true\nsuperpowered = {superpowered}\n\
             user-data = \"{user_data}\"\n\n[mirrors.\"{registry}\"]\nendpoints = [\"http://{registry}\"]\n"
        ),
    )
    .unwrap();
}

async fn wait_for_file(path: &Path, what: &str, log: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never appeared at {}; containerd log:\n{}",
            path.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs container `t` while `checks` run; stops it when they are done. A run that ends
/// before (an error, an exit) fails the test with its outcome.
async fn run_and_check(
    paths: &Paths,
    checks: impl std::future::Future<Output = ()>,
) -> host_ctr::Result<Outcome> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = host_ctr::run::run_until("t", paths, async {
        let _ = stopped.await;
    });
    tokio::pin!(run);
    tokio::select! {
        outcome = &mut run => panic!("the run ended before the checks: {outcome:?}"),
        () = checks => {}
    }
    stop.send(()).unwrap();
    run.await
}

#[test]
fn pulls_runs_and_removes_a_host_container() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = registry::Registry::start(&dir.path().join("registry"), 0).unwrap();
    let host = registry.addr().to_string();
    let containerd = TestContainerd::start(&dir.path().join("containerd"));
    let api = dir.path().join("api.sock");
    let _api_listener = std::os::unix::net::UnixListener::bind(&api).unwrap();
    let paths = Paths {
        config: dir.path().join("host-ctr.toml"),
        socket: containerd.socket.clone(),
        storage: dir.path().join("storage"),
        fifos: dir.path().join("io"),
        namespace: "host-ctr-test".into(),
        api_socket: api,
        // The containerd started above has this test's bounding set, which may lack some of
        // the kernel's capabilities (a restricted build host).
        runtime_capabilities: Some(host_ctr::spec::own_bounding_set()),
    };
    // The source names the registry by an address only the mirror entry makes plain HTTP.
    write_config(&paths.config, &host, &format!("{host}/test/hello:1"), false);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(push_image(&host));
    let storage = paths.storage.join("t");
    let log = containerd.log.clone();

    // The run and the checks side by side; the checks end the run when they are done.
    let outcome = runtime.block_on(run_and_check(&paths, async {
        let seen = wait_for_file(&storage.join("seen"), "the user data copy", &log).await;
        assert_eq!(seen, "hello t");
        let api = wait_for_file(&storage.join("api"), "the API socket check", &log).await;
        assert_eq!(api.trim(), "yes");
    }));
    assert_eq!(outcome.unwrap(), Outcome::Stopped);
    // Container, task and snapshot are gone; the image stays for the next start.
    runtime.block_on(async {
        let client = Containerd::connect(&paths.socket, &paths.namespace)
            .await
            .unwrap();
        assert!(!client.has_snapshot("t").await.unwrap());
        assert!(client.delete_task("t").await.is_ok());
    });

    // Confined: no host root inside.
    assert!(!storage.join("rootfs").exists());

    // A second run, superpowered now, finds the image in place and sees the host's root.
    std::fs::remove_file(storage.join("seen")).unwrap();
    write_config(&paths.config, &host, &format!("{host}/test/hello:1"), true);
    let outcome = runtime.block_on(run_and_check(&paths, async {
        wait_for_file(&storage.join("seen"), "the second run's copy", &log).await;
        wait_for_file(&storage.join("rootfs"), "the host root check", &log).await;
    }));
    assert_eq!(outcome.unwrap(), Outcome::Stopped);
}

#[test]
fn an_unreachable_registry_is_one_clear_error() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let containerd = TestContainerd::start(&dir.path().join("containerd"));
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let registry = format!("127.0.0.1:{port}");
    let config_path = dir.path().join("host-ctr.toml");
    write_config(
        &config_path,
        &registry,
        &format!("{registry}/test/hello:1"),
        true,
    );
    let config = host_ctr::HostCtrConfig::load(&config_path).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let err = runtime
        .block_on(async {
            let client = Containerd::connect(&containerd.socket, "host-ctr-test")
                .await
                .unwrap();
            host_ctr::pull::pull(&client, "t", &format!("{registry}/test/hello:1"), &config).await
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("Cannot pull {registry}/test/hello:1")) && err.contains(&registry),
        "{err}"
    );
    println!("{err}");
}
