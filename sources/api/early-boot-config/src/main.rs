//! `early-boot-config`: applies user data at boot; see the library documentation.
#![forbid(unsafe_code)]

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Reads user data from the local file, the kernel command line and the instance-metadata
/// service, and stores the settings in the boot transaction.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The API server's socket.
    #[arg(long, default_value = constants::API_SOCKET)]
    socket_path: PathBuf,
    /// The pending transaction that receives the settings.
    #[arg(long, default_value = constants::LAUNCH_TX)]
    tx: String,
    /// User data on the data partition.
    #[arg(long, default_value = early_boot_config::DEFAULT_LOCAL_FILE)]
    local_file: PathBuf,
    /// File holding the kernel command line.
    #[arg(long, default_value = early_boot_config::DEFAULT_CMDLINE)]
    cmdline: PathBuf,
    /// Instance-metadata base URL (default http://169.254.169.254), or `off`. `ballast.imds=`
    /// on the kernel command line wins over this.
    #[arg(long)]
    imds_url: Option<String>,
    /// Seconds allowed for the metadata service, retries included.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    imds_timeout_seconds: u64,
    /// trace, debug, info, warn or error.
    #[arg(long, default_value = "info")]
    log_level: logging::LevelFilter,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    // The journal stamps each line itself.
    logging::Logging::new(args.log_level).without_time().init();
    let config = early_boot_config::Config {
        socket_path: args.socket_path,
        tx: args.tx,
        local_file: args.local_file,
        cmdline: args.cmdline,
        imds_url: args.imds_url,
        imds_deadline: Duration::from_secs(args.imds_timeout_seconds),
    };
    let report = early_boot_config::run(&config).await;
    // The summary goes to stderr with the logs, which the unit sends to the console.
    eprintln!("{report}");
    if report.api_failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
