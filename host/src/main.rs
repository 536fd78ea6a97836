fn main() {
    std::process::exit(wask::entry());
}
