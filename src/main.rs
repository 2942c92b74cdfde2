fn main() {
    eprintln!("ringmq: the broker is not built yet; the storage engine is (see README.md)");
    std::process::exit(2);
}
