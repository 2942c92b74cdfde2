fn main() -> std::process::ExitCode {
    ringmq::cli::main()
}
