//! `apiload`: parses flags and runs one measurement of [`apiload`], printing it as JSON.
#![forbid(unsafe_code)]

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Load generator and reference server for `cargo xtask bench api`.
#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Answer every request on the socket with a fixed body (the reference server).
    ServeStatic {
        #[arg(long)]
        socket: PathBuf,
    },
    /// Send the same request on N keep-alive connections for T seconds.
    Requests {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long, default_value = "GET")]
        method: String,
        #[arg(long)]
        path: String,
        #[arg(long, default_value = "")]
        body: String,
        #[arg(long, default_value_t = 1)]
        clients: usize,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// PATCH + commit_and_apply rounds, each client in its own transaction.
    Commits {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long, default_value_t = 1)]
        clients: usize,
        #[arg(long, default_value_t = 200)]
        commits: usize,
    },
    /// Durable small-file writes (write, fsync, rename, fsync the directory) from N threads.
    DurableWrites {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long, default_value_t = 200)]
        writes: usize,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Command::ServeStatic { socket } = &cli.command {
        // The reference runs on tokio's default runtime, one worker per core, like the API
        // server it stands beside.
        return tokio::runtime::Runtime::new()?.block_on(apiload::serve_static(socket));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let line = match cli.command {
        Command::ServeStatic { .. } => unreachable!("handled above"),
        Command::Requests {
            socket,
            method,
            path,
            body,
            clients,
            seconds,
        } => serde_json::to_string(&rt.block_on(apiload::requests(
            &socket,
            &method,
            &path,
            body.as_bytes(),
            clients,
            Duration::from_secs_f64(seconds),
        ))?)?,
        Command::Commits {
            socket,
            clients,
            commits,
        } => serde_json::to_string(&rt.block_on(apiload::commits(&socket, clients, commits))?)?,
        Command::DurableWrites {
            dir,
            threads,
            writes,
        } => serde_json::to_string(&apiload::durable_writes(&dir, threads, writes)?)?,
    };
    println!("{line}");
    Ok(())
}
