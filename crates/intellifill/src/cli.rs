//! The command line: `serve`, `migrate`, `audit retention | verify | export | public-key | generate-key`, and with
//! the `dev` feature (on by default) `dev` and `emulator`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ServeArgs};
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(name = "intellifill", version, about = "IntelliFill API server")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once at start-up")]
pub(crate) enum Command {
    /// Run the API server (configuration from flags or environment; see .env.example).
    Serve(ServeArgs),
    /// Everything embedded: throwaway Postgres, auth emulator, demo data, server; prints curl lines.
    #[cfg(feature = "dev")]
    Dev(crate::dev::DevArgs),
    /// Apply pending migrations as the owner role and exit.
    Migrate(MigrateArgs),
    /// Run the Supabase Auth (GoTrue) emulator alone.
    #[cfg(feature = "dev")]
    Emulator(crate::dev::EmulatorArgs),
    /// Audit log maintenance.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Drop the audit partitions older than their class's retention, recording each drop in
    /// audit_retention_log (as the owner role; the server itself can never delete audit rows).
    Retention(RetentionArgs),
    /// Check the audit trail against its signed digests: every modified, deleted, inserted or reordered row,
    /// every missing or forged digest. Exit 0: verifies; 1: does not; 2: could not be checked.
    Verify(crate::audit::seal::commands::VerifyArgs),
    /// Write an organization's sealed rows of a time range, with the digests that prove them, as JSON lines
    /// (check it offline with `audit verify --file`).
    Export(crate::audit::seal::commands::ExportArgs),
    /// Print the public key (PEM) of AUDIT_SIGNING_KEY / AUDIT_SIGNING_KEY_FILE, for auditors.
    PublicKey,
    /// Print a new Ed25519 signing key (PKCS#8 PEM) for AUDIT_SIGNING_KEY.
    GenerateKey,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RetentionArgs {
    /// Days the security class keeps (auth.*, security.*, user.*, audit.* and every event with a severity).
    #[arg(long, env = "AUDIT_RETENTION_SECURITY_DAYS", default_value = "2557", value_parser = clap::value_parser!(i32).range(30..=36_500))]
    pub security_days: i32,
    /// Days the write class keeps (data changes: POST, PUT, PATCH, DELETE).
    #[arg(long, env = "AUDIT_RETENTION_WRITE_DAYS", default_value = "1096", value_parser = clap::value_parser!(i32).range(30..=36_500))]
    pub write_days: i32,
    /// Days the read class keeps (GET, HEAD, OPTIONS).
    #[arg(long, env = "AUDIT_RETENTION_READ_DAYS", default_value = "400", value_parser = clap::value_parser!(i32).range(30..=36_500))]
    pub read_days: i32,
    /// Move expired partitions to schema audit_archive (to archive, then drop by hand) instead of dropping them.
    #[arg(long)]
    pub keep_detached: bool,
    /// Print what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Direct (not pooled) connection string of the schema owner role.
    #[arg(long, env = "DATABASE_MIGRATION_URL", hide_env_values = true)]
    pub database_migration_url: String,
}

#[derive(Debug, clap::Args)]
pub(crate) struct MigrateArgs {
    /// Direct (not pooled) connection string of the schema owner role.
    #[arg(long, env = "DATABASE_MIGRATION_URL", hide_env_values = true)]
    pub database_migration_url: String,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Audit(AuditCommand::Verify(args)) = cli.command {
        return runtime.block_on(crate::audit::seal::commands::verify(args));
    }
    let result = runtime.block_on(run(cli.command));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            telemetry::init(telemetry::format_from_env(LogFormat::Json), "info");
            let config = Config::from_args(&args)?;
            let app = crate::startup::Application::build(config).await?;
            tracing::info!(addr = %app.local_addr(), "listening");
            app.run_until_stopped(crate::startup::shutdown_signal()).await
        }
        Command::Migrate(args) => {
            telemetry::init(telemetry::format_from_env(LogFormat::Pretty), "info");
            let mut client = crate::db::migrate::connect(&args.database_migration_url).await?;
            let applied = crate::db::migrate::run(&mut client).await?;
            println!(
                "schema at version {} ({} migration(s) applied now)",
                crate::db::migrate::latest_version(),
                applied.len()
            );
            Ok(())
        }
        #[cfg(feature = "dev")]
        Command::Dev(args) => {
            telemetry::init(telemetry::format_from_env(LogFormat::Pretty), "info,intellifill=info");
            crate::dev::run(args).await
        }
        Command::Audit(AuditCommand::Retention(args)) => {
            use crate::audit::retention::{self, Retention, Run};
            telemetry::init(telemetry::format_from_env(LogFormat::Pretty), "info");
            let client = crate::db::migrate::connect(&args.database_migration_url).await?;
            let policy =
                Retention { security_days: args.security_days, write_days: args.write_days, read_days: args.read_days };
            let run = Run { keep_detached: args.keep_detached, dry_run: args.dry_run };
            let removed = retention::apply(&client, policy, run).await?;
            print!("{}", retention::report(&removed, policy, run));
            Ok(())
        }
        Command::Audit(AuditCommand::Verify(args)) => {
            let _ = crate::audit::seal::commands::verify(args).await;
            Ok(())
        }
        Command::Audit(AuditCommand::Export(args)) => crate::audit::seal::commands::export(args).await,
        Command::Audit(AuditCommand::PublicKey) => crate::audit::seal::commands::public_key(),
        Command::Audit(AuditCommand::GenerateKey) => crate::audit::seal::commands::generate_key(),
        #[cfg(feature = "dev")]
        Command::Emulator(args) => {
            telemetry::init(telemetry::format_from_env(LogFormat::Pretty), "info");
            crate::dev::run_emulator(args).await
        }
    }
}
