//! A fake instance-metadata service that insists on the IMDSv2 token flow, and helpers to run
//! early-boot-config against the real API server.

#![allow(dead_code)]

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use axum::Router;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use testserver::TestServer;

pub const TOKEN: &str = "fake-session-token-1234";

/// What the fake serves and what it saw.
#[derive(Debug, Default)]
pub struct FakeState {
    /// User data served; `None` answers 404.
    pub user_data: Option<Vec<u8>>,
    /// Answer 500 to this many user-data requests first (`usize::MAX`: always).
    pub failures_left: usize,
    pub token_requests: usize,
    /// User-data requests that carried the right token.
    pub authorized_gets: usize,
    /// User-data requests refused for a missing or wrong token.
    pub refused_gets: usize,
}

pub struct FakeImds {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<FakeState>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeImds {
    pub fn start(user_data: Option<&[u8]>) -> FakeImds {
        let state = Arc::new(Mutex::new(FakeState {
            user_data: user_data.map(<[u8]>::to_vec),
            ..FakeState::default()
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/latest/api/token", put(token))
            .route("/latest/user-data", get(user_data_route))
            .with_state(state.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        FakeImds {
            addr,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }
}

impl Drop for FakeImds {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn token(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    let ttl = headers
        .get("x-aws-ec2-metadata-token-ttl-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    match ttl {
        Some(1..=21600) => {
            state.lock().unwrap().token_requests += 1;
            (StatusCode::OK, TOKEN.to_string())
        }
        _ => (
            StatusCode::BAD_REQUEST,
            "missing or bad TTL header".to_string(),
        ),
    }
}

async fn user_data_route(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
) -> (StatusCode, Vec<u8>) {
    let mut state = state.lock().unwrap();
    let token = headers
        .get("x-aws-ec2-metadata-token")
        .and_then(|v| v.to_str().ok());
    if token != Some(TOKEN) {
        state.refused_gets += 1;
        return (StatusCode::UNAUTHORIZED, Vec::new());
    }
    state.authorized_gets += 1;
    if state.failures_left > 0 {
        if state.failures_left != usize::MAX {
            state.failures_left -= 1;
        }
        return (StatusCode::INTERNAL_SERVER_ERROR, Vec::new());
    }
    match &state.user_data {
        Some(data) => (StatusCode::OK, data.clone()),
        None => (StatusCode::NOT_FOUND, Vec::new()),
    }
}

/// A port on which nothing listens: bound, then released.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A server over the shared defaults left pending in the launch transaction, as at boot.
pub fn boot_server() -> TestServer {
    TestServer::start_with(&models::shared_defaults(), false, None)
}

/// Inputs for one early-boot-config run.
pub struct Inputs<'a> {
    pub local: Option<&'a str>,
    pub cmdline: &'a str,
    pub imds_url: &'a str,
    pub extra: &'a [&'a str],
}

impl Default for Inputs<'_> {
    fn default() -> Self {
        Inputs {
            local: None,
            cmdline: "console=ttyS0 quiet",
            imds_url: "off",
            extra: &[],
        }
    }
}

/// Runs the real binary with the inputs written into `dir`.
pub fn early_boot_config(socket: &Path, dir: &Path, inputs: &Inputs) -> Output {
    let local = dir.join("user-data.toml");
    let _ = std::fs::remove_file(&local);
    if let Some(text) = inputs.local {
        std::fs::write(&local, text).unwrap();
    }
    let cmdline = dir.join("cmdline");
    std::fs::write(&cmdline, format!("{}\n", inputs.cmdline)).unwrap();
    Command::new(testserver::workspace_bin("early-boot-config"))
        .arg("--socket-path")
        .arg(socket)
        .arg("--local-file")
        .arg(&local)
        .arg("--cmdline")
        .arg(&cmdline)
        .arg("--imds-url")
        .arg(inputs.imds_url)
        .args(inputs.extra)
        .output()
        .expect("run early-boot-config")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The final summary line.
pub fn summary(output: &Output) -> String {
    stderr(output)
        .lines()
        .rfind(|l| l.starts_with("early-boot-config: "))
        .unwrap_or_else(|| panic!("no summary line in {}", stderr(output)))
        .to_string()
}

pub fn b64(text: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

pub fn launch_tx(server: &TestServer) -> serde_json::Value {
    server.json("GET", &format!("/tx?tx={}", constants::LAUNCH_TX), None)
}
