//! The `ringmq` command line: `serve` runs the broker; the other subcommands are clients.
//!
//! Every error is one line on stderr, `ringmq: <message>`, and a non-zero exit: 1 for a
//! runtime error (unknown topic, broker unreachable, produce not acknowledged), 2 for a usage
//! error (clap's convention). Never a panic or a backtrace.

mod client_commands;
mod group_commands;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

use crate::server::ServeArgs;

pub use client_commands::{
    Acks as AcksArg, ConsumeArgs, ConsumeFormat, Delivery as DeliveryArg, ProduceArgs, StartFrom, TopicCommand,
};
pub use group_commands::GroupCommand;

/// Default broker address of the client subcommands.
pub const BOOTSTRAP_DEFAULT: &str = "127.0.0.1:9292";

#[derive(Debug, Parser)]
#[command(name = "ringmq", version, about = "A persistent message broker, thread-per-core on io_uring")]
pub struct Cli {
    /// Broker address (HOST:PORT) the client subcommands connect to.
    #[arg(long, global = true, env = "RINGMQ_BOOTSTRAP", default_value = BOOTSTRAP_DEFAULT)]
    pub bootstrap: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker.
    Serve(ServeArgs),
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Produce one message per stdin line; exits 0 once every line is acknowledged.
    Produce(ProduceArgs),
    /// Print messages, one per line (with --group, as a consumer-group member).
    Consume(ConsumeArgs),
    /// List and describe consumer groups, reset their offsets.
    #[command(subcommand)]
    Group(GroupCommand),
}

/// Exit code of a runtime error.
const EXIT_RUNTIME_ERROR: u8 = 1;
/// Exit code of a usage error (clap's).
const EXIT_USAGE_ERROR: u8 = 2;

/// Parses the command line and runs it; every error is one line on stderr and a non-zero exit.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    let bootstrap = cli.bootstrap;
    let outcome = match cli.command {
        Command::Serve(args) => return crate::server::run(args),
        Command::Topic(command) => client_commands::run(&bootstrap, |addr| client_commands::topic(addr, command)),
        Command::Produce(args) => client_commands::run(&bootstrap, |addr| client_commands::produce(addr, args)),
        Command::Consume(args) => client_commands::run(&bootstrap, |addr| client_commands::consume(addr, args)),
        Command::Group(command) => client_commands::run(&bootstrap, |addr| group_commands::group(addr, command)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ringmq: {message}");
            ExitCode::from(EXIT_RUNTIME_ERROR)
        }
    }
}

/// Help and version go to stdout with exit 0; any other parse error is one line.
fn usage_error(error: &clap::Error) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            ExitCode::from(EXIT_USAGE_ERROR)
        }
        _ => {
            // clap's first paragraph is the message (a list of missing arguments spans
            // several lines); usage and tips follow a blank line.
            let text = error.to_string();
            let paragraph: Vec<&str> = text
                .lines()
                .skip_while(|line| line.trim().is_empty())
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            let joined = paragraph.join(" ");
            let first = joined.trim_start_matches("error: ");
            eprintln!("ringmq: {first} (see --help)");
            ExitCode::from(EXIT_USAGE_ERROR)
        }
    }
}
