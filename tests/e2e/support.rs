//! Helpers shared by the end-to-end tests.

use proptest::prelude::Rng as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// A workspace in a temporary directory.
pub struct Ws {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Ws {
    pub fn new() -> Ws {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        Ws { _dir: dir, root }
    }

    /// Writes a file, creating parent directories.
    pub fn write(&self, rel: &str, text: impl AsRef<[u8]>) -> &Ws {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.root.join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Copies the probe guest to `/tools/probe.wasm`.
    pub fn with_probe(&self) -> &Ws {
        std::fs::create_dir_all(self.root.join("tools")).unwrap();
        std::fs::copy(probe_wasm(), self.root.join("tools/probe.wasm")).unwrap();
        self
    }

    /// Runs `wask ARGS` in the workspace root, with a clean environment.
    pub fn wask(&self, args: &[&str]) -> Run {
        self.wask_env(args, &[])
    }

    pub fn wask_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run(cmd.output().unwrap())
    }

    /// `wask ARGS` in the workspace root, not yet started: for tests that signal it
    /// or run several at once.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(wask_binary());
        cmd.current_dir(&self.root)
            .args(args)
            .env_remove("WASK_CACHE_DIR")
            .env("NO_COLOR", "1");
        cmd
    }

    /// `wask ARGS` started with its output piped, for tests that act while it runs.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs `wask run ARGS --summary` and returns the run and the parsed summary.
    pub fn run(&self, args: &[&str]) -> (Run, serde_json::Value) {
        let summary = self.root.join(".wask-summary.json");
        let _ = std::fs::remove_file(&summary);
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--summary", summary.to_str().unwrap()]);
        let run = self.wask(&all);
        let json = std::fs::read(&summary)
            .map(|b| serde_json::from_slice(&b).unwrap())
            .unwrap_or(serde_json::Value::Null);
        (run, json)
    }
}

/// The binary under test: this build's `wask`, or `WASK_TEST_BINARY` (to show that a
/// test fails against an older build, as the hardening suite's tests do).
pub fn wask_binary() -> std::path::PathBuf {
    std::env::var_os("WASK_TEST_BINARY")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_wask-under-test").into())
}

/// The output of one `wask` invocation.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code(),
            code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// The record of task `id` in a summary.
#[track_caller]
pub fn task<'a>(summary: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    summary["tasks"]
        .as_array()
        .expect("summary has tasks")
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no task {id} in {summary:#}"))
}

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The release output directory of the guest workspace at `dir` (relative to the
/// repository), after `scripts/build-guests.sh rust` (the one place guests are built)
/// has brought every Rust guest up to date, once per test binary.
fn build_guests(dir: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new("bash")
            .arg(repo_root().join("scripts/build-guests.sh"))
            .arg("rust")
            .stdout(std::process::Stdio::null())
            .status()
            .expect("bash runs");
        assert!(status.success(), "scripts/build-guests.sh rust failed");
    });
    repo_root().join(dir).join("target/wasm32-wasip1/release")
}

/// The probe guest (`tests/guests/probe`), built once per test binary.
pub fn probe_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| build_guests("tests/guests").join("probe.wasm"))
}

/// The module of example plugin `name` (`examples/plugins`), built once per test binary.
pub fn plugin_wasm(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build_guests("examples/plugins"))
        .join(format!("{name}.wasm"))
}

/// `(module (memory (export "memory") 1) (func (export "_start")))`
pub const NOOP_WASM: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02,
    0x01, 0x00, 0x05, 0x03, 0x01, 0x00, 0x01, 0x07, 0x13, 0x02, 0x06, b'm', b'e', b'm', b'o', b'r',
    b'y', 0x02, 0x00, 0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x00, 0x0a, 0x04, 0x01, 0x02,
    0x00, 0x0b,
];

/// The hostile guest (`tests/guests/hostile`), built once per test binary.
pub fn hostile_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| build_guests("tests/guests").join("hostile.wasm"))
}

/// The SDK guest (`tests/guests/sdk`, written with `wask_guest::main!`), built once per
/// test binary.
pub fn sdk_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| build_guests("tests/guests").join("sdk.wasm"))
}

/// A seeded generator (proptest's ChaCha `TestRng`): tests that try random moments or
/// positions print their seed and replay exactly with `WASK_TEST_SEED`.
pub struct Rng(proptest::test_runner::TestRng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        Rng(proptest::test_runner::TestRng::from_seed(
            proptest::test_runner::RngAlgorithm::ChaCha,
            &key,
        ))
    }

    /// Seeded from `WASK_TEST_SEED` when set, else from `default`.
    pub fn from_env(default: u64) -> Rng {
        let seed = std::env::var("WASK_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        eprintln!("seed {seed} (set WASK_TEST_SEED to replay)");
        Rng::new(seed)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        self.0.fill_bytes(&mut out);
        out
    }
}

/// Sets the modification time of `path` to the start of 2020: an edit that keeps an
/// old time stamp, as an archive or a careful attacker leaves it.
pub fn backdate(path: &Path) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_577_836_800),
        )
        .unwrap();
}

/// Waits up to two minutes for `path` to exist (a marker a build step writes).
#[track_caller]
pub fn appears(path: &Path) {
    let start = std::time::Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A counter of `/proc/PID/io` (`rchar`, `wchar`): the bytes process `pid` has read or
/// written so far.
pub fn io_counter(pid: u32, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(": ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Sends SIGTERM to process `pid`.
pub fn terminate(pid: u32) {
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// A new Ed25519 key made by openssl (PKCS#8 PEM, mode 600) at `dir/k.pem`: a key
/// wask did not write, for `WASK_SIGNING_KEY`.
pub fn openssl_key(dir: &Path) -> PathBuf {
    let key = dir.join("k.pem");
    let made = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success(), "openssl genpkey");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    key
}

/// A FIFO named `fifo` in `dir`: what a reader that opens files blocking would wait on
/// for ever.
pub fn fifo(dir: &Path) -> PathBuf {
    let fifo = dir.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    fifo
}

impl Ws {
    /// Runs git in the workspace as a fixed author, unsigned; fails the test if it fails.
    pub fn git(&self, args: &[&str]) {
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.root)
            .args(["-c", "user.name=t", "-c", "user.email=t@localhost"])
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The ids of the tasks a run's summary holds, sorted.
pub fn task_ids(summary: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = summary["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// A WebAssembly module holding nothing but the custom section `name` with `data`.
pub fn module_with_section(name: &str, data: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(data);
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.push(0);
    leb(body.len(), &mut module);
    module.extend(body);
    module
}
