//! Manual front end to `buildsys` until `cargo xtask` wires it in.
//!
//! ```text
//! cargo run -p buildsys --example buildsys -- lock
//! cargo run -p buildsys --example buildsys -- variants
//! cargo build --release -p apiserver -p apiclient -p storewolf -p apibridge
//! cargo run -p buildsys --example buildsys -- stage dev --out build/dev
//! ```
//! Paths are relative to the repository root, which is found from this crate's location.
//! `RUST_LOG=buildsys=debug` shows every kept library and unit link.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "usage: buildsys lock | variants | stage VARIANT [--out DIR] [--version V] [--build-id ID] [--bin-dir DIR]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "buildsys=info,debian=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap_or(root);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("lock") => buildsys::update_lock(&root).map(|diff| println!("{diff}")),
        Some("variants") => buildsys::list_variants(&root).map(|names| {
            for name in names {
                match buildsys::load_variant(&root, &name) {
                    Ok(v) => println!("{name}: {}", v.description),
                    Err(e) => println!("{name}: BROKEN: {e}"),
                }
            }
        }),
        Some("stage") if args.len() >= 2 => {
            let mut out = root.join("build").join(&args[1]);
            let mut version = "0.1.0".to_string();
            let mut build_id = "dev".to_string();
            let mut bin_dir = root.join("target/release");
            let mut rest = args[2..].iter();
            while let Some(flag) = rest.next() {
                let Some(value) = rest.next() else {
                    return usage();
                };
                match flag.as_str() {
                    "--out" => out = PathBuf::from(value),
                    "--version" => version = value.clone(),
                    "--build-id" => build_id = value.clone(),
                    "--bin-dir" => bin_dir = PathBuf::from(value),
                    _ => return usage(),
                }
            }
            buildsys::load_variant(&root, &args[1]).and_then(|variant| {
                let staged = buildsys::stage_root(
                    &root,
                    &variant,
                    &root.join(buildsys::CACHE_DIR),
                    &bin_dir,
                    &version,
                    &build_id,
                    &out,
                )?;
                println!("root tree:  {}", staged.root_dir.display());
                println!(
                    "            {} files, {:.1} MiB",
                    staged.files,
                    staged.bytes as f64 / 1048576.0
                );
                println!(
                    "kernel:     {} ({})",
                    staged.kernel.display(),
                    staged.kernel_version
                );
                println!("initramfs:  {}", staged.initramfs_modules.join(" "));
                println!("cmdline:    {}", staged.cmdline.join(" "));
                Ok(())
            })
        }
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
