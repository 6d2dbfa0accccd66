//! The `updog` binary: parses the command line, sets up logging and the proxy environment, and
//! runs the command from the library. See the library documentation for the commands.
#![forbid(unsafe_code)]

use clap::Parser;
use std::process::ExitCode;
use updog::{Args, Config, EXIT_ERROR};

fn main() -> ExitCode {
    let args = Args::parse();
    // Plain text for the update status, which keeps this stderr: colour only on a terminal.
    logging::Logging::directives(&args.log_level).init();
    // The HTTP client reads the proxy from the environment; set it while this is the only
    // thread. A configuration that does not load is reported by the command that needs it.
    if let Ok(config) = Config::load(&args.config) {
        for (key, value) in config.proxy_env() {
            std::env::set_var(key, value);
        }
    }
    // The TLS verifier reads the certificate authorities named by these variables. A Ballast
    // image has no /etc/ssl; it ships Mozilla's authorities from Debian's ca-certificates in
    // SYSTEM_CA_DIR, and thar-be-settings renders settings.pki into USER_CA_BUNDLE. Without
    // any authority the HTTP client cannot even be built, so plain-HTTP repositories would
    // fail too.
    for (key, path) in [
        ("SSL_CERT_DIR", updog::SYSTEM_CA_DIR),
        ("SSL_CERT_FILE", updog::USER_CA_BUNDLE),
    ] {
        if std::env::var_os(key).is_none() && std::path::Path::new(path).exists() {
            std::env::set_var(key, path);
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("updog: cannot start the async runtime: {e}");
            return exit(EXIT_ERROR);
        }
    };
    let mut stdout = std::io::stdout().lock();
    match runtime.block_on(updog::run(&args, &mut stdout)) {
        Ok(outcome) => {
            if outcome == updog::Outcome::NoUpdate {
                eprintln!("updog: no update to apply");
            }
            exit(outcome.exit_code())
        }
        Err(e) => {
            eprintln!("updog: {e}");
            exit(EXIT_ERROR)
        }
    }
}

/// The process exit status for one of updog's exit codes (all of them fit a byte).
fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
