//! `gatehouse`: the one binary. It only wires the crates together (flags, listeners,
//! signals, exit codes); every decision lives in a library crate (`gatehouse-compiler`
//! for what manifests mean, `gatehouse-router` for matching, `gatehouse-standalone` for
//! what `run` does with a folder of manifests and its changes, `gatehouse-controller`
//! for the control plane).

mod check;
mod controller;
mod data_plane;
mod proxy;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about = "An API gateway for Kubernetes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Standalone: serve the manifests in PATH, reloading on every change and SIGHUP.
    Run(run::RunArgs),
    /// Data plane inside a pod: serves what the controller pushes over the admin
    /// socket, and the last table it persisted until then.
    Proxy(proxy::ProxyArgs),
    /// Control plane inside a pod: watches the cluster, compiles, pushes to the
    /// co-located proxy, writes status.
    Controller(controller::ControllerArgs),
    /// Compile manifests exactly as the controller would and print every diagnostic.
    /// Exit 0 when clean, 1 on errors.
    Lint {
        /// A manifest file or a directory tree of them.
        #[arg(short = 'f', long = "file")]
        path: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
        /// Compile for a gateway that has this Redis (`--redis` of `run`/`proxy`): its
        /// `scope: Global` limits are then shared, not reported as counted per replica.
        #[arg(long, env = "GATEHOUSE_REDIS")]
        redis: Option<String>,
    },
    /// Which route and rule match a request, why others did not, the effective policies
    /// and the backends.
    Explain {
        /// A manifest file or a directory tree of them.
        #[arg(short = 'f', long = "file")]
        path: PathBuf,
        /// The request method.
        method: String,
        /// `https://host/path?query`, or `/path?query` with a `Host` header.
        url: String,
        /// Request headers, `Name: value`.
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Print the CustomResourceDefinitions as YAML.
    Crds,
    /// Print the version, git revision and build.
    Version,
}

/// One allocator for the whole process: mimalloc, for the request path and compiler alike.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gatehouse: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr: text on a terminal, JSON otherwise (`RUST_LOG` filters).
fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Proxy(args) => proxy::proxy(args),
        Command::Controller(args) => controller::controller(args),
        Command::Lint {
            path,
            output,
            redis,
        } => check::lint(&path, redis.is_some(), output == Output::Json),
        Command::Explain {
            path,
            method,
            url,
            headers,
            output,
        } => check::explain(&path, &method, &url, &headers, output == Output::Json),
        Command::Crds => {
            print!(
                "{}",
                gatehouse_api::crds_yaml().context("rendering the CRDs")?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            println!(
                "gatehouse {} (git {}, {} build, {})",
                env!("CARGO_PKG_VERSION"),
                env!("GATEHOUSE_GIT_REV"),
                env!("GATEHOUSE_PROFILE"),
                env!("GATEHOUSE_TARGET"),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
