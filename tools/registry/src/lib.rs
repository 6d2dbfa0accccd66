//! A real OCI registry on host loopback, and publishing image layouts to it.
//!
//! # Background
//!
//! Ballast nodes pull their container images (admin, control, pause, test workloads) from a
//! registry. Tests and `cargo xtask` use a real one rather than a stand-in: Debian's
//! `docker-registry` package is the CNCF distribution registry (2.8). This crate runs it on
//! `127.0.0.1:<port>` with its own configuration file and storage under a directory of ours
//! (never the package's `/etc/docker/registry` or its system service), waits until `GET /v2/`
//! answers, pushes OCI image layouts with `skopeo copy --preserve-digests` (so the registry
//! serves exactly the manifest the build wrote), and reads manifests back over the registry's
//! HTTP API. A guest VM will reach it through QEMU user networking's forwarding of the host's
//! loopback.
//!
//! # Usage
//!
//! ```no_run
//! use std::path::Path;
//! # fn main() -> registry::Result<()> {
//! let registry = registry::Registry::start(Path::new("build/registry"), 0)?; // 0: any free port
//! registry.push(Path::new("build/images/oci/pause"), "ballast/pause", "0.1.0")?;
//! let manifest = registry.manifest("ballast/pause", "0.1.0")?;
//! println!("{} serves {}", registry.addr(), manifest.digest);
//! // Dropping `registry` stops it; `registry.detach()` leaves it running for
//! // `registry::stop_detached` (what `cargo xtask registry start|stop` do).
//! # Ok(()) }
//! ```
//!
//! With [`Registry::start_with_auth`] it asks for a user name and password (HTTP basic auth
//! against an htpasswd file it writes with a bcrypt hash), so a test can show that a client
//! sent the credentials it was given: the registry logs `authorized request` with the URI of
//! each request that carried them, and names the user of each one it refused (401).
//!
//! # Current limitations
//!
//! - Plain HTTP on loopback, one user at most: a development and test registry only.
//! - When asked for any free port, the port is picked by binding and releasing it just before
//!   the registry starts; another program could take it in between (the start then fails and
//!   says so, with the registry's log).
//! - One detached registry per state directory.
#![forbid(unsafe_code)]

use sha2::{Digest as _, Sha256};
use snafu::{ensure, ResultExt, Snafu};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tracing::{debug, info};

/// The registry program (Debian package `docker-registry`).
pub const REGISTRY_PROGRAM: &str = "docker-registry";
/// The program that pushes image layouts (Debian package `skopeo`).
pub const PUSH_PROGRAM: &str = "skopeo";
/// The port `cargo xtask registry start` uses unless told otherwise (not the package's own
/// 5000, where its system service may listen).
pub const DEFAULT_PORT: u16 = 5080;
/// How long the registry may take to answer `GET /v2/` after it starts.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// What the registry's log says of a request whose credentials it accepted (followed by the
/// request's fields, `http.request.uri=...` among them).
pub const AUTHORIZED_LINE: &str = "msg=\"authorized request\"";
/// The media type of the manifests our image layouts hold.
pub const OCI_MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong running the registry or pushing to it.
#[derive(Debug, Snafu)]
pub enum Error {
    #[snafu(display("Cannot {action} {}: {source}", path.display()))]
    Io {
        action: String,
        path: PathBuf,
        source: std::io::Error,
    },

    #[snafu(display(
        "Cannot start {program}: {source}. Install it with `apt-get install -y {package}`"
    ))]
    Spawn {
        program: String,
        package: String,
        source: std::io::Error,
    },

    #[snafu(display(
        "The registry on {addr} did not answer GET /v2/ within {seconds} s{exited}; its log ({}):\n{log}",
        log_path.display()
    ))]
    NotReady {
        addr: SocketAddr,
        seconds: u64,
        exited: String,
        log_path: PathBuf,
        log: String,
    },

    #[snafu(display("Cannot find a free port on 127.0.0.1: {source}"))]
    NoPort { source: std::io::Error },

    #[snafu(display("`{command}` failed ({status}):\n{stderr}"))]
    PushFailed {
        command: String,
        status: String,
        stderr: String,
    },

    #[snafu(display("GET {url} failed: {message}"))]
    Http { url: String, message: String },

    #[snafu(display(
        "{} does not describe a running registry ({message}); start one with `cargo xtask registry start`",
        path.display()
    ))]
    NotRunning { path: PathBuf, message: String },

    #[snafu(display("Cannot signal the registry (pid {pid}): {source}"))]
    Signal { pid: i32, source: nix::Error },

    #[snafu(display("Cannot hash the registry password: {message}"))]
    Hash { message: String },

    #[snafu(display(
        "A registry user name may not be empty or hold ':' or a line break; got '{username}'"
    ))]
    BadUser { username: String },
}

/// A registry process on loopback. Dropping it stops the process unless it was detached.
#[derive(Debug)]
pub struct Registry {
    child: Option<Child>,
    addr: SocketAddr,
    dir: PathBuf,
    credentials: Option<Credentials>,
}

/// The one user a registry started with [`Registry::start_with_auth`] accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password, in the clear (the registry's htpasswd file holds its bcrypt hash).
    pub password: String,
}

/// A manifest as the registry serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteManifest {
    /// The registry's `Docker-Content-Digest` header.
    pub digest: String,
    /// `sha256:` of the body as received.
    pub body_digest: String,
    /// The `Content-Type` header.
    pub media_type: String,
    /// The manifest document.
    pub body: Vec<u8>,
}

/// The registry's configuration: loopback only, storage under `storage`, no access log (each
/// request's info line says enough), basic auth against `htpasswd` when given.
fn config_yaml(addr: SocketAddr, storage: &Path, htpasswd: Option<&Path>) -> String {
    let auth = htpasswd
        .map(|path| {
            format!(
                "auth:\n  htpasswd:\n    realm: ballast-test\n    path: {}\n",
                path.display()
            )
        })
        .unwrap_or_default();
    format!(
        "version: 0.1\n\
         log:\n  level: info\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n{auth}",
        storage.display()
    )
}

/// One htpasswd line for `credentials`, bcrypt-hashed (the only hash the registry accepts).
fn htpasswd_line(credentials: &Credentials) -> Result<String> {
    // The lowest cost bcrypt allows: the file guards a test registry on loopback, and every
    // request the registry checks pays the cost again.
    let hash = bcrypt::hash_with_result(&credentials.password, 4)
        .map_err(|e| Error::Hash {
            message: e.to_string(),
        })?
        .format_for_version(bcrypt::Version::TwoA);
    Ok(format!("{}:{hash}\n", credentials.username))
}

/// The state file a detached registry leaves in its directory: `pid address`.
fn state_path(dir: &Path) -> PathBuf {
    dir.join("registry.state")
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("registry.log")
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context(NoPortSnafu)?;
    Ok(listener.local_addr().context(NoPortSnafu)?.port())
}

fn http_client() -> Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Error::Http {
            url: "(client)".into(),
            message: e.to_string(),
        })
}

fn io_context(action: &str, path: &Path) -> IoSnafu<String, PathBuf> {
    IoSnafu {
        action: action.to_string(),
        path: path.to_path_buf(),
    }
}

impl Registry {
    /// Starts the registry on `127.0.0.1:port` (`0`: a free port) with its configuration,
    /// storage and log in `dir`, and waits until it answers `GET /v2/`.
    pub fn start(dir: &Path, port: u16) -> Result<Registry> {
        Self::start_inner(dir, port, None)
    }

    /// [`Registry::start`], with every request but `GET /v2/` refused (401) unless it carries
    /// `credentials` by HTTP basic auth. [`Registry::push`] and [`Registry::manifest`] send them.
    pub fn start_with_auth(dir: &Path, port: u16, credentials: &Credentials) -> Result<Registry> {
        Self::start_inner(dir, port, Some(credentials.clone()))
    }

    fn start_inner(dir: &Path, port: u16, credentials: Option<Credentials>) -> Result<Registry> {
        let port = if port == 0 { free_port()? } else { port };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage).context(io_context("create directory", &storage))?;
        let htpasswd = match &credentials {
            Some(credentials) => {
                ensure!(
                    !credentials.username.is_empty()
                        && !credentials.username.contains([':', '\n', '\r']),
                    BadUserSnafu {
                        username: &credentials.username
                    }
                );
                let path = dir.join("htpasswd");
                std::fs::write(&path, htpasswd_line(credentials)?)
                    .context(io_context("write", &path))?;
                Some(path)
            }
            None => None,
        };
        let config = dir.join("config.yml");
        std::fs::write(&config, config_yaml(addr, &storage, htpasswd.as_deref()))
            .context(io_context("write", &config))?;
        let log = log_path(dir);
        let log_file = std::fs::File::create(&log).context(io_context("create", &log))?;
        let log_err = log_file.try_clone().context(io_context("open", &log))?;
        info!(
            "starting {REGISTRY_PROGRAM} on {addr} (storage {})",
            storage.display()
        );
        let mut command = Command::new("docker-registry");
        command
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        // Its own process group: a Ctrl-C meant for a later foreground command does not
        // reach a detached registry.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().context(SpawnSnafu {
            program: REGISTRY_PROGRAM,
            package: REGISTRY_PROGRAM,
        })?;
        let mut registry = Registry {
            child: Some(child),
            addr,
            dir: dir.to_path_buf(),
            credentials,
        };
        registry.wait_ready()?;
        Ok(registry)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        let client = http_client()?;
        let url = format!("http://{}/v2/", self.addr);
        loop {
            let exited = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(format!(" (it exited: {status})")),
                _ => None,
            };
            if exited.is_none() {
                if let Ok(response) = client.get(&url).send() {
                    // With auth on, the registry answers 401 without credentials: it is up.
                    if response.status().is_success()
                        || (self.credentials.is_some()
                            && response.status() == reqwest::StatusCode::UNAUTHORIZED)
                    {
                        debug!(
                            "registry on {} answered after {:?}",
                            self.addr,
                            started.elapsed()
                        );
                        return Ok(());
                    }
                }
            }
            if exited.is_some() || started.elapsed() > START_TIMEOUT {
                let log_path = log_path(&self.dir);
                return NotReadySnafu {
                    addr: self.addr,
                    seconds: START_TIMEOUT.as_secs(),
                    exited: exited.unwrap_or_default(),
                    log: std::fs::read_to_string(&log_path).unwrap_or_default(),
                    log_path,
                }
                .fail();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Pushes the OCI image layout `layout` (the manifest tagged `tag` in its index.json) as
    /// `name:tag`, keeping its digests.
    pub fn push(&self, layout: &Path, name: &str, tag: &str) -> Result<()> {
        push_as(
            self.addr,
            &self.dir,
            layout,
            name,
            tag,
            self.credentials.as_ref(),
        )
    }

    /// Fetches the manifest of `name:reference` (a tag or a digest) over the registry API.
    pub fn manifest(&self, name: &str, reference: &str) -> Result<RemoteManifest> {
        manifest_as(self.addr, name, reference, self.credentials.as_ref())
    }

    /// The user it accepts, when started with [`Registry::start_with_auth`].
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// Its log: with auth on, a line per request that carried good credentials
    /// ([`AUTHORIZED_LINE`]) and one naming the user of each that carried bad ones.
    pub fn log_path(&self) -> PathBuf {
        log_path(&self.dir)
    }

    /// Leaves the registry running after this value is gone, recording its process id and
    /// address in the directory for [`running`] and [`stop_detached`].
    // The registry is meant to outlive this process: once we exit, init adopts and reaps it.
    // A caller that stays alive after stopping it (a test) reaps nothing and keeps a zombie
    // until it exits.
    #[allow(clippy::zombie_processes)]
    pub fn detach(mut self) -> Result<u32> {
        let child = self
            .child
            .take()
            .expect("a started registry has its process");
        let pid = child.id();
        let path = state_path(&self.dir);
        std::fs::write(&path, format!("{pid} {}\n", self.addr))
            .context(io_context("write", &path))?;
        Ok(pid)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Pushes `layout` to the registry at `addr` as `name:tag` with skopeo (plain HTTP, digests
/// kept). `work_dir` holds the signature policy skopeo is given (accept anything: the images
/// are our own, on loopback).
pub fn push(addr: SocketAddr, work_dir: &Path, layout: &Path, name: &str, tag: &str) -> Result<()> {
    push_as(addr, work_dir, layout, name, tag, None)
}

/// [`push`] as the user `credentials` (for a registry started with
/// [`Registry::start_with_auth`]).
pub fn push_as(
    addr: SocketAddr,
    work_dir: &Path,
    layout: &Path,
    name: &str,
    tag: &str,
    credentials: Option<&Credentials>,
) -> Result<()> {
    std::fs::create_dir_all(work_dir).context(io_context("create directory", work_dir))?;
    let policy = work_dir.join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .context(io_context("write", &policy))?;
    let source = format!("oci:{}:{tag}", layout.display());
    let dest = format!("docker://{addr}/{name}:{tag}");
    info!("pushing {source} to {dest}");
    let mut command = Command::new("skopeo");
    command.arg("--policy").arg(&policy).args([
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--preserve-digests",
    ]);
    if let Some(credentials) = credentials {
        command.arg(format!(
            "--dest-creds={}:{}",
            credentials.username, credentials.password
        ));
    }
    let output = command
        .arg(&source)
        .arg(&dest)
        .stdin(Stdio::null())
        .output()
        .context(SpawnSnafu {
            program: PUSH_PROGRAM,
            package: PUSH_PROGRAM,
        })?;
    ensure!(
        output.status.success(),
        PushFailedSnafu {
            command: format!("skopeo copy {source} {dest}"),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    );
    Ok(())
}

/// Fetches the manifest of `name:reference` from the registry at `addr`.
pub fn manifest(addr: SocketAddr, name: &str, reference: &str) -> Result<RemoteManifest> {
    manifest_as(addr, name, reference, None)
}

/// [`manifest`] as the user `credentials`.
pub fn manifest_as(
    addr: SocketAddr,
    name: &str,
    reference: &str,
    credentials: Option<&Credentials>,
) -> Result<RemoteManifest> {
    let url = format!("http://{addr}/v2/{name}/manifests/{reference}");
    let http = |message: String| Error::Http {
        url: url.clone(),
        message,
    };
    let mut request = http_client()?
        .get(&url)
        .header(reqwest::header::ACCEPT, OCI_MANIFEST_TYPE);
    if let Some(credentials) = credentials {
        request = request.basic_auth(&credentials.username, Some(&credentials.password));
    }
    let response = request.send().map_err(|e| http(e.to_string()))?;
    ensure!(
        response.status().is_success(),
        HttpSnafu {
            url: &url,
            message: format!("status {}", response.status()),
        }
    );
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let digest = header("Docker-Content-Digest");
    let media_type = header("Content-Type");
    let body = response.bytes().map_err(|e| http(e.to_string()))?.to_vec();
    Ok(RemoteManifest {
        digest,
        body_digest: format!("sha256:{}", hex::encode(Sha256::digest(&body))),
        media_type,
        body,
    })
}

/// The address of the registry a detached start left running in `dir`, if it still runs.
pub fn running(dir: &Path) -> Result<(i32, SocketAddr)> {
    let path = state_path(dir);
    let not_running = |message: String| Error::NotRunning {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| not_running(e.to_string()))?;
    let mut words = text.split_whitespace();
    let (Some(pid), Some(addr)) = (words.next(), words.next()) else {
        return Err(not_running("expected `pid address`".into()));
    };
    let pid: i32 = pid
        .parse()
        .map_err(|_| not_running(format!("bad pid {pid}")))?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| not_running(format!("bad address {addr}")))?;
    ensure!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok(),
        NotRunningSnafu {
            path: &path,
            message: format!("process {pid} is gone"),
        }
    );
    Ok((pid, addr))
}

/// Stops the registry a detached start left running in `dir` (SIGTERM); `false` when none
/// was running.
pub fn stop_detached(dir: &Path) -> Result<bool> {
    let Ok((pid, addr)) = running(dir) else {
        let _ = std::fs::remove_file(state_path(dir));
        return Ok(false);
    };
    info!("stopping the registry on {addr} (pid {pid})");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .context(SignalSnafu { pid })?;
    let path = state_path(dir);
    std::fs::remove_file(&path).context(io_context("remove", &path))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_listens_on_loopback_only() {
        let yaml = config_yaml(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 5080)),
            Path::new("/x/storage"),
            None,
        );
        assert!(yaml.contains("addr: 127.0.0.1:5080\n"), "{yaml}");
        assert!(yaml.contains("rootdirectory: /x/storage\n"), "{yaml}");
        assert!(!yaml.contains("auth:"), "{yaml}");
        let yaml = config_yaml(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 5080)),
            Path::new("/x/storage"),
            Some(Path::new("/x/htpasswd")),
        );
        assert!(
            yaml.ends_with("auth:\n  htpasswd:\n    realm: ballast-test\n    path: /x/htpasswd\n"),
            "{yaml}"
        );
    }

    #[test]
    fn the_htpasswd_line_holds_a_bcrypt_hash_of_the_password() {
        let credentials = Credentials {
            username: "bob".into(),
            password: "s3cret".into(),
        };
        let line = htpasswd_line(&credentials).unwrap();
        let hash = line.trim_end().strip_prefix("bob:").unwrap();
        assert!(hash.starts_with("$2a$04$"), "{hash}");
        assert!(bcrypt::verify("s3cret", hash).unwrap());
        assert!(!bcrypt::verify("wrong", hash).unwrap());
    }

    #[test]
    fn a_missing_state_file_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let error = running(dir.path()).unwrap_err().to_string();
        assert!(error.contains("cargo xtask registry start"), "{error}");
        assert!(!stop_detached(dir.path()).unwrap());
    }
}
