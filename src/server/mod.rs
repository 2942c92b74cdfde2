//! The broker: thread-per-core shards, listeners, connections and the API handlers.
//! (Being built; see the server issue.)

pub mod args;

pub use args::ServeArgs;

/// Runs the broker until SIGINT/SIGTERM. Returns the process exit code.
pub fn run(_args: ServeArgs) -> std::process::ExitCode {
    eprintln!("ringmq serve: not built yet");
    std::process::ExitCode::from(2)
}
