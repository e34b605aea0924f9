//! `loadtest`: the load, chaos and overhead harness of the IntelliFill API.
//!
//! - `loadtest run`: everything embedded (throwaway Postgres, Redis, the GoTrue emulator, the server as a
//!   child process), seeded through the API, then the mixed workload, a list-only workload, the pgbench
//!   ceiling of the list transaction and a hello-world HTTP ceiling, at the same concurrency.
//! - `loadtest chaos <scenario>`: faults injected under load (auth service, Redis, Postgres, pool, a body
//!   flood), with a PASS/FAIL verdict per expectation; the exit code is non-zero if any fails.
//! - `loadtest overhead`: the per-request cost of the middleware stack, in process.
//!
//! Every loop is bounded in requests and in time; everything listens on loopback only.

#![warn(unreachable_pub)]

mod chaos;
mod client;
mod load;
mod overhead;
mod pgbench;
mod run;
mod seed;
mod stack;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use intellifill::ServeArgs;

/// The server's allocator (see the `intellifill` binary), so the server measured here is the one shipped;
/// counted, so `loadtest overhead` can report allocations per request.
#[global_allocator]
static GLOBAL: alloc_tracker::Allocator<mimalloc::MiMalloc> = alloc_tracker::Allocator::new(mimalloc::MiMalloc);

#[derive(Parser)]
#[command(name = "loadtest", about = "Load, chaos and overhead harness of the IntelliFill API")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Mixed workload, list-only workload, pgbench ceiling and hello-world ceiling, at one concurrency.
    Run(run::RunArgs),
    /// Inject a fault under load and check what the clients see.
    Chaos(chaos::ChaosArgs),
    /// Per-request overhead of the middleware stack (in process, sequential).
    Overhead(overhead::OverheadArgs),
    /// (internal) the server, configured from the environment; stops when standard input closes.
    #[command(name = "__serve", hide = true)]
    Serve(Box<ServeChild>),
    /// (internal) a hello-world axum server; stops when standard input closes.
    #[command(name = "__hello", hide = true)]
    Hello,
}

#[derive(clap::Args)]
struct ServeChild {
    #[command(flatten)]
    args: ServeArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, command_line)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command to its report, prints it, and writes it as JSON to `json` when asked.
async fn report<R: serde::Serialize>(
    json: Option<std::path::PathBuf>,
    run: impl Future<Output = Result<R>>,
    print: fn(&R),
) -> Result<R> {
    let report = run.await?;
    print(&report);
    if let Some(path) = json {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("[loadtest] wrote {}", path.display());
    }
    Ok(report)
}

async fn dispatch(command: Cmd, command_line: String) -> Result<ExitCode> {
    match command {
        Cmd::Run(args) => {
            report(args.json.clone(), run::run(args, command_line), run::print).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Chaos(args) => {
            let report = report(args.json.clone(), chaos::run(args, command_line), chaos::print).await?;
            Ok(if report.passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Cmd::Overhead(args) => {
            report(args.json.clone(), overhead::run(args, command_line), overhead::print).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Serve(child) => {
            serve_child(child.args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Hello => {
            hello_child().await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Resolves when standard input reaches its end (the parent closed it or died) or on SIGINT/SIGTERM.
async fn parent_gone() {
    let stdin = async {
        use tokio::io::AsyncReadExt;
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        () = stdin => {},
        () = intellifill::testing::shutdown_signal() => {},
    }
}

async fn serve_child(args: ServeArgs) -> Result<()> {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    intellifill::testing::init_tracing(intellifill::testing::LogFormat::Pretty, &filter);
    let config = intellifill::Config::from_args(&args).map_err(|e| anyhow::anyhow!("{e}"))?;
    let app = intellifill::Application::build(config).await?;
    println!("LISTENING {}", app.local_addr());
    app.run_until_stopped(parent_gone()).await
}

/// The HTTP ceiling: axum on the same runtime configuration, `GET /` answering a small JSON.
async fn hello_child() -> Result<()> {
    use axum::Json;
    use axum::routing::get;
    let app =
        axum::Router::new().route("/", get(|| async { Json(serde_json::json!({"status": "ok", "message": "hello"})) }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    println!("LISTENING {}", listener.local_addr()?);
    axum::serve(listener, app).with_graceful_shutdown(parent_gone()).await?;
    Ok(())
}
