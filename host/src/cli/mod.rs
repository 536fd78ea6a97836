//! The `wask` command line. Each command lives in its own module; [`main`] is the one
//! place where errors become messages and exit codes (EXEC-021).

mod audit;
mod cache;
mod check;
mod describe;
mod graph;
mod init;
mod new_task;
mod pin;
mod profile;
mod query;
mod run;
mod watch;
mod why;

use crate::graph::Graph;
use crate::workspace::{self, LoadErrors, Workspace};
use clap::{Parser, Subcommand};
use codespan_reporting::term::termcolor::{ColorChoice, StandardStream};
use std::path::PathBuf;

/// A WebAssembly-sandboxed task runner: every task is a WASI module that sees only what
/// it declared, so its cached result is as good as a fresh run.
#[derive(Parser)]
#[command(
    name = "wask",
    disable_version_flag = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Print the version (with `--verbose`: wasmtime's version and features, the cache
    /// key revision, the remote cache protocols).
    #[arg(short = 'V', long)]
    version: bool,
    /// With `--version`: everything this build is made of.
    #[arg(long, requires = "version")]
    verbose: bool,
    /// Run as if wask was started in DIR.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    directory: Option<PathBuf>,
    /// When to colour output: `auto` (on a terminal, unless NO_COLOR is set), `always`
    /// or `never`.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t)]
    color: crate::exec::observer::ColourWhen,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run tasks and their dependencies, from the cache where possible.
    Run(run::RunArgs),
    /// Load and check the workspace without running anything.
    Check,
    /// Print the task graph as Graphviz dot, Mermaid or JSON.
    Graph(graph::GraphArgs),
    /// List projects and tasks, filtered by tags, projects and task names.
    Query(query::QueryArgs),
    /// Explain a task's cache key part by part, and whether it is a hit.
    Why(why::WhyArgs),
    /// Run tasks fresh several times and compare the runs with each other and the cache.
    Audit(audit::AuditArgs),
    /// Inspect, clean, verify or empty the local cache.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Write a starter `wask.toml` in the current directory.
    Init(init::InitArgs),
    /// Scaffold a guest crate using the wask-guest SDK and add a task that runs it.
    NewTask(new_task::NewTaskArgs),
    /// Print a shell completion script: `wask completions bash > /etc/bash_completion.d/wask`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Run tasks, then again when the files they read change (only what a change affects).
    Watch(watch::WatchArgs),
    /// Show what a plugin says of itself: name, summary, usage, inputs and outputs.
    Describe(describe::DescribeArgs),
    /// Print the `blake3 =` pin of a module, or write it into a task with `--write`.
    Pin(pin::PinArgs),
    /// Print the JSON Schema of `wask.toml`, for editors (also `docs/wask.schema.json`).
    Schema,
}

/// The JSON Schema of `wask.toml` files; `docs/wask.schema.json` is the same file.
const SCHEMA: &str = include_str!("wask.schema.json");

/// Everything that can stop a command, and the exit code it maps to.
#[derive(Debug)]
pub enum CliError {
    /// The workspace files are wrong: every error, with its location (exit 2).
    Load(LoadErrors),
    /// The command line is wrong (exit 2).
    Usage(String),
    /// Modules could not be had before the run, each with the task it is for: a guest
    /// crate that does not build is a failed task (exit 1); a pin that does not match or
    /// a missing toolchain target is configuration (exit 2).
    Modules(Vec<(String, std::sync::Arc<crate::modules::ModuleError>)>),
    /// Anything else that stopped wask itself (exit 2).
    Other(anyhow::Error),
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Other(e)
    }
}

/// Exit codes (EXEC-021).
pub const EXIT_OK: i32 = 0;
pub const EXIT_TASK_FAILED: i32 = 1;
pub const EXIT_BAD_CONFIG: i32 = 2;

/// Parses the command line, runs the command, prints any error; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                EXIT_BAD_CONFIG
            } else {
                EXIT_OK
            };
        }
    };
    let _ = COLOUR.set(cli.color);
    let Some(command) = cli.command else {
        print_version(cli.verbose);
        return EXIT_OK;
    };
    let result = match command {
        Command::Run(args) => run::run(cli.directory, args),
        Command::Check => check::check(cli.directory),
        Command::Graph(args) => graph::graph(cli.directory, args),
        Command::Query(args) => query::query(cli.directory, args),
        Command::Why(args) => why::why(cli.directory, args),
        Command::Audit(args) => audit::audit(cli.directory, args),
        Command::Cache(c) => cache::cache(cli.directory, c),
        Command::Init(args) => init::init(cli.directory, args),
        Command::NewTask(args) => new_task::new_task(cli.directory, args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "wask", &mut std::io::stdout());
            Ok(EXIT_OK)
        }
        Command::Watch(args) => watch::watch(cli.directory, args),
        Command::Describe(args) => describe::describe(cli.directory, args),
        Command::Pin(args) => pin::pin(cli.directory, args),
        Command::Schema => {
            print!("{SCHEMA}");
            Ok(EXIT_OK)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => report(e),
    }
}

/// Prints what stopped a command, and returns its exit code (EXEC-021): the one place
/// errors become messages.
fn report(error: CliError) -> i32 {
    match error {
        CliError::Load(errors) => {
            let mut err = StandardStream::stderr(color_choice());
            let _ = errors.render(&mut err);
            EXIT_BAD_CONFIG
        }
        CliError::Modules(errors) => {
            use crate::modules::ModuleError;
            let lines: Vec<String> = errors.iter().map(|(id, e)| format!("{id}: {e}")).collect();
            eprintln!("error: nothing was run: {}", clip(&lines.join("\n")));
            let built = errors
                .iter()
                .all(|(_, e)| matches!(**e, ModuleError::BuildFailed { .. }));
            if built {
                EXIT_TASK_FAILED
            } else {
                EXIT_BAD_CONFIG
            }
        }
        CliError::Usage(message) => {
            eprintln!("error: {}", clip(&message));
            EXIT_BAD_CONFIG
        }
        CliError::Other(e) => {
            eprintln!("error: {}", clip(&format!("{e:#}")));
            EXIT_BAD_CONFIG
        }
    }
}

/// A message with no line longer than a terminal can take in: values echoed from a
/// hostile file or command line may be megabytes.
fn clip(message: &str) -> String {
    workspace::diag::clip_lines(message, 4 * workspace::diag::MAX_SHOWN)
}

/// `wask --version [--verbose]`.
fn print_version(verbose: bool) {
    println!("wask {}", env!("CARGO_PKG_VERSION"));
    if verbose {
        println!(
            "wasmtime {} ({})",
            wask_runtime::WASMTIME_VERSION,
            wask_runtime::WASMTIME_FEATURES.join(", ")
        );
        println!("guest ABI: WASI preview 1 command modules (wasm32-wasip1)");
        println!("cache key revision {}", crate::key::KEY_REVISION);
        println!(
            "remote caches: http, https (Bazel HTTP layout); grpc, grpcs (REAPI v2); TLS by rustls with the system roots"
        );
        println!("host: {}-{}", std::env::consts::ARCH, std::env::consts::OS);
    }
}

/// `--color`, as the command line gave it; set once, first thing in [`main`].
static COLOUR: std::sync::OnceLock<crate::exec::observer::ColourWhen> = std::sync::OnceLock::new();

fn colour() -> crate::exec::observer::ColourWhen {
    COLOUR.get().copied().unwrap_or_default()
}

/// The colour of diagnostics on stderr.
fn color_choice() -> ColorChoice {
    use std::io::IsTerminal;
    if colour().for_stream(std::io::stderr().is_terminal()) {
        ColorChoice::Always
    } else {
        ColorChoice::Never
    }
}

/// Writes a file the user named (`--summary`, `--profile`) whole or not at all: under a
/// temporary name beside it, then renamed over it, so a link already at the path is
/// replaced, never written through.
fn write_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The directory commands start from: `-C DIR` or the current directory.
fn start_dir(directory: Option<PathBuf>) -> Result<PathBuf, CliError> {
    match directory {
        Some(d) => Ok(d),
        None => std::env::current_dir().map_err(|e| CliError::Other(e.into())),
    }
}

/// Finds, loads and checks the workspace and its graph.
fn load(directory: &std::path::Path) -> Result<(Workspace, Graph), CliError> {
    let root = workspace::find_root(directory)?;
    let ws = match workspace::load(&root) {
        Ok(ws) => ws,
        Err(mut e) => {
            if let Some(partial) = e.partial.take()
                && let Err(more) = Graph::build(&partial)
            {
                e.errors.extend(more);
            }
            return Err(CliError::Load(e));
        }
    };
    match Graph::build(&ws) {
        Ok(g) => Ok((ws, g)),
        Err(errors) => Err(CliError::Load(LoadErrors {
            sources: ws.sources,
            errors,
            partial: None,
        })),
    }
}
