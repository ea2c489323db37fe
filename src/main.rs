//! The `sessionbridge` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// An allocator made for many threads: the runtime's worker threads
/// allocate and free each request's buffers on different threads, which
/// glibc's allocator serializes on its arena locks.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
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
    /// Write a new key file (one current key and a pepper); add a next key
    /// to an existing one with --rotate; make a listed key current with
    /// --promote.
    Keygen {
        /// Where to write the key file; an existing file is never overwritten.
        #[arg(long, value_name = "FILE", required_unless_present_any = ["rotate", "promote"])]
        out: Option<PathBuf>,
        /// Add a new *next* key to this key file: accepted everywhere the
        /// file is, signing nowhere yet. Roll the file out, then --promote.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["out", "promote"])]
        rotate: Option<PathBuf>,
        /// Make the key --key-id of this key file the current one (it signs
        /// and seals from then on); older keys stay listed and still verify.
        #[arg(long, value_name = "FILE", conflicts_with = "out", requires = "key_id")]
        promote: Option<PathBuf>,
        /// The new key's id [default: k<unix seconds>], or the key to promote.
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

/// Transparent huge pages off for this process. The allocator asks the
/// kernel for huge pages on its arenas; the store's page cache frees and
/// allocates all the time, and each fault on a huge page zeroes 2 MiB and
/// counts whole in the resident size however little of it is in use.
/// Measured in docs/performance.md ("Transparent huge pages").
#[cfg(target_os = "linux")]
fn no_transparent_huge_pages() {
    // SAFETY: prctl(PR_SET_THP_DISABLE) takes plain integers and sets a
    // flag of this process only. A kernel without it answers EINVAL, and
    // the process runs as before.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    no_transparent_huge_pages();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(overrides) => serve(*overrides),
        Command::Keygen {
            out,
            rotate,
            promote,
            key_id,
        } => match promote {
            Some(path) => promote_key(&path, key_id.as_deref().unwrap_or_default()),
            None => keygen(out, rotate, key_id),
        },
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

fn promote_key(path: &std::path::Path, key_id: &str) -> anyhow::Result<()> {
    sessionbridge::keys::promote(path, key_id)?;
    eprintln!(
        "key {key_id:?} of {} is now current; roll the file out",
        path.display()
    );
    Ok(())
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
                "added key {key_id:?} to {} as the next key: roll the file out to every \
                 sidecar, then `sessionbridge keygen --promote {} --key-id {key_id}`",
                path.display(),
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
