//! `wask-guest`: the small SDK for writing a wask task in Rust.
//!
//! A wask task is a WASI program. wask runs it in a sandbox whose filesystem is the
//! workspace seen from `/`, holding only the task's declared inputs (read-only) and
//! writable only under its declared outputs. wask also writes a description of the task to
//! `/.wask/task.json`: the project directory, the declared inputs and the declared outputs.
//! This crate reads that description and gives a task what it needs:
//!
//! - [`Task::args`]: the `args` of the task in `wask.toml`;
//! - [`Task::inputs`]: the declared input files, as workspace paths (`/site/pages/a.md`);
//! - [`Task::resolve`]: project-relative paths (`pages/a.md`) made workspace-absolute;
//! - [`Task::read`] and [`Task::write_output`] (which creates parent directories);
//! - [`Task::env`]: an allow-listed environment variable, or an error saying how to
//!   allow it;
//! - [`run`]: turns an [`Error`] into a readable message on stderr and exit code 1, and
//!   a panic into one line (no backtrace note: there is no backtrace to ask for);
//! - [`main!`]: the plugin's `main`, with its self-description (name, summary, usage,
//!   inputs, outputs) embedded in the module for `wask describe`, and printed with
//!   argument errors.
//!
//! ```no_run
//! // src/main.rs of a task crate
//! wask_guest::run(|task| {
//!     let [src, out] = task.args_exact::<2>()?;
//!     let text = task.read_string(&src)?;
//!     task.write_output(&out, text.to_uppercase())?;
//!     Ok(())
//! })
//! ```
//!
//! The same crate builds natively, so a task's logic can be unit-tested with
//! `cargo test` by building a [`Task`] with [`Task::from_parts`] over a temporary directory.

use std::fmt;
use std::path::PathBuf;

/// Where wask puts the task description inside the sandbox: JSON with
/// `wask_task` (format, 1), `project_dir`, `inputs` and `outputs`.
///
/// ```
/// assert_eq!(wask_guest::TASK_FILE, "/.wask/task.json");
/// ```
pub const TASK_FILE: &str = "/.wask/task.json";

/// An error a task reports; [`run`] prints it as `error: <message>` and exits with
/// status 1.
#[derive(Debug)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with a message meant for the person reading the task's output.
    ///
    /// ```
    /// let e = wask_guest::Error::msg("no pages found");
    /// assert_eq!(e.to_string(), "no pages found");
    /// ```
    pub fn msg(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
        }
    }

    /// Adds what was being done when the error happened: `context: error`.
    ///
    /// ```
    /// let e = wask_guest::Error::msg("bad heading").context("rendering /docs/a.md");
    /// assert_eq!(e.to_string(), "rendering /docs/a.md: bad heading");
    /// ```
    pub fn context(self, context: impl fmt::Display) -> Error {
        Error {
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::msg(io_words(&e))
    }
}

/// An I/O error in words: what the system said, without the WASI errno number that
/// `std` appends (`(os error 44)` is WASI's ENOENT, not the host's, and helps nobody).
///
/// ```
/// let e = std::io::Error::from(std::io::ErrorKind::NotFound);
/// assert!(!wask_guest::io_words(&e).contains("os error"));
/// ```
pub fn io_words(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

impl From<String> for Error {
    fn from(message: String) -> Error {
        Error::msg(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Error {
        Error::msg(message)
    }
}

/// The result type of task code: `?` works on I/O errors, strings and [`Error`].
///
/// ```
/// fn count(task: &wask_guest::Task) -> wask_guest::Result<usize> {
///     Ok(task.inputs().len())
/// }
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The description wask writes to [`TASK_FILE`].
#[derive(Debug, Clone, serde::Deserialize)]
struct TaskFile {
    wask_task: u32,
    project_dir: String,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default)]
    outputs: Vec<String>,
}

/// The running task: its arguments, declared inputs and outputs, and its project.
///
/// Paths given to and returned by a `Task` are workspace paths: `/` is the workspace root,
/// exactly as the task sees its filesystem under wask.
#[derive(Debug, Clone)]
pub struct Task {
    args: Vec<String>,
    /// The plugin's description, when [`main!`] gave one: argument errors show its usage.
    described: Option<&'static Description>,
    project_dir: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    /// Where `/` is on the filesystem this code runs on: `/` under wask, a temporary
    /// directory in native unit tests.
    root: PathBuf,
}

impl Task {
    /// Reads the task description wask provides and the process arguments.
    ///
    /// Fails with a clear message when the program is not running under wask. Most
    /// tasks call [`run`] instead, which calls this.
    ///
    /// ```no_run
    /// let task = wask_guest::Task::load().expect("running under wask");
    /// println!("{} inputs", task.inputs().len());
    /// ```
    pub fn load() -> Result<Task> {
        let text = std::fs::read(TASK_FILE).map_err(|e| {
            Error::msg(format!(
                "cannot read {TASK_FILE} ({e}); this program is a wask task: run it with `wask run`"
            ))
        })?;
        let description: TaskFile = serde_json::from_slice(&text)
            .map_err(|e| Error::msg(format!("{TASK_FILE} is not a task description: {e}")))?;
        if description.wask_task != 1 {
            return Err(Error::msg(format!(
                "{TASK_FILE} has format {} but this task understands format 1; rebuild it with a newer wask-guest",
                description.wask_task
            )));
        }
        Ok(Task {
            args: std::env::args().skip(1).collect(),
            described: None,
            project_dir: description.project_dir,
            inputs: description.inputs,
            outputs: description.outputs,
            root: PathBuf::from("/"),
        })
    }

    /// A task built by hand, for native unit tests: workspace path `/` maps to `root`.
    ///
    /// ```
    /// let dir = std::env::temp_dir();
    /// let task = wask_guest::Task::from_parts(&dir, "/site", vec!["a.md".into()], vec![], vec![]);
    /// assert_eq!(task.resolve("a.md"), "/site/a.md");
    /// ```
    pub fn from_parts(
        root: impl Into<PathBuf>,
        project_dir: &str,
        args: Vec<String>,
        inputs: Vec<String>,
        outputs: Vec<String>,
    ) -> Task {
        Task {
            args,
            described: None,
            project_dir: project_dir.to_string(),
            inputs,
            outputs,
            root: root.into(),
        }
    }

    /// The task's `args` from `wask.toml`, in order.
    ///
    /// ```
    /// # let task = wask_guest::Task::from_parts("/", "/p", vec!["x".into()], vec![], vec![]);
    /// assert_eq!(task.args(), ["x"]);
    /// ```
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Exactly `N` arguments, or an error saying how many were given.
    ///
    /// ```
    /// # let task = wask_guest::Task::from_parts("/", "/p", vec!["a".into(), "b".into()], vec![], vec![]);
    /// let [src, out] = task.args_exact::<2>().unwrap();
    /// assert_eq!((src.as_str(), out.as_str()), ("a", "b"));
    /// assert!(task.args_exact::<3>().is_err());
    /// ```
    pub fn args_exact<const N: usize>(&self) -> Result<[String; N]> {
        <[String; N]>::try_from(self.args.clone()).map_err(|given| {
            self.usage_error(format!(
                "expected {N} argument(s) in the task's `args`, got {}: {given:?}",
                given.len()
            ))
        })
    }

    /// An error about the task's arguments: `message`, then the plugin's usage when
    /// [`main!`] described it.
    ///
    /// ```
    /// # let task = wask_guest::Task::from_parts("/", "/p", vec![], vec![], vec![]);
    /// let e = task.usage_error("unknown option --fast");
    /// assert!(e.to_string().starts_with("unknown option --fast"));
    /// ```
    pub fn usage_error(&self, message: impl fmt::Display) -> Error {
        match self.described {
            Some(d) => Error::msg(format!("{message}\n{}", d.usage_text())),
            None => Error::msg(message.to_string()),
        }
    }

    /// The value of the environment variable `name`, which the task must allow with
    /// `env.from_host` (or set with `env.set`) in `wask.toml`; if it is absent, an
    /// error saying exactly that.
    ///
    /// ```
    /// # let task = wask_guest::Task::from_parts("/", "/p", vec![], vec![], vec![]);
    /// let e = task.env("WASK_DOC_NOT_SET").unwrap_err().to_string();
    /// assert!(e.contains("env.from_host = [\"WASK_DOC_NOT_SET\"]"), "{e}");
    /// ```
    pub fn env(&self, name: &str) -> Result<String> {
        match std::env::var(name) {
            Ok(value) => Ok(value),
            Err(std::env::VarError::NotPresent) => Err(Error::msg(format!(
                "the environment variable {name} is not set: a task sees only the variables it allows; add `env.from_host = [\"{name}\"]` to the task in wask.toml (and set it where wask runs), or give it a value with `env.set`"
            ))),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::msg(format!(
                "the environment variable {name} is not valid UTF-8 text"
            ))),
        }
    }

    /// The environment variable `name` if it is set (see [`Task::env`]).
    pub fn env_opt(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    /// The project directory as a workspace path (`/site`; `/` for the root project).
    ///
    /// ```
    /// # let task = wask_guest::Task::from_parts("/", "/site", vec![], vec![], vec![]);
    /// assert_eq!(task.project_dir(), "/site");
    /// ```
    pub fn project_dir(&self) -> &str {
        &self.project_dir
    }

    /// The declared input files, as workspace paths, sorted.
    ///
    /// Globs in `wask.toml` are already expanded: this is the list of files the task sees.
    ///
    /// ```
    /// # let task = wask_guest::Task::from_parts("/", "/site", vec![], vec!["/site/a.md".into()], vec![]);
    /// for path in task.inputs() {
    ///     assert!(path.starts_with('/'));
    /// }
    /// ```
    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }

    /// The declared outputs (paths or globs) as workspace paths.
    ///
    /// ```
    /// # let task = wask_guest::Task::from_parts("/", "/site", vec![], vec![], vec!["/site/dist/**".into()]);
    /// assert_eq!(task.outputs(), ["/site/dist/**"]);
    /// ```
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    /// A path as a workspace path: absolute paths are kept, relative ones are taken from
    /// the project directory, and `.`/`..` segments are resolved lexically.
    ///
    /// ```
    /// # let task = wask_guest::Task::from_parts("/", "/site", vec![], vec![], vec![]);
    /// assert_eq!(task.resolve("pages/a.md"), "/site/pages/a.md");
    /// assert_eq!(task.resolve("../shared/x"), "/shared/x");
    /// assert_eq!(task.resolve("/abs/y"), "/abs/y");
    /// ```
    pub fn resolve(&self, path: &str) -> String {
        let joined = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("{}/{}", self.project_dir.trim_end_matches('/'), path)
        };
        let mut parts: Vec<&str> = Vec::new();
        for segment in joined.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                s => parts.push(s),
            }
        }
        format!("/{}", parts.join("/"))
    }

    /// A workspace path relative to the project directory, if it lies inside it.
    ///
    /// ```
    /// # let task = wask_guest::Task::from_parts("/", "/site", vec![], vec![], vec![]);
    /// assert_eq!(task.relative("/site/pages/a.md"), Some("pages/a.md"));
    /// assert_eq!(task.relative("/other/a.md"), None);
    /// ```
    pub fn relative<'a>(&self, path: &'a str) -> Option<&'a str> {
        if self.project_dir == "/" {
            return path.strip_prefix('/');
        }
        path.strip_prefix(self.project_dir.as_str())?
            .strip_prefix('/')
    }

    /// The declared inputs under a project-relative directory, sorted.
    ///
    /// ```
    /// # let task = wask_guest::Task::from_parts("/", "/site", vec![],
    /// #     vec!["/site/pages/a.md".into(), "/site/pages/b.md".into(), "/site/x.toml".into()], vec![]);
    /// assert_eq!(task.inputs_under("pages"), ["/site/pages/a.md", "/site/pages/b.md"]);
    /// ```
    pub fn inputs_under(&self, dir: &str) -> Vec<&str> {
        let prefix = format!("{}/", self.resolve(dir).trim_end_matches('/'));
        self.inputs
            .iter()
            .map(String::as_str)
            .filter(|p| p.starts_with(&prefix))
            .collect()
    }

    /// Where a workspace path is on the filesystem this code runs on: the path itself
    /// under wask, a path inside the test directory in native tests.
    ///
    /// ```
    /// # let task = wask_guest::Task::from_parts("/tmp/ws", "/site", vec![], vec![], vec![]);
    /// assert_eq!(task.host_path("a.md"), std::path::Path::new("/tmp/ws/site/a.md"));
    /// ```
    pub fn host_path(&self, path: &str) -> PathBuf {
        self.root.join(self.resolve(path).trim_start_matches('/'))
    }

    /// Reads a file (a project-relative or workspace path).
    ///
    /// Under wask only declared inputs exist; the error names the path and says so.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// std::fs::create_dir_all(dir.path().join("site")).unwrap();
    /// std::fs::write(dir.path().join("site/a.md"), "# A").unwrap();
    /// let task = wask_guest::Task::from_parts(dir.path(), "/site", vec![], vec![], vec![]);
    /// assert_eq!(task.read("a.md").unwrap(), b"# A");
    /// assert!(task.read("missing.md").unwrap_err().to_string().contains("inputs"));
    /// ```
    pub fn read(&self, path: &str) -> Result<Vec<u8>> {
        let resolved = self.resolve(path);
        std::fs::read(self.host_path(&resolved)).map_err(|e| self.io_error("read", &resolved, e))
    }

    /// Reads a UTF-8 text file (a project-relative or workspace path).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// std::fs::write(dir.path().join("notes.txt"), "hi").unwrap();
    /// let task = wask_guest::Task::from_parts(dir.path(), "/", vec![], vec![], vec![]);
    /// assert_eq!(task.read_string("notes.txt").unwrap(), "hi");
    /// ```
    pub fn read_string(&self, path: &str) -> Result<String> {
        let resolved = self.resolve(path);
        let bytes = self.read(&resolved)?;
        String::from_utf8(bytes)
            .map_err(|_| Error::msg(format!("{resolved} is not valid UTF-8 text")))
    }

    /// Writes an output file, creating its parent directories.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let task = wask_guest::Task::from_parts(dir.path(), "/site", vec![], vec![], vec![]);
    /// task.write_output("dist/a/b.txt", "hello").unwrap();
    /// assert_eq!(std::fs::read_to_string(dir.path().join("site/dist/a/b.txt")).unwrap(), "hello");
    /// ```
    pub fn write_output(&self, path: &str, contents: impl AsRef<[u8]>) -> Result<()> {
        let resolved = self.resolve(path);
        let target = self.host_path(&resolved);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| self.io_error("create", &resolved, e))?;
        }
        std::fs::write(&target, contents).map_err(|e| self.io_error("write", &resolved, e))
    }

    fn io_error(&self, verb: &str, path: &str, e: std::io::Error) -> Error {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound if verb == "read" => {
                " (only declared inputs exist in the sandbox: is it in the task's `inputs`?)"
            }
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                if verb != "read" =>
            {
                " (a task may write only under its declared `outputs`)"
            }
            _ => "",
        };
        Error::msg(format!("cannot {verb} {path}: {}{hint}", io_words(&e)))
    }
}

/// Logs a line to stderr, which wask shows prefixed with the task's name
/// (`[project:task] message`) and replays on a cache hit.
///
/// ```
/// wask_guest::log(format!("rendered {} pages", 3));
/// ```
pub fn log(message: impl fmt::Display) {
    eprintln!("{message}");
}

/// Runs a task body: loads the [`Task`], calls `body`, and on error prints
/// `error: <message>` to stderr and exits with status 1.
///
/// Call it from `main`; it returns only when the body succeeded. Exit status 0 makes
/// the task succeed; the `error:` line and status 1 make it fail, and its dependents
/// are skipped.
///
/// ```no_run
/// // in `main`:
/// wask_guest::run(|task| {
///     if task.inputs().is_empty() {
///         return Err("declare some `inputs` for this task".into());
///     }
///     Ok(())
/// })
/// ```
pub fn run(body: impl FnOnce(&Task) -> Result<()>) {
    run_inner(None, body)
}

/// [`run`] for a plugin that describes itself; [`main!`] calls it.
#[doc(hidden)]
pub fn run_described(description: &'static Description, body: impl FnOnce(&Task) -> Result<()>) {
    run_inner(Some(description), body)
}

fn run_inner(described: Option<&'static Description>, body: impl FnOnce(&Task) -> Result<()>) {
    // A panic is one line on stderr: `std`'s note about `RUST_BACKTRACE` would send
    // people looking for a backtrace wasm cannot print. wask then reports the abort.
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: the task panicked{at}: {message}");
    }));
    let outcome = Task::load().and_then(|mut task| {
        task.described = described;
        body(&task)
    });
    if let Err(e) = outcome {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// What a plugin says of itself: [`main!`] embeds it in the module, in the custom
/// section [`DESCRIPTION_SECTION`], for `wask describe`.
#[derive(Debug)]
pub struct Description {
    pub name: &'static str,
    pub summary: &'static str,
    pub usage: &'static str,
    pub inputs: &'static str,
    pub outputs: &'static str,
}

impl Description {
    /// The usage lines shown after an argument error.
    pub fn usage_text(&self) -> String {
        format!(
            "usage of {}: {}\n  inputs:  {}\n  outputs: {}",
            self.name, self.usage, self.inputs, self.outputs
        )
    }
}

/// The name of the wasm custom section holding a plugin's description: TOML with the
/// keys `name`, `summary`, `usage`, `inputs` and `outputs`, all strings.
pub const DESCRIPTION_SECTION: &str = "wask.describe";

/// Copies `text` into an array of its length (for a custom section's bytes).
#[doc(hidden)]
pub const fn section_bytes<const N: usize>(text: &str) -> [u8; N] {
    let bytes = text.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// A plugin's `main`, with its description embedded in the module: `wask describe`
/// prints it and argument errors ([`Task::args_exact`], [`Task::usage_error`]) end with
/// its usage. Values are plain string literals.
///
/// ```no_run
/// fn write_manifest(task: &wask_guest::Task) -> wask_guest::Result<()> {
///     let [out] = task.args_exact::<1>()?;
///     task.write_output(&out, "")
/// }
///
/// wask_guest::main! {
///     name: "checksum",
///     summary: "writes a SHA256SUMS manifest of every declared input",
///     usage: "args = [OUT_FILE]",
///     inputs: "the files to list",
///     outputs: "OUT_FILE",
///     run: write_manifest,
/// }
/// ```
#[macro_export]
macro_rules! main {
    (
        name: $name:literal,
        summary: $summary:literal,
        usage: $usage:literal,
        inputs: $inputs:literal,
        outputs: $outputs:literal,
        run: $body:expr $(,)?
    ) => {
        const WASK_DESCRIPTION_TOML: &str = concat!(
            "name = ",
            stringify!($name),
            "\n",
            "summary = ",
            stringify!($summary),
            "\n",
            "usage = ",
            stringify!($usage),
            "\n",
            "inputs = ",
            stringify!($inputs),
            "\n",
            "outputs = ",
            stringify!($outputs),
            "\n",
        );
        #[used]
        #[cfg_attr(target_family = "wasm", unsafe(link_section = "wask.describe"))]
        static WASK_DESCRIPTION_SECTION: [u8; WASK_DESCRIPTION_TOML.len()] =
            $crate::section_bytes::<{ WASK_DESCRIPTION_TOML.len() }>(WASK_DESCRIPTION_TOML);
        static WASK_DESCRIPTION: $crate::Description = $crate::Description {
            name: $name,
            summary: $summary,
            usage: $usage,
            inputs: $inputs,
            outputs: $outputs,
        };
        fn main() {
            $crate::run_described(&WASK_DESCRIPTION, $body);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn task(root: &Path) -> Task {
        Task::from_parts(root, "/site", vec![], vec![], vec![])
    }

    #[test]
    fn resolve_never_climbs_above_the_root() {
        let t = task(Path::new("/"));
        assert_eq!(t.resolve("../../../etc/passwd"), "/etc/passwd");
        assert_eq!(t.resolve("./a/./b/../c"), "/site/a/c");
    }

    #[test]
    fn root_project_paths() {
        let t = Task::from_parts("/", "/", vec![], vec![], vec![]);
        assert_eq!(t.resolve("a.md"), "/a.md");
        assert_eq!(t.relative("/a.md"), Some("a.md"));
    }

    #[test]
    fn relative_does_not_match_a_sibling_with_the_same_prefix() {
        let t = task(Path::new("/"));
        assert_eq!(t.relative("/site-old/a"), None);
    }

    #[test]
    fn reading_a_missing_file_names_it_and_hints_at_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let err = task(dir.path()).read("missing.md").unwrap_err().to_string();
        assert!(err.contains("/site/missing.md"), "{err}");
        assert!(err.contains("inputs"), "{err}");
    }

    #[test]
    fn args_exact_reports_the_count() {
        let t = Task::from_parts("/", "/", vec!["a".into()], vec![], vec![]);
        let err = t.args_exact::<2>().unwrap_err().to_string();
        assert!(err.contains("expected 2") && err.contains("got 1"), "{err}");
    }

    #[test]
    fn description_parses_what_the_host_writes() {
        let d: TaskFile = serde_json::from_str(
            r#"{"wask_task":1,"project_dir":"/p","inputs":["/p/a"],"outputs":["/p/out/**"]}"#,
        )
        .unwrap();
        assert_eq!(d.project_dir, "/p");
        assert_eq!(d.inputs, ["/p/a"]);
        assert_eq!(d.outputs, ["/p/out/**"]);
    }
}
