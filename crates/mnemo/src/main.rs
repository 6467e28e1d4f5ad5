//! The `mnemo` command.
//!
//! Layout:
//! - `args`: the command line (clap).
//! - `node_cmd`: `mnemo node`.
//! - `dev`: `mnemo dev`, a local cluster of node processes.
//! - `client`: the commands that talk to a node.
//! - `cluster_cmd`: `mnemo cluster`, every member's view side by side.
//! - `keys_cmd`: `mnemo certs create`, `mnemo token create`.

mod args;
mod client;
mod cluster_cmd;
mod dev;
mod keys_cmd;
mod node_cmd;

use clap::Parser;

use crate::args::{CertsCommand, Cli, Command, TokenCommand};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // A command whose output is piped into `head` ends quietly when the
    // pipe closes, as Unix tools do. Not the long-running processes: a
    // node must outlive a peer's closed connection.
    if !matches!(cli.command, Command::Node(_) | Command::Dev(_)) {
        sigpipe::reset();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MNEMO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory as _;
        clap_complete::generate(
            shell,
            &mut args::Cli::command(),
            "mnemo",
            &mut std::io::stdout(),
        );
        return std::process::ExitCode::SUCCESS;
    }
    // The key material commands need no runtime.
    let done = match &cli.command {
        Command::Certs(CertsCommand::Create(a)) => Some(keys_cmd::certs_create(a)),
        Command::Token(TokenCommand::Create(a)) => Some(keys_cmd::token_create(a)),
        _ => None,
    };
    if let Some(result) = done {
        return exit(result.map(|()| 0));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Cluster(a) => return cluster_cmd::run(a).await,
            Command::Recall(a) => return client::recall(a).await,
            Command::Forget(a) => return client::forget(a).await,
            Command::Query(a) => return client::query(a).await,
            Command::Node(a) => node_cmd::run(a).await,
            Command::Dev(a) => dev::run(a).await,
            Command::Remember(a) => client::remember(a).await,
            Command::Get(a) => client::get(a).await,
            Command::Export(a) => client::export(a).await,
            Command::Import(a) => client::import(a).await,
            Command::Consolidate(a) => client::consolidate(a).await,
            Command::Locate(a) => client::locate(a).await,
            Command::Status(a) => client::status(a).await,
            Command::Decommission(a) => client::decommission(a).await,
            Command::Completions { .. } | Command::Certs(_) | Command::Token(_) => {
                unreachable!("answered before the runtime starts")
            }
        }
        .map(|()| 0)
    });
    exit(result)
}

/// Exit code 0, the code a command chose, or 1 with its one line of error.
fn exit(result: Result<u8, client::Failure>) -> std::process::ExitCode {
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(client::Failure(message)) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
