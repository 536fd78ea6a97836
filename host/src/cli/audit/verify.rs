//! `wask audit verify FILE... [--key PUB]`: check each provenance envelope's signature,
//! then run its task again in this workspace from what the statement records and check
//! that every subject comes out bit for bit (AUDIT-002). Exit 0 verified, 1 when a
//! signature, an input or a subject does not match, 2 when a file is not provenance.
//!
//! Nothing a statement says is taken on its word: the build definition is rebuilt from
//! this checkout (the task as declared here, its sandbox settings, every input's and
//! the module's digests) and must be the recorded one exactly, before anything runs;
//! then the subjects (every digest of every one, in order) and the access record of
//! the run must be the recorded ones exactly too.

use super::run_predecessors;
use crate::audit::provenance;
use crate::cli::{CliError, EXIT_OK, EXIT_TASK_FAILED};
use crate::exec::keys::Prepared;
use crate::exec::observer::Silent;
use crate::exec::plan::{Planned, plan};
use crate::exec::record::TaskRecord;
use crate::exec::{self, KeyContext, RunContext};
use crate::signing::{self, Envelope, PublicKey, SigningKeyFile, verified_payload};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One statement to check: where it came from, and what it records.
struct Claim {
    shown: String,
    task: String,
    definition: Value,
    subjects: Value,
    byproducts: Value,
}

/// A provenance file is one envelope per task: far below this.
const MAX_FILE: u64 = 64 << 20;
/// A PEM public key is a few hundred bytes.
const MAX_KEY: u64 = 64 << 10;

/// A file's text, read no further than `limit` and never from a FIFO or a device
/// (the user named it, so a link to it is followed).
fn read_text(path: &Path, limit: u64, what: &str) -> Result<String, CliError> {
    crate::fs::read_named_text(path, limit)
        .map_err(|why| CliError::Usage(format!("cannot read the {what} {}: {why}", path.display())))
}

pub fn verify(
    directory: Option<PathBuf>,
    files: &[PathBuf],
    key: Option<&Path>,
) -> Result<i32, CliError> {
    let public = match key {
        Some(path) => {
            let pem = read_text(path, MAX_KEY, "key")?;
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
                Ok((payload, _)) => {
                    let c = claim(&shown, &payload)?;
                    match as_written(&payload) {
                        Ok(()) => claims.push(c),
                        Err(why) => bad.push(format!("{shown}: {why}")),
                    }
                }
                Err(why) => bad.push(format!("{shown}: {why}")),
            }
        }
    }
    let dir = crate::cli::start_dir(directory)?;
    let (ws, graph) = crate::cli::load(&dir)?;
    let mut nodes = Vec::new();
    for c in &claims {
        // Exactly `project:task`, as wask writes it: never a pattern.
        let found = graph.nodes.iter().position(|n| n.id.to_string() == c.task);
        let Some(n) = found else {
            return Err(CliError::Usage(format!(
                "{}: its task `{}` is not a task of this workspace (named project:task)",
                c.shown, c.task
            )));
        };
        nodes.push(n);
    }
    let cancel = crate::cancel::Cancel::on_signals()
        .map_err(|e| anyhow::anyhow!("cannot install the signal handlers: {e}"))?;
    let keys = KeyContext::new(&ws, &graph, cancel.clone())?;
    let run_set = graph.run_set(&nodes);
    keys.prepare_modules(&run_set).map_err(CliError::Modules)?;
    let mut ctx = RunContext::new(keys, &Silent, exec::compile_in_child())?;
    // The predecessors' outputs are the task's inputs: each restored from the cache is
    // run fresh too, so a forged one cannot make its successor's inputs hash as
    // recorded.
    ctx.audit_sample = Some(exec::task::AuditSample::all());
    let failed_before = run_predecessors(&ctx, &nodes, &cancel);
    let plans: BTreeMap<usize, Planned> = plan(&ctx.keys, &run_set).into_iter().collect();
    for (c, n) in claims.iter().zip(&nodes) {
        let outcome = match plans.get(n) {
            Some(Planned::Known { prepared, .. }) => check(&ctx, *n, prepared, c),
            Some(Planned::Error(e)) => Err(vec![e.clone()]),
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
    let text = read_text(file, MAX_FILE, "provenance file")?;
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

/// Whether a signed statement is exactly as wask writes it: compact JSON in one order,
/// each key once, no field wask does not write, and a builder that is wask. A parser
/// that keeps the first of two equal keys would read other claims than wask checked.
fn as_written(payload: &[u8]) -> Result<(), String> {
    use crate::audit::provenance::BUILDER_ID;
    let s: Value = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    if serde_json::to_vec(&s).map_err(|e| e.to_string())? != payload {
        return Err("the statement is not in the form wask writes (a key given twice, keys out of order, or spaces): its claims are not checked".into());
    }
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        k.sort();
        k
    };
    let shapes: [(&Value, &[&str]); 5] = [
        (&s, &["_type", "predicate", "predicateType", "subject"]),
        (&s["predicate"], &["buildDefinition", "runDetails"]),
        (
            &s["predicate"]["runDetails"],
            &["builder", "byproducts", "metadata"],
        ),
        (&s["predicate"]["runDetails"]["builder"], &["id", "version"]),
        (
            &s["predicate"]["runDetails"]["metadata"],
            &["finishedOn", "startedOn"],
        ),
    ];
    for (v, want) in shapes {
        if keys(v) != want {
            return Err(format!(
                "the statement holds other fields than wask writes ({:?} where wask writes {want:?})",
                keys(v)
            ));
        }
    }
    let details = &s["predicate"]["runDetails"];
    if details["builder"]["id"] != BUILDER_ID || !details["builder"]["version"]["wask"].is_string()
    {
        return Err(format!("its builder is not wask ({})", details["builder"]));
    }
    let time = |name: &str| {
        details["metadata"][name]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
    };
    match (time("startedOn"), time("finishedOn")) {
        (Some(a), Some(b)) if a <= b => Ok(()),
        _ => Err("its start and finish times are not two times in order".into()),
    }
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
    if !s["subject"].is_array() {
        return Err(not("it has no subject list"));
    }
    Ok(Claim {
        shown: shown.to_string(),
        task,
        definition: definition.clone(),
        subjects: s["subject"].clone(),
        byproducts: s["predicate"]["runDetails"]["byproducts"].clone(),
    })
}

/// Checks the task's definition here against the record, runs it, and checks every
/// subject and the access record: the number of subjects reproduced, or every mismatch.
fn check(
    ctx: &RunContext<'_>,
    n: usize,
    prepared: &Prepared,
    claim: &Claim,
) -> Result<usize, Vec<String>> {
    let graph = ctx.keys.graph;
    let id = &graph.nodes[n].id;
    let def = graph.task(ctx.keys.ws, n);
    let unreadable = |e: std::io::Error| vec![format!("cannot read what it was given: {e}")];
    let here = provenance::build_definition(id, def, prepared).map_err(unreadable)?;
    let problems = definition_differences(&claim.definition, &here);
    if !problems.is_empty() {
        return Err(problems);
    }
    let project_dir = &ctx.keys.ws.projects[graph.nodes[n].project].dir;
    let mut record = TaskRecord::new(id.clone());
    let run = exec::fresh::execute(ctx, id, def, project_dir, prepared, &mut record)
        .map_err(|e| vec![format!("the run failed: {e}")])?;
    let made = provenance::subjects(id, &run.produced, &run.outcome.stdout, &run.outcome.stderr)
        .map_err(unreadable)?;
    let mut problems = named_differences(&claim.subjects, &Value::Array(made.clone()), "subject");
    if claim.byproducts != provenance::byproducts(&run.access) {
        problems.push("the run read otherwise than its access record says".into());
    }
    if problems.is_empty() {
        Ok(made.len())
    } else {
        Err(problems)
    }
}

/// What differs between a recorded build definition and this checkout's, in words:
/// each input by name, each other field by its path.
fn definition_differences(recorded: &Value, here: &Value) -> Vec<String> {
    let deps = "resolvedDependencies";
    let mut problems = named_differences(&recorded[deps], &here[deps], "input");
    for part in ["buildType", "externalParameters", "internalParameters"] {
        let (a, b) = (&recorded[part], &here[part]);
        if a == b {
            continue;
        }
        let fields: std::collections::BTreeSet<&String> = a
            .as_object()
            .into_iter()
            .chain(b.as_object())
            .flat_map(|o| o.keys())
            .collect();
        let mut named = false;
        for f in fields {
            if a.get(f) != b.get(f) {
                named = true;
                problems.push(format!(
                    "the task is declared otherwise than the record says: {part}.{f} is recorded as {}, here {}",
                    shown(a.get(f)),
                    shown(b.get(f))
                ));
            }
        }
        if !named {
            problems.push(format!(
                "the task is declared otherwise than the record says: {part} is recorded as {}, here {}",
                shown(Some(a)),
                shown(Some(b))
            ));
        }
    }
    if problems.is_empty() && recorded != here {
        problems.push("the build definition holds fields this wask does not write".into());
    }
    problems
}

fn shown(v: Option<&Value>) -> String {
    let text = v.map_or("nothing".into(), Value::to_string);
    crate::workspace::diag::clip_lines(&text, 200)
}

/// The differences between two lists of `{name, digest}`, which must be equal: each
/// name whose digests differ, that is in one list only, or that is listed twice.
fn named_differences(recorded: &Value, here: &Value, what: &str) -> Vec<String> {
    if recorded == here {
        return Vec::new();
    }
    let by_name = |list: &Value| -> BTreeMap<String, Vec<Value>> {
        let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for item in list.as_array().into_iter().flatten() {
            let name = item["name"].as_str().unwrap_or("(no name)").to_string();
            map.entry(name).or_default().push(item["digest"].clone());
        }
        map
    };
    let (a, b) = (by_name(recorded), by_name(here));
    let names: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out: Vec<String> = names
        .into_iter()
        .filter_map(|name| match (a.get(name), b.get(name)) {
            (Some(x), Some(y)) if x == y => None,
            (Some(x), _) if x.len() > 1 => {
                Some(format!("{what} {name} is recorded {} times", x.len()))
            }
            (Some(x), Some(y)) => Some(format!(
                "{what} {name} differs: recorded {}, now {}",
                x[0], y[0]
            )),
            (Some(_), None) => Some(format!("{what} {name} is recorded but not there now")),
            (None, Some(_)) => Some(format!("{what} {name} is there now but not recorded")),
            (None, None) => None,
        })
        .collect();
    if out.is_empty() {
        out.push(format!("the {what}s are recorded in another order"));
    }
    out
}
