//! The `sessionbridge` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sessionbridge::config::{Config, LogFormat, Overrides};

/// One visitor identity and one session across many web domains, over gRPC.
#[derive(Parser)]
#[command(name = "sessionbridge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC service.
    Serve(Box<Overrides>),
    /// Write a new key file (one current key and a pepper), or add a new
    /// current key to an existing one with --rotate.
    Keygen {
        /// Where to write the key file; an existing file is never overwritten.
        #[arg(long, value_name = "FILE", required_unless_present = "rotate")]
        out: Option<PathBuf>,
        /// Add a new current key to this existing key file; older keys stay
        /// listed so tokens and cookies they signed still verify.
        #[arg(long, value_name = "FILE", conflicts_with = "out")]
        rotate: Option<PathBuf>,
        /// The new key's id [default: k<unix seconds>].
        #[arg(long)]
        key_id: Option<String>,
    },
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("SESSIONBRIDGE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(overrides) => serve(*overrides),
        Command::Keygen {
            out,
            rotate,
            key_id,
        } => keygen(out, rotate, key_id),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sessionbridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(overrides: Overrides) -> anyhow::Result<()> {
    let cfg = Config::load(&overrides)?;
    // One TLS implementation for the process (rediss:// connections).
    let _ = rustls::crypto::ring::default_provider().install_default();
    init_logging(cfg.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(sessionbridge::server::run(cfg, std::future::pending()))
}

fn keygen(
    out: Option<PathBuf>,
    rotate: Option<PathBuf>,
    key_id: Option<String>,
) -> anyhow::Result<()> {
    let key_id = key_id.unwrap_or_else(|| format!("k{}", sessionbridge::service::now_unix()));
    match (out, rotate) {
        (_, Some(path)) => {
            sessionbridge::keys::rotate(&path, &key_id)?;
            eprintln!(
                "added key {key_id:?} to {} and made it current",
                path.display()
            );
        }
        (Some(path), None) => {
            sessionbridge::keys::generate(&path, &key_id)?;
            eprintln!(
                "wrote {} with current key {key_id:?}; give every sidecar this same file",
                path.display()
            );
        }
        (None, None) => unreachable!("clap requires one of --out and --rotate"),
    }
    Ok(())
}
