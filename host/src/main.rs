fn main() {
    std::process::exit(wask::cli::main());
}
