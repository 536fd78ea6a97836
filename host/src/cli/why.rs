//! `wask why REF...`: a task's cache key part by part, whether it is a hit, and for a
//! miss what changed since the last entry this task stored.

use super::{CliError, EXIT_OK};
use crate::audit::{NeverRead, never_read, never_read_text};
use crate::cache::AccessRecord;
use crate::exec::KeyContext;
use crate::exec::plan::{Planned, plan};
use crate::explain::{ExplainStore, Explained};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Args)]
pub struct WhyArgs {
    /// The tasks to explain (`project:task`, `~:task`, ...); their hard predecessors are
    /// planned too, since their outputs are part of the key.
    #[arg(value_name = "REFS", required = true)]
    refs: Vec<String>,
    /// Print JSON: for each task its state (`hit`, `miss`, `unknown`), key, parts and
    /// changes.
    #[arg(long)]
    json: bool,
}

pub fn why(directory: Option<PathBuf>, args: WhyArgs) -> Result<i32, CliError> {
    let dir = super::start_dir(directory)?;
    let (ws, graph) = super::load(&dir)?;
    let selected = super::run::resolve_refs(&ws, &graph, &dir, &args.refs)?;
    let run_set = graph.run_set(&selected);
    // Keys only: `why` starts no engine.
    let cancel = crate::cancel::Cancel::on_signals()
        .map_err(|e| anyhow::anyhow!("cannot install the signal handlers: {e}"))?;
    let ctx = KeyContext::new(&ws, &graph, cancel.clone())?;
    let history = ExplainStore::new(&ctx.wask_dir);
    let mut reports = Vec::new();
    for (n, planned) in plan(&ctx, &run_set) {
        if selected.contains(&n) {
            reports.push(report(&ctx, &history, n, planned));
        }
    }
    if let Some(settings) = &ws.settings.remote {
        ask_the_remote(settings, &ws, &mut reports);
    }
    if args.json {
        let text = serde_json::to_string_pretty(&serde_json::json!({ "tasks": reports }))
            .expect("JSON serialises");
        println!("{text}");
    } else {
        for (i, r) in reports.iter().enumerate() {
            if i > 0 {
                println!();
            }
            r.print();
        }
    }
    // A guest crate's build interrupted: the reports above say so; the exit code too.
    Ok(cancel.signal().map_or(EXIT_OK, |signal| 128 + signal))
}

/// For each local miss, what the remote cache holds: whether `wask run` would download
/// a trusted entry, or why not.
fn ask_the_remote(
    settings: &crate::workspace::RemoteSettings,
    ws: &crate::workspace::Workspace,
    reports: &mut [Report],
) {
    let remote = crate::cache::remote::RemoteCache::open(
        settings,
        ws.settings.hash,
        &crate::cancel::Cancel::never(),
    );
    for r in reports.iter_mut() {
        let Detail::Known(k) = &mut r.detail else {
            continue;
        };
        if r.state == State::Hit || !settings.read {
            continue;
        }
        let Some(key) = crate::key::Digest::from_hex(&k.key) else {
            continue;
        };
        k.remote = Some(match &remote {
            Err(e) => format!("cannot be asked: {e}"),
            Ok(remote) => match remote.probe(&key) {
                Ok(Some(signer)) => format!(
                    "{} holds an entry signed by trusted key {signer}: `wask run` downloads it (and checks every byte of it then)",
                    settings.url
                ),
                Ok(None) => format!("{} holds no entry for this key", settings.url),
                Err(why) => format!("{}: {why}", settings.url),
            },
        });
    }
}

/// What `wask why` says of one task; `--json` prints it as it is.
#[derive(Serialize)]
struct Report {
    id: String,
    state: State,
    #[serde(flatten)]
    detail: Detail,
}

#[derive(Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum State {
    Hit,
    Miss,
    Unknown,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Detail {
    /// The key cannot be known before running something.
    Unknown {
        reason: String,
    },
    Known(Box<Known>),
}

/// A task whose key is known: the key's parts, and the entry it finds or why it misses.
#[derive(Serialize)]
struct Known {
    key: String,
    /// The module as the workspace names it (the parts hold its hash).
    module_path: String,
    parts: Explained,
    /// The hit's entry: when and by which task it was stored.
    stored_at: Option<String>,
    stored_by: Option<String>,
    /// Whether this task has stored an entry before (so a miss can say what changed).
    has_history: bool,
    /// SANDBOX-009: what the stored run opened and was refused.
    access: Option<AccessRecord>,
    /// What changed since the task's last entry, for a miss.
    changes: Option<Vec<String>>,
    /// The hard predecessors whose streams are part of the key.
    predecessors: Vec<String>,
    /// An entry exists but does not fit the task's limits: why.
    unfit: Option<String>,
    /// For a hit: declared inputs the stored run never opened, each with the `inputs`
    /// entry that brought it in (each one a needless miss when it changes).
    never_read: Option<Vec<NeverRead>>,
    /// For a local miss, what the remote cache holds for the key, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    remote: Option<String>,
}

fn report(ctx: &KeyContext<'_>, history: &ExplainStore, n: usize, planned: Planned) -> Report {
    let node = &ctx.graph.nodes[n];
    let id = node.id.to_string();
    let unknown = |reason: String| Report {
        id: id.clone(),
        state: State::Unknown,
        detail: Detail::Unknown { reason },
    };
    let (prepared, entry, unfit) = match planned {
        Planned::AfterRunning(preds) => {
            let names: Vec<String> = preds.iter().map(ToString::to_string).collect();
            return unknown(format!(
                "the key depends on the output of {}, which is not in the cache and would run first",
                names.join(", ")
            ));
        }
        Planned::Error(e) => return unknown(e),
        Planned::Known {
            prepared,
            entry,
            unfit,
            ..
        } => (prepared, entry, unfit),
    };
    let now = Explained::new(&prepared.parts, &ctx.key);
    let last = history.last(&node.id);
    let changes = match (&entry, &last) {
        (None, Some(last)) => Some(now.changes_since(last)),
        _ => None,
    };
    let stored_at = |created_at: u64| {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(created_at);
        humantime::format_rfc3339_seconds(at).to_string()
    };
    Report {
        id,
        state: if entry.is_some() {
            State::Hit
        } else {
            State::Miss
        },
        detail: Detail::Known(Box::new(Known {
            key: now.key.clone(),
            module_path: ctx.graph.task(ctx.ws, n).module.value.clone(),
            stored_at: entry.as_ref().map(|e| stored_at(e.manifest.created_at)),
            stored_by: entry.as_ref().map(|e| e.manifest.stored_by.clone()),
            has_history: last.is_some(),
            access: entry.as_ref().map(|e| e.manifest.access.clone()),
            changes,
            predecessors: node
                .hard
                .iter()
                .map(|p| ctx.graph.nodes[*p].id.to_string())
                .collect(),
            unfit,
            never_read: entry.as_ref().and_then(|e| {
                let opened = e.manifest.access.opened.iter().map(String::as_str);
                never_read(ctx.graph.task(ctx.ws, n), &prepared, opened.collect())
            }),
            remote: None,
            parts: now,
        })),
    }
}

impl Report {
    fn print(&self) {
        let known = match &self.detail {
            Detail::Unknown { reason } => {
                println!("{}: key not known yet", self.id);
                println!("  {reason}");
                return;
            }
            Detail::Known(k) => k,
        };
        let state = if self.state == State::Hit {
            "hit"
        } else {
            "miss"
        };
        println!("{}: {state}", self.id);
        known.print_parts();
        known.print_verdict(self.state);
    }
}

impl Known {
    /// The key and each of its parts.
    fn print_parts(&self) {
        let p = &self.parts;
        println!("  key          {} ({})", self.key, p.hash);
        println!("  module       {}  {}", self.module_path, p.module);
        println!("  args         {:?}", p.args);
        println!("  project dir  {}", p.project_dir);
        let s = if p.inputs.len() == 1 { "" } else { "s" };
        println!("  inputs       {} file{s}", p.inputs.len());
        for (path, hash) in &p.inputs {
            println!("    {path}  {hash}");
        }
        println!("  outputs      {:?}", p.outputs);
        if self.predecessors.is_empty() {
            println!("  after        (no hard predecessors)");
        }
        for (pred, (stdout, stderr)) in self.predecessors.iter().zip(&p.predecessors) {
            println!("  after        {pred}  stdout {stdout}  stderr {stderr}");
        }
        if p.env.is_empty() {
            println!("  env          (none declared)");
        }
        for (name, v) in &p.env {
            println!("  env          {name}: {v}");
        }
        println!("  sandbox      clock {}", p.clock);
    }

    /// Hit or miss, and why.
    fn print_verdict(&self, state: State) {
        if state == State::Hit {
            println!(
                "  hit: the entry stored by {} at {} is restored",
                self.stored_by.as_deref().unwrap_or_default(),
                self.stored_at.as_deref().unwrap_or_default()
            );
            let access = self.access.clone().unwrap_or_default();
            let opened = access.opened.join(", ");
            println!(
                "  inputs it read: {}",
                if opened.is_empty() { "(none)" } else { &opened }
            );
            if !access.refused.is_empty() {
                println!("  it tried undeclared paths: {}", access.refused.join(", "));
            }
            if let Some(never) = never_read_text(self.never_read.as_deref()) {
                println!(
                    "  declared, never read: {never} (each one a needless cache miss when it changes)"
                );
            }
            return;
        }
        if let Some(remote) = &self.remote {
            println!("  remote: {remote}");
        }
        if let Some(why) = &self.unfit {
            println!("  miss: an entry has this key, but {why}, so a run now would not give it");
        } else if !self.has_history {
            println!("  miss: this task has stored no entry in this cache yet");
        } else {
            match self.changes.as_deref().unwrap_or_default() {
                [] => println!(
                    "  miss: the parts equal those of its last entry, which is no longer in the cache"
                ),
                changes => {
                    println!("  miss: since its last entry");
                    for c in changes {
                        println!("    - {c}");
                    }
                }
            }
        }
    }
}
