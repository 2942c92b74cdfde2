//! The `ringmq` command line: `serve` runs the broker; the other subcommands are clients.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::server::ServeArgs;

#[derive(Debug, Parser)]
#[command(name = "ringmq", version, about = "A persistent message broker, thread-per-core on io_uring")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker.
    Serve(ServeArgs),
}

/// Parses the command line and runs it; every error is one line on stderr and a non-zero exit.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => crate::server::run(args),
    }
}
