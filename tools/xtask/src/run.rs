//! `cargo xtask run`: builds the variant when its image is missing or older than the sources,
//! boots it in QEMU, waits until the API answers through the bridge, and says how to use it.
//!
//! With a terminal on stdin (and a variant with a shell) the serial console is attached: input
//! lines are typed on it. Without one (a script, CI) nothing reads stdin: the VM runs until
//! Ctrl-C or SIGTERM, or `--exit-when-up` stops it once it is up.

use anyhow::{Context, Result};
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, SystemTime};
use xtask::image::{self, BuildOptions};
use xtask::vm::{BootOptions, Node};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub build: BuildOptions,
    /// Always rebuild the image first.
    #[arg(long)]
    pub rebuild: bool,
    /// Stop the VM and exit once it is up (after printing how to reach it): a check that the
    /// image boots, for scripts and CI.
    #[arg(long)]
    pub exit_when_up: bool,
    /// Serve the development update repository (build/repo, made by `cargo xtask repo add`) to
    /// the VM and point the node's update URLs at it, so that the node can take a newer
    /// version built and added while it runs.
    #[arg(long)]
    pub repo: bool,
}

/// Newest modification time below the inputs of an image build.
fn newest_input() -> SystemTime {
    fn walk(dir: &Path, newest: &mut SystemTime) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                walk(&path, newest);
            } else if let Ok(m) = meta.modified() {
                *newest = (*newest).max(m);
            }
        }
    }
    let root = xtask::host::root();
    let mut newest = SystemTime::UNIX_EPOCH;
    for dir in ["sources", "packages", "variants", "os-image", "Cargo.lock"] {
        let path = root.join(dir);
        if path.is_file() {
            if let Ok(m) = path.metadata().and_then(|m| m.modified()) {
                newest = newest.max(m);
            }
        } else {
            walk(&path, &mut newest);
        }
    }
    newest
}

/// Shows the console from now on and types the user's input lines on it (the dev variant has a
/// root shell there), until Ctrl-C, SIGTERM or the VM stops. When not `interactive`, only waits.
fn attach_console(node: &mut Node, interactive: bool) -> Result<()> {
    use std::io::{BufRead, Write};
    if interactive {
        println!();
        println!("--- serial console (type commands; Ctrl-C stops the VM) ---");
    }
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    if interactive {
        // A plain thread: stdin reads block, and the runtime below is single-threaded.
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let (_, mut offset) = node.vm.console_since(usize::MAX);
    if interactive {
        // Wake the shell up so its prompt shows.
        node.vm.type_on_console("\n")?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = terminate.recv() => break,
                Some(line) = lines_rx.recv() => {
                    node.vm.type_on_console(&format!("{line}\n"))?;
                }
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    let (bytes, next) = node.vm.console_since(offset);
                    offset = next;
                    if interactive && !bytes.is_empty() {
                        let mut out = std::io::stdout().lock();
                        out.write_all(&bytes)?;
                        out.flush()?;
                    }
                    if !node.vm.is_running() {
                        eprintln!("xtask: the VM stopped");
                        break;
                    }
                }
            }
        }
        Ok::<(), anyhow::Error>(())
    })
}

pub fn run(args: &RunArgs) -> Result<()> {
    // Before anything slow: a tool that is missing must not stop us after a long build.
    xtask::host::ensure_for("run")?;
    let version = args
        .build
        .version
        .clone()
        .unwrap_or_else(image::default_version);
    let fresh = image::existing(&args.build.variant, &version).filter(|built| {
        let built_at = built
            .out_dir
            .join("manifest.json")
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        built_at > newest_input()
    });
    let built = match fresh {
        Some(built) if !args.rebuild => {
            eprintln!(
                "xtask: using the existing image {}",
                built.raw_image.display()
            );
            built
        }
        _ => image::build(&args.build)?,
    };
    let variant = buildsys::load_variant(&xtask::host::root(), &args.build.variant)?;
    let has_package = |name: &str| variant.packages.iter().any(|p| p.name == name);
    let has_bridge = has_package("apibridge");
    let has_shell = has_package("shell");
    let mut opts = BootOptions::new(&args.build.variant);
    opts.bridge = has_bridge;
    let served = if args.repo {
        let (served, net) = serve_repo()?;
        opts.network = Some(net);
        Some(served)
    } else {
        None
    };
    let step = xtask::progress::step(
        &format!(
            "booting {} in QEMU (software emulation, about a minute) until its API answers",
            built
                .raw_image
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
        ),
        true,
    );
    // Typing on the console needs someone at a terminal; a script's stdin is left alone.
    let interactive = has_shell && !args.exit_when_up && std::io::stdin().is_terminal();
    let mut node = Node::boot(&built, &opts)?;
    let console = node.vm.log_path().to_path_buf();
    if has_bridge {
        let ready = node.wait_for_api(Duration::from_secs(300))?;
        step.done();
        let apiclient = xtask::host::target_dir().join("release/apiclient");
        println!();
        println!(
            "Ballast {} {} is up: its API answered {:.1} s after QEMU started.",
            built.manifest.variant,
            built.manifest.version,
            ready.as_secs_f64()
        );
        println!();
        println!(
            "  API:      {} --socket-path {} get os",
            apiclient.display(),
            node.api_socket.display()
        );
        println!(
            "            {} --socket-path {} set motd=hello",
            apiclient.display(),
            node.api_socket.display()
        );
        if let Some(served) = &served {
            point_updates_at_repo(&apiclient, &node.api_socket)?;
            println!(
                "  Updates:  {} is served to the node (at http://{}/ on its side, port {} here)",
                served_dir().display(),
                image::GUEST_REPO_ADDR,
                served.port()
            );
            println!(
                "            publish a newer version: cargo xtask build --version {v}, then \
                 cargo xtask repo add --variant {variant} --version {v}",
                v = image::later_version(1),
                variant = args.build.variant,
            );
            println!(
                "            then: {} --socket-path {} update check (or set updates.policy=auto)",
                apiclient.display(),
                node.api_socket.display()
            );
        }
        if interactive {
            println!("  Console:  below; the whole log is {}", console.display());
        } else {
            println!("  Console:  tail -f {}", console.display());
        }
        println!(
            "  Stop:     Ctrl-C or SIGTERM (the image stays as built; this run used a qcow2 overlay)"
        );
    } else {
        node.vm
            .wait_for_console(xtask::vm::API_READY_MARKER, Duration::from_secs(300))?;
        step.done();
        println!();
        println!(
            "Ballast {} {} is up. This variant has no API bridge and no shell; its API answered \
             inside the guest (see the console).",
            built.manifest.variant, built.manifest.version
        );
        println!("  Console:  tail -f {}", console.display());
        println!("  Stop:     Ctrl-C");
    }
    if args.exit_when_up {
        eprintln!("xtask: --exit-when-up: stopping the VM");
        drop(node);
        return Ok(());
    }
    attach_console(&mut node, interactive)?;
    eprintln!("xtask: stopping the VM; console log {}", console.display());
    drop(node);
    Ok(())
}

/// The development update repository's directory.
fn served_dir() -> std::path::PathBuf {
    xtask::host::root().join(image::REPO_DIR)
}

/// Serves the development repository on host loopback, and the guest network that reaches it
/// at [`image::GUEST_REPO_ADDR`] port 80 (the guest keeps its other network access).
fn serve_repo() -> Result<(repo::serve::ServedDir, vmtest::UserNet)> {
    let dir = served_dir();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot make the repository directory {}", dir.display()))?;
    if !dir.join("metadata").exists() {
        eprintln!(
            "xtask: {} holds no repository yet; `cargo xtask repo add --variant ... --version ...` \
             makes one, and the node sees it at its next check",
            dir.display()
        );
    }
    let served = repo::serve::ServedDir::start(&dir)
        .with_context(|| format!("cannot serve {}", dir.display()))?;
    let net = vmtest::UserNet {
        guest_forwards: vec![vmtest::GuestForward::to_host_tcp(
            image::GUEST_REPO_ADDR,
            80,
            served.port(),
        )],
        ..Default::default()
    };
    Ok((served, net))
}

/// Points the node's update URLs at the served repository, through its API.
fn point_updates_at_repo(apiclient: &Path, socket: &Path) -> Result<()> {
    let addr = image::GUEST_REPO_ADDR;
    let output = std::process::Command::new(apiclient)
        .arg("--socket-path")
        .arg(socket)
        .arg("set")
        .arg(format!("updates.metadata-base-url=http://{addr}/metadata/"))
        .arg(format!("updates.targets-base-url=http://{addr}/targets/"))
        .output()
        .with_context(|| format!("cannot run {}", apiclient.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "setting the node's update URLs failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}
