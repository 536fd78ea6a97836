//! The provenance of a reproducible task (AUDIT-002): an in-toto Statement v1 whose
//! predicate is SLSA Provenance v1, naming the task's outputs as subjects and what made
//! them (module, arguments, inputs, environment, sandbox settings) as its build
//! definition, enough for another machine to run the task again and check the bytes.
//!
//! Host environment values are never written, not even hashed: a hash of a short
//! secret is a guess away from the secret. The statement says which allow-listed
//! variables were set; a verifier runs the task with its own. For the same reason it
//! does not hold the cache key, which is a function of those values. (`env.set`
//! values are part of the declaration in `wask.toml`, and are written.)

use crate::cache::ProducedOutput;
use crate::exec::keys::Prepared;
use crate::key::EnvValue;
use crate::refs::TaskId;
use crate::workspace::{ClockSetting, TaskDef};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest as _;
use std::time::SystemTime;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// What a wask task's build definition means (a URN: no page to resolve, yet).
pub const BUILD_TYPE: &str = "urn:wask:build-type:task:v1";
/// Who ran it: wask on this machine, its version in `builder.version`.
pub const BUILDER_ID: &str = "urn:wask:builder:local";

/// One run of a task, as a statement records it.
pub struct Made<'a> {
    pub id: &'a TaskId,
    pub def: &'a TaskDef,
    pub prepared: &'a Prepared,
    pub outputs: &'a [ProducedOutput],
    /// What the run read and was refused, as its cache entry records it.
    pub access: &'a crate::cache::AccessRecord,
    pub stdout: &'a [u8],
    pub stderr: &'a [u8],
    pub started: SystemTime,
    pub finished: SystemTime,
}

/// The `sha256` and `blake3` digests of `bytes`.
fn digests(bytes: &[u8]) -> Value {
    json!({
        "sha256": hex(&sha2::Sha256::digest(bytes)),
        "blake3": blake3::hash(bytes).to_hex().to_string(),
    })
}

/// The digests of `contents`, read a piece at a time.
fn file_digests(contents: &crate::cache::Contents) -> std::io::Result<Value> {
    let mut file = contents.reader()?;
    let (mut sha, mut b3) = (sha2::Sha256::new(), blake3::Hasher::new());
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        b3.update(&buf[..n]);
    }
    Ok(json!({
        "sha256": hex(&sha.finalize()),
        "blake3": b3.finalize().to_hex().to_string(),
    }))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// The statement for `made`.
pub fn statement(made: &Made<'_>) -> std::io::Result<Value> {
    Ok(json!({
        "_type": STATEMENT_TYPE,
        "subject": subjects(made.id, made.outputs, made.stdout, made.stderr)?,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": build_definition(made.id, made.def, made.prepared)?,
            "runDetails": run_details(made),
        },
    }))
}

/// The outputs and both streams of a run (a hit replays the streams: they are part of
/// the result), in that order, each with its `sha256` and `blake3` digests.
pub fn subjects(
    id: &TaskId,
    outputs: &[ProducedOutput],
    stdout: &[u8],
    stderr: &[u8],
) -> std::io::Result<Vec<Value>> {
    let mut subjects = Vec::new();
    for out in outputs {
        subjects.push(json!({
            // Workspace paths keep their `/`: no output can be named like a stream.
            "name": out.path,
            "digest": file_digests(&out.contents)?,
        }));
    }
    for (stream, bytes) in [("stdout", stdout), ("stderr", stderr)] {
        subjects.push(json!({
            "name": format!("{id}#{stream}"),
            "digest": digests(bytes),
        }));
    }
    Ok(subjects)
}

/// What made the outputs: the task as declared, how the sandbox ran it, and every
/// file it was given, with digests. A verifier rebuilds this from its own checkout
/// and requires it to be the recorded one exactly.
pub fn build_definition(id: &TaskId, def: &TaskDef, prepared: &Prepared) -> std::io::Result<Value> {
    let made = Definition { id, def, prepared };
    let mut dependencies = vec![json!({
        "name": format!("module:{}", made.def.module.value),
        "digest": digests(&made.prepared.module.bytes),
    })];
    for input in &made.prepared.inputs {
        dependencies.push(json!({
            // Workspace paths keep their `/`: no input can be named like the module.
            "name": input.guest_path,
            "digest": file_digests(&crate::cache::Contents::File(input.host_path.clone()))?,
        }));
    }
    let env_from_host: serde_json::Map<String, Value> = made
        .prepared
        .parts
        .env
        .iter()
        .filter(|(name, _)| made.def.env_from_host.contains(name))
        .map(|(name, v)| {
            (
                name.clone(),
                json!({ "set": matches!(v, EnvValue::Value(_)) }),
            )
        })
        .collect();
    let limits = &made.def.limits;
    Ok(json!({
        "buildType": BUILD_TYPE,
        "externalParameters": {
            "task": made.id.to_string(),
            "args": made.def.args,
            "env": made.def.env_set,
            "inputs": made.def.inputs.iter().map(|i| &i.value).collect::<Vec<_>>(),
            "outputs": made.prepared.parts.outputs,
        },
        "internalParameters": {
            "projectDir": made.prepared.parts.project_dir,
            "clock": match made.def.clock {
                ClockSetting::Fixed => "fixed",
                ClockSetting::Host => "host",
            },
            "limits": {
                "memoryBytes": limits.memory_bytes,
                "timeoutSeconds": limits.timeout.as_secs_f64(),
                "outputBytes": limits.output_bytes,
                "outputsSize": limits.outputs_size,
                "outputsCount": limits.outputs_count,
                "moduleBytes": limits.module_bytes,
            },
            "envFromHost": env_from_host,
        },
        "resolvedDependencies": dependencies,
    }))
}

/// What [`build_definition`] reads.
struct Definition<'a> {
    id: &'a TaskId,
    def: &'a TaskDef,
    prepared: &'a Prepared,
}

/// What the run read and was refused (its access record), as a byproduct.
pub fn byproducts(access: &crate::cache::AccessRecord) -> Value {
    let access = serde_json::to_vec(access).expect("JSON");
    json!([{
        "name": "access-record",
        "mediaType": "application/json",
        "content": base64::engine::general_purpose::STANDARD.encode(access),
    }])
}

/// Who ran it and when, and what it read.
fn run_details(made: &Made<'_>) -> Value {
    json!({
        "builder": {
            "id": BUILDER_ID,
            "version": { "wask": env!("CARGO_PKG_VERSION") },
        },
        "metadata": {
            "startedOn": rfc3339(made.started),
            "finishedOn": rfc3339(made.finished),
        },
        "byproducts": byproducts(made.access),
    })
}
