//! `wask`, built for the tests (see `tests/Cargo.toml`).

fn main() {
    std::process::exit(wask::entry());
}
