//! `ringmq-loadgen`: the load generator. Not built yet: it needs the broker's produce and
//! fetch path (see the load generator issue). Until then it says so and exits non-zero.

fn main() {
    eprintln!("ringmq-loadgen: not built yet (needs the broker's produce/fetch path)");
    std::process::exit(2);
}
