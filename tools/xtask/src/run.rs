//! `cargo xtask run`: builds the variant when its image is missing or older than the sources,
//! boots it in QEMU, waits until the API answers through the bridge, and says how to use it.

use anyhow::Result;
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

pub fn run(args: &RunArgs) -> Result<()> {
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
    let has_bridge = buildsys::load_variant(&xtask::host::root(), &args.build.variant)?
        .packages
        .iter()
        .any(|p| p.name == "apibridge");
    let mut opts = BootOptions::new(&args.build.variant);
    opts.bridge = has_bridge;
    eprintln!(
        "xtask: booting {} in QEMU (software emulation)...",
        built.raw_image.display()
    );
    let mut node = Node::boot(&built, &opts)?;
    let console = node.vm.log_path().to_path_buf();
    if has_bridge {
        let ready = node.wait_for_api(Duration::from_secs(300))?;
        let apiclient = xtask::host::root().join("target/release/apiclient");
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
        println!("  Console:  tail -f {}", console.display());
        println!("  Stop:     Ctrl-C (the image stays as built; this run used a qcow2 overlay)");
    } else {
        node.vm
            .wait_for_console(xtask::vm::API_READY_MARKER, Duration::from_secs(300))?;
        println!();
        println!(
            "Ballast {} {} is up. This variant has no API bridge and no shell; its API answered \
             inside the guest (see the console).",
            built.manifest.variant, built.manifest.version
        );
        println!("  Console:  tail -f {}", console.display());
        println!("  Stop:     Ctrl-C");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if !node.vm.is_running() {
                        eprintln!("xtask: the VM stopped; console log {}", console.display());
                        break;
                    }
                }
            }
        }
    });
    drop(node);
    Ok(())
}
