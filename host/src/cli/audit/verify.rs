//! `wask audit verify FILE... [--key PUB]`: check each provenance envelope's signature,
//! then run its task again in this workspace from what the statement records and check
//! that every subject comes out bit for bit (AUDIT-002). Exit 0 verified, 1 when a
//! signature, an input or a subject does not match, 2 when a file is not provenance.

use super::run_predecessors;
use crate::cli::{CliError, EXIT_OK, EXIT_TASK_FAILED};
use crate::exec::keys::Prepared;
use crate::exec::observer::Silent;
use crate::exec::plan::{Planned, plan};
use crate::exec::record::TaskRecord;
use crate::exec::{self, KeyContext, RunContext};
use crate::signing::{self, Envelope, PublicKey, SigningKeyFile, verified_payload};
use serde_json::Value;
use sha2::Digest as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One statement to check: where it came from, and what it records.
struct Claim {
    shown: String,
    task: String,
    /// Subject name to its recorded sha256.
    subjects: BTreeMap<String, String>,
    /// Dependency name to its recorded sha256.
    dependencies: BTreeMap<String, String>,
    /// The declaration the statement records: arguments, `env.set`, output patterns.
    declared: Value,
}

pub fn verify(
    directory: Option<PathBuf>,
    files: &[PathBuf],
    key: Option<&Path>,
) -> Result<i32, CliError> {
    let public = match key {
        Some(path) => {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                CliError::Usage(format!("cannot read the key {}: {e}", path.display()))
            })?;
            PublicKey::from_pem(&pem)
                .map_err(|e| CliError::Usage(format!("the key {}: {e}", path.display())))?
        }
        None => SigningKeyFile::load()
            .map_err(anyhow::Error::from)?
            .public(),
    };
    let mut claims = Vec::new();
    let mut bad = Vec::new();
    for file in files {
        for (shown, envelope) in envelopes(file)? {
            match verified_payload(&envelope, signing::IN_TOTO, &[public]) {
                Ok((payload, _)) => claims.push(claim(&shown, &payload)?),
                Err(why) => bad.push(format!("{shown}: {why}")),
            }
        }
    }
    let dir = crate::cli::start_dir(directory)?;
    let (ws, graph) = crate::cli::load(&dir)?;
    let mut nodes = Vec::new();
    for c in &claims {
        let found = crate::cli::run::resolve_refs(&ws, &graph, &dir, std::slice::from_ref(&c.task))
            .map_err(|_| {
                CliError::Usage(format!(
                    "{}: its task {} is not in this workspace",
                    c.shown, c.task
                ))
            })?;
        nodes.push(found[0]);
    }
    let cancel = crate::cancel::Cancel::on_signals()
        .map_err(|e| anyhow::anyhow!("cannot install the signal handlers: {e}"))?;
    let keys = KeyContext::new(&ws, &graph, cancel.clone())?;
    let run_set = graph.run_set(&nodes);
    keys.prepare_modules(&run_set).map_err(CliError::Modules)?;
    let ctx = RunContext::new(keys, &Silent, exec::compile_in_child())?;
    let failed_before = run_predecessors(&ctx, &nodes, &cancel);
    let mut plans: BTreeMap<usize, Planned> = plan(&ctx.keys, &run_set).into_iter().collect();
    for (c, n) in claims.iter().zip(&nodes) {
        let outcome = match plans.remove(n) {
            Some(Planned::Known { prepared, .. }) => check(&ctx, *n, &prepared, c),
            Some(Planned::Error(e)) => Err(vec![e]),
            _ => Err(vec![format!(
                "its predecessors did not succeed{}",
                failed_before
                    .as_deref()
                    .map(|f| format!(": {f}"))
                    .unwrap_or_default()
            )]),
        };
        match outcome {
            Ok(n) => println!(
                "verified {} ({}): {n} subjects reproduced bit for bit",
                c.shown, c.task
            ),
            Err(problems) => bad.extend(
                problems
                    .into_iter()
                    .map(|p| format!("{} ({}): {p}", c.shown, c.task)),
            ),
        }
    }
    if let Some(signal) = cancel.signal() {
        return Ok(128 + signal);
    }
    for b in &bad {
        println!("NOT VERIFIED {b}");
    }
    Ok(if bad.is_empty() {
        EXIT_OK
    } else {
        EXIT_TASK_FAILED
    })
}

/// The envelopes of `file`, one per non-empty line, each shown as `FILE:LINE`.
fn envelopes(file: &Path) -> Result<Vec<(String, Envelope)>, CliError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let shown = format!("{}:{}", file.display(), i + 1);
        let envelope = serde_json::from_str(line).map_err(|e| {
            CliError::Usage(format!(
                "{shown} is not a DSSE envelope ({e}); expected one JSON object per line with `payload`, `payloadType` and `signatures`"
            ))
        })?;
        out.push((shown, envelope));
    }
    if out.is_empty() {
        return Err(CliError::Usage(format!(
            "{} holds no envelope",
            file.display()
        )));
    }
    Ok(out)
}

/// What a signed statement claims, or why it is not wask provenance.
fn claim(shown: &str, payload: &[u8]) -> Result<Claim, CliError> {
    let not = |what: &str| CliError::Usage(format!("{shown} is not wask provenance: {what}"));
    let s: Value = serde_json::from_slice(payload)
        .map_err(|e| not(&format!("its payload is not JSON ({e})")))?;
    if s["_type"] != crate::audit::provenance::STATEMENT_TYPE
        || s["predicateType"] != crate::audit::provenance::PREDICATE_TYPE
    {
        return Err(not("not an in-toto Statement v1 with SLSA Provenance v1"));
    }
    let definition = &s["predicate"]["buildDefinition"];
    if definition["buildType"] != crate::audit::provenance::BUILD_TYPE {
        return Err(not("its build type is not a wask task's"));
    }
    let task = definition["externalParameters"]["task"]
        .as_str()
        .ok_or_else(|| not("it names no task"))?
        .to_string();
    let sha256s = |list: &Value, what: &str| -> Result<BTreeMap<String, String>, CliError> {
        let list = list
            .as_array()
            .ok_or_else(|| not(&format!("it has no {what} list")))?;
        list.iter()
            .map(
                |d| match (d["name"].as_str(), d["digest"]["sha256"].as_str()) {
                    (Some(n), Some(h)) => Ok((n.to_string(), h.to_string())),
                    _ => Err(not(&format!("a {what} without a name and a sha256 digest"))),
                },
            )
            .collect()
    };
    Ok(Claim {
        shown: shown.to_string(),
        task,
        subjects: sha256s(&s["subject"], "subject")?,
        dependencies: sha256s(&definition["resolvedDependencies"], "dependency")?,
        declared: declaration(&definition["externalParameters"]),
    })
}

/// The parts of a task's declaration that decide its outputs besides its files.
fn declaration(external: &Value) -> Value {
    serde_json::json!({
        "args": external["args"],
        "env": external["env"],
        "outputs": external["outputs"],
    })
}

fn sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks the task's inputs against the record, runs it, and checks every subject:
/// the number of subjects reproduced, or every mismatch.
fn check(
    ctx: &RunContext<'_>,
    n: usize,
    prepared: &Prepared,
    claim: &Claim,
) -> Result<usize, Vec<String>> {
    let graph = ctx.keys.graph;
    let id = &graph.nodes[n].id;
    let def = graph.task(ctx.keys.ws, n);
    let mut now: BTreeMap<String, String> = BTreeMap::new();
    now.insert(
        format!("module:{}", def.module.value),
        sha256(&prepared.module.bytes),
    );
    for input in &prepared.inputs {
        let bytes = std::fs::read(&input.host_path).unwrap_or_default();
        now.insert(
            input.guest_path.trim_start_matches('/').to_string(),
            sha256(&bytes),
        );
    }
    let today = declaration(&serde_json::json!({
        "args": def.args,
        "env": def.env_set,
        "outputs": prepared.parts.outputs,
    }));
    if today != claim.declared {
        return Err(vec![format!(
            "the task is declared otherwise than the record says: recorded {}, now {}",
            claim.declared, today
        )]);
    }
    let problems = differences(&claim.dependencies, &now, "input");
    if !problems.is_empty() {
        return Err(problems);
    }
    let project_dir = &ctx.keys.ws.projects[graph.nodes[n].project].dir;
    let mut record = TaskRecord::new(id.clone());
    let run = exec::fresh::execute(ctx, id, def, project_dir, prepared, &mut record)
        .map_err(|e| vec![format!("the run failed: {e}")])?;
    let mut made: BTreeMap<String, String> = BTreeMap::new();
    for out in &run.produced {
        let bytes = std::fs::read(&out.file).unwrap_or_default();
        made.insert(out.path.trim_start_matches('/').to_string(), sha256(&bytes));
    }
    made.insert(format!("{id}#stdout"), sha256(&run.outcome.stdout));
    made.insert(format!("{id}#stderr"), sha256(&run.outcome.stderr));
    let problems = differences(&claim.subjects, &made, "subject");
    if problems.is_empty() {
        Ok(made.len())
    } else {
        Err(problems)
    }
}

/// Each name whose sha256 is not what `recorded` says, in words.
fn differences(
    recorded: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
    what: &str,
) -> Vec<String> {
    let names: std::collections::BTreeSet<&String> = recorded.keys().chain(now.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| match (recorded.get(name), now.get(name)) {
            (Some(a), Some(b)) if a == b => None,
            (Some(a), Some(b)) => Some(format!(
                "{what} {name} differs: recorded sha256 {a}, now {b}"
            )),
            (Some(_), None) => Some(format!("{what} {name} is recorded but not there now")),
            (None, Some(_)) => Some(format!("{what} {name} is there now but not recorded")),
            (None, None) => None,
        })
        .collect()
}
