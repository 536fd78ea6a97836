//! The serde schema of `wask.toml`: every table and key a file may hold, with spans, and
//! nothing else (unknown keys are errors, WS-003). What the values mean is
//! [`super::lower`]'s.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) workspace: Option<Spanned<RawWorkspace>>,
    pub(super) project: Option<Spanned<RawProject>>,
    #[serde(default)]
    pub(super) tasks: BTreeMap<Spanned<String>, Spanned<RawTask>>,
    pub(super) cache: Option<Spanned<RawCache>>,
    pub(super) concurrency: Option<Spanned<RawConcurrency>>,
    pub(super) output: Option<Spanned<RawOutput>>,
    pub(super) sandbox: Option<Spanned<RawSandbox>>,
    #[serde(default)]
    pub(super) overlays: BTreeMap<Spanned<String>, Spanned<RawOverlay>>,
}

/// `[overlays.NAME]` (WS-006): tasks attached to every project whose tags match.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOverlay {
    pub(super) tags: Spanned<String>,
    #[serde(default)]
    pub(super) tasks: BTreeMap<Spanned<String>, Spanned<RawTask>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkspace {
    pub(super) projects: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProject {
    pub(super) name: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) tags: Vec<Spanned<String>>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTask {
    pub(super) module: Spanned<RawModule>,
    #[serde(default)]
    pub(super) args: Vec<String>,
    #[serde(default)]
    pub(super) inputs: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) outputs: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) deps: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) weak_deps: Vec<Spanned<String>>,
    pub(super) mutex: Option<Spanned<RawMutex>>,
    pub(super) env: Option<RawEnv>,
    pub(super) limits: Option<RawLimits>,
    pub(super) clock: Option<Spanned<String>>,
    /// `false` makes input globs read files `.gitignore` ignores, too.
    pub(super) gitignore: Option<bool>,
    pub(super) description: Option<String>,
}

/// `module = "x.wasm"`, `{ path = "x.wasm", blake3 = "..." }` or
/// `{ crate = "/plugins/x", blake3 = "..." }`.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum RawModule {
    Path(String),
    Table(RawModuleTable),
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModuleTable {
    pub(super) path: Option<String>,
    #[serde(rename = "crate")]
    pub(super) crate_dir: Option<String>,
    pub(super) blake3: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum RawMutex {
    Name(String),
    Table(RawMutexTable),
}

/// `mutex = { name = "...", scope = "...", mode = "..." }`: unknown keys refused here
/// too (WS-003; a misspelt `scope` was silently a workspace-wide lock).
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMutexTable {
    pub(super) name: String,
    pub(super) scope: Option<String>,
    pub(super) mode: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnv {
    #[serde(default)]
    pub(super) from_host: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) set: BTreeMap<Spanned<String>, String>,
}

/// A size, count or duration: a whole number, or text with a unit (`"512MiB"`, `"30s"`).
#[derive(Clone)]
pub(super) enum Amount {
    Number(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Amount;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a whole number, or a string with a unit such as \"512MiB\" or \"30s\"")
            }
            fn visit_u64<E>(self, n: u64) -> Result<Amount, E> {
                Ok(Amount::Number(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Amount, E> {
                u64::try_from(n).map(Amount::Number).map_err(|_| {
                    E::invalid_value(serde::de::Unexpected::Signed(n), &"a number of at least 0")
                })
            }
            fn visit_str<E>(self, text: &str) -> Result<Amount, E> {
                Ok(Amount::Text(text.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Per-task `limits = { ... }`; `[sandbox]` takes the same keys as defaults.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) memory: Option<Spanned<Amount>>,
    pub(super) timeout: Option<Spanned<Amount>>,
    pub(super) output: Option<Spanned<Amount>>,
    pub(super) outputs_size: Option<Spanned<Amount>>,
    pub(super) outputs_count: Option<Spanned<Amount>>,
    pub(super) module_size: Option<Spanned<Amount>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    pub(super) hash: Option<Spanned<String>>,
    pub(super) dir: Option<Spanned<String>>,
    pub(super) max_age: Option<Spanned<Amount>>,
    pub(super) max_size: Option<Spanned<Amount>>,
    pub(super) remote: Option<Spanned<RawRemote>>,
}

/// `[cache.remote]`: a shared cache server.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRemote {
    pub(super) url: Option<Spanned<String>>,
    pub(super) read: Option<bool>,
    pub(super) write: Option<bool>,
    pub(super) timeout: Option<Spanned<Amount>>,
    pub(super) instance_name: Option<String>,
    #[serde(default)]
    pub(super) headers: BTreeMap<Spanned<String>, String>,
    #[serde(default)]
    pub(super) trusted_keys: Vec<Spanned<String>>,
    pub(super) ca_file: Option<Spanned<String>>,
    pub(super) client_cert: Option<Spanned<String>>,
    pub(super) client_key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConcurrency {
    pub(super) default: Option<Spanned<Amount>>,
    #[serde(default)]
    pub(super) tags: BTreeMap<Spanned<String>, Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutput {
    pub(super) mode: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSandbox {
    pub(super) memory: Option<Spanned<Amount>>,
    pub(super) timeout: Option<Spanned<Amount>>,
    pub(super) output: Option<Spanned<Amount>>,
    pub(super) outputs_size: Option<Spanned<Amount>>,
    pub(super) outputs_count: Option<Spanned<Amount>>,
    pub(super) module_size: Option<Spanned<Amount>>,
    pub(super) clock: Option<Spanned<String>>,
    pub(super) epoch: Option<Spanned<u64>>,
}

impl RawSandbox {
    pub(super) fn limits(&self) -> RawLimits {
        RawLimits {
            memory: self.memory.clone(),
            timeout: self.timeout.clone(),
            output: self.output.clone(),
            outputs_size: self.outputs_size.clone(),
            outputs_count: self.outputs_count.clone(),
            module_size: self.module_size.clone(),
        }
    }
}
