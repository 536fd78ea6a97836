fn main() {
    // A child that compiles one module for a parent `wask` (see `wask_runtime::compile`);
    // not a command anyone types, so not one clap knows.
    if std::env::args_os().nth(1).as_deref() == Some(wask::exec::COMPILE_SUBCOMMAND.as_ref()) {
        std::process::exit(wask_runtime::compile::serve());
    }
    std::process::exit(wask::cli::main());
}
