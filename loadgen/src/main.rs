//! `ringmq-loadgen`: N producers and M consumers against a ringmq broker, each actor on its
//! own thread, glommio executor and connection; open-loop (`--rate`, latency from the intended
//! send time) or closed-loop; produce-ack and end-to-end latency (hdrhistogram), throughput,
//! errors by code; a text report, `--json`, `--plot`; `--embedded` runs the broker itself.
//!
//! Layout: [`args`] flags · [`runner`] one run start to end · [`actors`] producer and consumer
//! · [`rate`] open-loop pacing · [`stats`] histograms and their merging · [`report`] text and
//! JSON · [`plot`] SVG · [`embedded`] the child broker · [`host`] machine description.
//!
//! Exit: 0 after a complete run; 1 when the run failed (the report of what was measured is
//! still printed, then `ringmq-loadgen: <reason>`); 2 for a bad command line.

mod actors;
mod args;
mod cpu_steal;
mod cpu_wait;
mod embedded;
mod host;
mod plot;
mod rate;
mod report;
mod runner;
mod stats;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

const EXIT_RUNTIME_ERROR: u8 = 1;
const EXIT_USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let args = match args::Args::try_parse() {
        Ok(args) => args,
        Err(error) => return usage_error(&error),
    };
    if let Err(message) = args.validate() {
        eprintln!("ringmq-loadgen: {message}");
        return ExitCode::from(EXIT_USAGE_ERROR);
    }
    let outcome = match runner::run(&args) {
        Ok(outcome) => outcome,
        Err(message) => {
            eprintln!("ringmq-loadgen: {message}");
            return ExitCode::from(EXIT_RUNTIME_ERROR);
        }
    };
    print!("{}", report::format_text(&outcome.report));
    let mut failed = outcome.failure.clone();
    if let Some(path) = &args.json {
        let written = serde_json::to_vec_pretty(&outcome.report)
            .map_err(|error| error.to_string())
            .and_then(|json| std::fs::write(path, json).map_err(|error| error.to_string()));
        if let Err(error) = written {
            failed.get_or_insert(format!("cannot write {}: {error}", path.display()));
        }
    }
    if let Some(path) = &args.plot {
        if let Err(error) = plot::write_svg(&outcome.report, path) {
            failed.get_or_insert(error);
        }
    }
    match failed {
        None => ExitCode::SUCCESS,
        Some(message) => {
            eprintln!("ringmq-loadgen: {message}");
            ExitCode::from(EXIT_RUNTIME_ERROR)
        }
    }
}

/// Help and version go to stdout with exit 0; any other parse error is one line and exit 2.
fn usage_error(error: &clap::Error) -> ExitCode {
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    let text = error.to_string();
    let first: Vec<&str> = text
        .lines()
        .skip_while(|line| line.trim().is_empty())
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    eprintln!("ringmq-loadgen: {} (see --help)", first.join(" ").trim_start_matches("error: "));
    ExitCode::from(EXIT_USAGE_ERROR)
}
