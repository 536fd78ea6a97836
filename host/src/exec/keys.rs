//! What deriving a task's key needs, and nothing that runs it: the workspace, the
//! graph, the cache for lookups, the host environment (read once, CACHE-008) and the
//! modules (read or built once). `wask why` and `--dry-run` use this alone; they start
//! no engine and no epoch ticker. A run adds the sandbox ([`super::RunContext`]).

use super::inputs;
use crate::cache::LocalCache;
use crate::cancel::Cancel;
use crate::graph::{Graph, Node};
use crate::key::{Digest, EnvValue, KeyParts, hash_bytes, hash_input};
use crate::modules::ModuleError;
use crate::workspace::{ClockSetting, TaskDef, Workspace};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use wask_runtime::view::InputFile;

/// A module's bytes, read once per run.
pub struct ModuleBytes {
    pub bytes: Vec<u8>,
    /// Content hash with the workspace's hash function (CACHE-005).
    pub key_digest: Digest,
}

/// Why a task's key could not be derived.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Module(Arc<ModuleError>),
    /// An input pattern could not be resolved (a literal input missing, a link leading
    /// outside, a name the path rule refuses).
    #[error("{0}")]
    Inputs(String),
    #[error(transparent)]
    Input(#[from] crate::key::InputError),
    /// Checked with the key, so a hit is no way past it (a fresh run would refuse the
    /// module before compiling it).
    #[error(
        "its module is {size} bytes, over the module size limit of {limit} bytes (`limits.module_size`)"
    )]
    ModuleTooLarge { size: u64, limit: u64 },
}

impl PrepareError {
    /// The user asked wask to stop while the key was made: the task is Cancelled.
    pub fn is_cancelled(&self) -> bool {
        match self {
            PrepareError::Input(crate::key::InputError::Cancelled(_)) => true,
            PrepareError::Module(e) => matches!(**e, ModuleError::Cancelled(_)),
            _ => false,
        }
    }
}

/// What every key of a run shares.
pub struct KeyContext<'a> {
    pub ws: &'a Workspace,
    pub graph: &'a Graph,
    pub cache: LocalCache,
    /// The host environment, read once per run (CACHE-008).
    pub host_env: HashMap<String, String>,
    /// Never inputs: the `.wask` directory and the cache.
    pub excluded: Vec<PathBuf>,
    /// The workspace's `.wask` directory.
    pub wask_dir: PathBuf,
    /// This user's key (`wask_runtime::secret`).
    pub key: wask_runtime::secret::UserKey,
    /// Set when the user asks to stop: a guest crate's build is interrupted too.
    pub cancel: Cancel,
    /// Which task last wrote each output (`.wask/outputs`), which decides what a
    /// restore or a fresh run may replace.
    pub ledger: super::ledger::Ledger,
    modules: Mutex<HashMap<String, Obtained>>,
}

/// A module read or built once per run, or why it could not be.
type Obtained = Result<Arc<ModuleBytes>, Arc<ModuleError>>;

impl<'a> KeyContext<'a> {
    pub fn new(ws: &'a Workspace, graph: &'a Graph, cancel: Cancel) -> anyhow::Result<Self> {
        let cache = LocalCache::new(ws.settings.cache_dir.clone(), ws.settings.hash)
            .stopped_by(cancel.clone());
        // A directory that is not wask's is never written to (see `cache::marker`).
        cache.claim()?;
        let wask_dir = ws.root.join(".wask");
        let mut excluded = vec![wask_dir.clone()];
        excluded.push(crate::fs::resolved(&ws.settings.cache_dir));
        excluded.push(ws.settings.cache_dir.clone());
        // The key that authenticates what wask runs from the cache: never an input, and
        // never inside the cache, which others may read.
        let mut key = None;
        if let Some(key_dir) = wask_runtime::secret::key_dir().map_err(anyhow::Error::msg)? {
            if crate::fs::is_within(&key_dir, &ws.settings.cache_dir) {
                anyhow::bail!(
                    "the user key's directory {} lies inside the cache directory {}: whoever can read the cache could forge the compiled code wask runs\n  hint: set WASK_STATE_DIR to a directory of your own outside the cache",
                    key_dir.display(),
                    ws.settings.cache_dir.display()
                );
            }
            // Made (if new) before it is resolved: a key directory reached through a
            // link into the workspace is excluded where it really is from the first run.
            key = Some(wask_runtime::secret::UserKey::load()?);
            excluded.push(crate::fs::resolved(&key_dir));
            excluded.push(key_dir);
        }
        // The signing key WASK_SIGNING_KEY names, wherever it is: never an input, and
        // never inside the cache.
        if let Some(signing) = crate::signing::key_from_environment()? {
            let resolved = crate::fs::resolved(&signing);
            let cache = crate::fs::resolved(&ws.settings.cache_dir);
            if crate::fs::is_within(&resolved, &cache) {
                anyhow::bail!(
                    "the signing key {} (WASK_SIGNING_KEY) lies inside the cache directory {}, which others may read
  hint: keep the key in a directory of your own outside the workspace and the cache",
                    signing.display(),
                    ws.settings.cache_dir.display()
                );
            }
            excluded.push(resolved);
            excluded.push(signing);
        }
        Ok(KeyContext {
            ws,
            graph,
            cache,
            host_env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            excluded,
            wask_dir: wask_dir.clone(),
            key: match key {
                Some(key) => key,
                None => wask_runtime::secret::UserKey::load()?,
            },
            cancel,
            ledger: super::ledger::Ledger::open(&wask_dir),
            modules: Mutex::new(HashMap::new()),
        })
    }

    /// Reads (or builds) a task's module once per run; a failure is remembered too, so
    /// a crate that does not build is built once.
    pub fn module(&self, def: &TaskDef) -> Result<Arc<ModuleBytes>, Arc<ModuleError>> {
        let name = &def.module.value;
        if let Some(m) = self.modules.lock().unwrap().get(name) {
            return m.clone();
        }
        let from = crate::modules::Obtain {
            ws: self.ws,
            cache_dir: self.cache.dir(),
            key: &self.key,
            cancel: &self.cancel,
        };
        let got = crate::modules::obtain(&from, &def.module_spec)
            .map(|bytes| {
                Arc::new(ModuleBytes {
                    key_digest: hash_bytes(self.ws.settings.hash, &bytes),
                    bytes,
                })
            })
            .map_err(Arc::new);
        self.modules
            .lock()
            .unwrap()
            .insert(name.clone(), got.clone());
        got
    }

    /// Obtains every module of `run_set` before anything runs, building guest crates,
    /// so that a missing toolchain target, a failed build or a pinned digest that does
    /// not match stops the run before it starts. A missing `.wasm` file is left to fail
    /// its own task. Each failure comes with the task it is for.
    pub fn prepare_modules(
        &self,
        run_set: &[usize],
    ) -> Result<(), Vec<(String, Arc<ModuleError>)>> {
        let mut errors = Vec::new();
        let mut done = std::collections::HashSet::new();
        // Every module is had before anything runs, so a wrong path is the same
        // configuration error (exit 2) whatever its form; but not one a task of the
        // workspace writes, which exists only once that task has run.
        let written = crate::graph::PathPatterns::outputs_of(self.ws);
        for &n in run_set {
            let def = self.graph.task(self.ws, n);
            if !done.insert(def.module.value.clone()) {
                continue;
            }
            if !written.matches(&def.module.value)
                && let Err(e) = self.module(def)
            {
                errors.push((self.graph.nodes[n].id.to_string(), e));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Everything about a task that is known once its key is derived.
pub struct Prepared {
    pub parts: KeyParts,
    pub key: Digest,
    pub inputs: Vec<InputFile>,
    /// The guest's environment (absent variables left out).
    pub env: Vec<(String, String)>,
    pub module: Arc<ModuleBytes>,
}

/// What a task's hard predecessors did in this run, as its key needs it.
#[derive(Default)]
pub struct Predecessors {
    /// Each one's stdout and stderr digests, in graph order.
    pub streams: Vec<(Digest, Digest)>,
    /// The outputs they left in this run (fresh or restored): what the task may read of
    /// theirs. A file that only matches their patterns (a person's, one they excluded
    /// or stopped writing) is not theirs.
    pub wrote: std::collections::HashSet<String>,
}

/// Derives a task's key (PATH-004: inputs are resolved now, after its predecessors).
pub fn prepare(
    ctx: &KeyContext<'_>,
    node: &Node,
    def: &TaskDef,
    project_dir: &str,
    preds: Predecessors,
) -> Result<Prepared, PrepareError> {
    let hash = ctx.ws.settings.hash;
    let module = ctx.module(def).map_err(PrepareError::Module)?;
    let size = module.bytes.len() as u64;
    if size > def.limits.module_bytes {
        let limit = def.limits.module_bytes;
        return Err(PrepareError::ModuleTooLarge { size, limit });
    }
    let patterns: Vec<String> = def.inputs.iter().map(|i| i.value.clone()).collect();
    let outputs: Vec<String> = def.outputs.iter().map(|o| o.value.clone()).collect();
    let written = |path: &str| preds.wrote.contains(path);
    let rules = inputs::Rules {
        excluded: &ctx.excluded,
        own_outputs: &outputs,
        predecessor_outputs: &node.predecessor_outputs,
        predecessor_wrote: &written,
        gitignore: def.gitignore,
    };
    let mut resolved =
        inputs::resolve(&ctx.ws.root, &patterns, &rules).map_err(PrepareError::Inputs)?;
    // A declared dependency's outputs are inputs too (issue 13): the files it left
    // under them in this run, less the task's own `!PATTERN` exclusions. They are known
    // by name, so nothing is walked; one a person has since removed (seen by `why`
    // between runs) is left out, as a glob would leave it out.
    if !node.dep_outputs.is_empty() {
        let theirs = crate::graph::PathPatterns::new(node.dep_outputs.iter().cloned());
        let have: std::collections::HashSet<&str> =
            resolved.iter().map(|r| r.guest_path.as_str()).collect();
        let mut from_deps: Vec<String> = preds
            .wrote
            .iter()
            .filter(|p| theirs.matches(p) && !have.contains(p.as_str()))
            .filter(|p| ctx.ws.host_path(p).symlink_metadata().is_ok())
            .cloned()
            .collect();
        if !from_deps.is_empty() {
            from_deps.extend(patterns.iter().filter(|p| p.starts_with('!')).cloned());
            let extra =
                inputs::resolve(&ctx.ws.root, &from_deps, &rules).map_err(PrepareError::Inputs)?;
            resolved.extend(extra);
            resolved.sort_by(|a, b| a.guest_path.cmp(&b.guest_path));
        }
    }
    let mut hashed = Vec::with_capacity(resolved.len());
    let mut inputs = Vec::with_capacity(resolved.len());
    for i in resolved {
        let digest = hash_input(hash, &i.host_path, &i.guest_path, &ctx.cancel)?;
        hashed.push((i.guest_path.clone(), digest));
        inputs.push(InputFile {
            guest_path: i.guest_path,
            host_path: i.host_path,
            digest: digest.0,
        });
    }
    // CACHE-008: declared names only; `env.set` wins over the host value.
    let mut view: std::collections::BTreeMap<String, EnvValue> = def
        .env_from_host
        .iter()
        .map(|n| {
            (
                n.clone(),
                ctx.host_env
                    .get(n)
                    .cloned()
                    .map(EnvValue::Value)
                    .unwrap_or(EnvValue::Absent),
            )
        })
        .collect();
    for (k, v) in &def.env_set {
        view.insert(k.clone(), EnvValue::Value(v.clone()));
    }
    let env = view
        .iter()
        .filter_map(|(k, v)| match v {
            EnvValue::Value(v) => Some((k.clone(), v.clone())),
            EnvValue::Absent => None,
        })
        .collect();
    let parts = KeyParts {
        hash,
        module: module.key_digest,
        args: def.args.clone(),
        project_dir: project_dir.to_string(),
        inputs: hashed,
        // Exclusions change what a run leaves, so they are part of the key, marked `!`.
        outputs: def
            .outputs
            .iter()
            .map(|o| o.value.clone())
            .chain(
                def.output_exclusions
                    .iter()
                    .map(|o| format!("!{}", o.value)),
            )
            .collect(),
        predecessors: preds.streams,
        env: view.into_iter().collect(),
        fixed_clock_epoch: match def.clock {
            ClockSetting::Fixed => Some(ctx.ws.settings.epoch_seconds),
            ClockSetting::Host => None,
        },
    };
    Ok(Prepared {
        key: parts.key(),
        parts,
        inputs,
        env,
        module,
    })
}
