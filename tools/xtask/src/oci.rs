//! `cargo xtask images build|publish` and `cargo xtask registry start|stop|status`: thin
//! front ends over `xtask::containers` and the `registry` crate.

use anyhow::Result;
use std::net::SocketAddr;
use xtask::containers;
use xtask::host;

#[derive(Debug, clap::Subcommand)]
pub enum ImagesCommand {
    /// Build OCI image layouts into build/images/oci/<name>/ and print their digests.
    Build {
        /// Images to build (folders under packages/container-images/); all when none is given.
        names: Vec<String>,
    },
    /// Push image layouts (built first when missing) to a registry as ballast/<name>:<version>.
    Publish {
        /// Images to publish; all when none is given.
        names: Vec<String>,
        /// The registry (host:port); default: the one `cargo xtask registry start` runs.
        #[arg(long)]
        registry: Option<SocketAddr>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum RegistryCommand {
    /// Start Debian's docker-registry on 127.0.0.1 (state, storage and log in build/registry)
    /// and leave it running.
    Start {
        #[arg(long, default_value_t = registry::DEFAULT_PORT)]
        port: u16,
    },
    /// Stop the registry `start` left running.
    Stop,
    /// Say whether it runs, and where.
    Status,
}

pub fn images(command: &ImagesCommand) -> Result<()> {
    match command {
        ImagesCommand::Build { names } => {
            for image in containers::build(names)? {
                println!(
                    "{:<14} {}  layer {:.1} MiB  {}",
                    image.dir.file_name().unwrap_or_default().to_string_lossy(),
                    image.manifest_digest,
                    image.layer_size as f64 / 1048576.0,
                    image.dir.display()
                );
            }
            Ok(())
        }
        ImagesCommand::Publish { names, registry } => {
            let addr = match registry {
                Some(addr) => *addr,
                None => containers::running_registry()?,
            };
            for (reference, digest) in containers::publish(names, addr)? {
                println!("{reference}  {digest}");
            }
            Ok(())
        }
    }
}

pub fn registry(command: &RegistryCommand) -> Result<()> {
    let dir = host::root().join(containers::REGISTRY_DIR);
    match command {
        RegistryCommand::Start { port } => {
            host::ensure_for("registry")?;
            if let Ok((pid, addr)) = registry::running(&dir) {
                println!("a registry already runs on {addr} (pid {pid})");
                return Ok(());
            }
            let started = registry::Registry::start(&dir, *port)?;
            let addr = started.addr();
            let pid = started.detach()?;
            println!(
                "registry on {addr} (pid {pid}); storage and log in {}",
                dir.display()
            );
            println!("  publish: cargo xtask images publish");
            println!("  stop:    cargo xtask registry stop");
            Ok(())
        }
        RegistryCommand::Stop => {
            if registry::stop_detached(&dir)? {
                println!("registry stopped");
            } else {
                println!("no registry was running");
            }
            Ok(())
        }
        RegistryCommand::Status => {
            match registry::running(&dir) {
                Ok((pid, addr)) => println!("registry on {addr} (pid {pid})"),
                Err(e) => println!("not running: {e}"),
            }
            Ok(())
        }
    }
}
