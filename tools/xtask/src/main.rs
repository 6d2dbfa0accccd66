//! `cargo xtask`: the build host's entry point. Every Makefile.toml task calls one of these
//! subcommands, so `cargo make X` and `cargo xtask X` do the same thing.
#![forbid(unsafe_code)]

mod bench;
mod bench_api;
mod bench_ops;
mod bench_settings;
mod bench_update;
mod bench_updater;
mod oci;
mod repo;
mod run;
mod test;
mod unit;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use xtask::image::{self, BuildOptions};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Build, run, test and measure Ballast")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every check and test: formatting, clippy, unit, integration and VM end-to-end tests.
    Test(test::TestArgs),
    /// Build a variant's disk images (raw, qcow2, vmdk), update images and manifest.
    Build(BuildOptions),
    /// Build (when needed) and boot a variant in QEMU; prints how to reach its API.
    Run(run::RunArgs),
    /// Container images (admin, control, pause, test-workload) as OCI layouts.
    Images {
        #[command(subcommand)]
        what: oci::ImagesCommand,
    },
    /// A registry on host loopback for the container images.
    Registry {
        #[command(subcommand)]
        what: oci::RegistryCommand,
    },
    /// Re-resolve packages/debian.lock against the Debian archive (prints what changed).
    Lock,
    /// The signed TUF update repository: keys, add images, refresh, validate.
    Repo(Box<repo::RepoArgs>),
    /// Print performance figures.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// API server: reads, PATCH, commits and memory, each against a same-run reference.
    Api(bench_api::BenchApiArgs),
    /// Boot to API-ready of the dev image against a bare kernel reaching init.
    Boot {
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Our dm-verity tree build against `veritysetup format` on the same file.
    Verity {
        #[arg(long, default_value_t = 1024)]
        size_mib: u64,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Root image size and image build time (clean, and after changing one default).
    Image,
    /// Time from `apiclient set` to the affected service restarted (host; `--vm` adds the VM).
    Settings(bench_settings::BenchSettingsArgs),
    /// updog update-image (fetch, verify, decompress, write) against curl | tee | sha256sum.
    Update(bench_update::BenchUpdateArgs),
    /// Publish-to-running under policy `auto` against an update by hand; the daemon's idle cost.
    Updater(bench_updater::BenchUpdaterArgs),
    /// Operating without a shell: `apiclient logs`, a try-mode revert, a support bundle.
    Ops(bench_ops::BenchOpsArgs),
}

fn lock() -> anyhow::Result<()> {
    xtask::host::ensure_for("lock")?;
    let diff = buildsys::update_lock(&xtask::host::root())?;
    println!("{diff}");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    xtask::progress::init();
    let result = match cli.command {
        Command::Test(args) => test::run(&args),
        Command::Build(opts) => image::build(&opts).map(|built| {
            println!("{}", built.out_dir.join("manifest.json").display());
        }),
        Command::Run(args) => run::run(&args),
        Command::Lock => lock(),
        Command::Images { what } => oci::images(&what),
        Command::Registry { what } => oci::registry(&what),
        Command::Repo(args) => repo::run(*args),
        Command::Bench { what } => match what {
            Bench::Api(args) => bench_api::run(&args),
            Bench::Boot { rounds } => bench::boot(rounds),
            Bench::Verity { size_mib, rounds } => bench::verity(size_mib, rounds),
            Bench::Image => bench::image(),
            Bench::Settings(args) => bench_settings::run(&args),
            Bench::Update(args) => bench_update::run(&args),
            Bench::Updater(args) => bench_updater::run(&args),
            Bench::Ops(args) => bench_ops::run(&args),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
