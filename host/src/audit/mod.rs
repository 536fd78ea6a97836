//! Comparing fresh runs of one task with each other and with its cache entry
//! (AUDIT-001): which output files and streams differ, where the first differing byte
//! is, and for text a few lines of unified diff around it.
//!
//! A run is seen as a set of named files: its outputs by workspace path, its two
//! streams as `<stdout>` and `<stderr>`, and what an entry records of the run besides
//! its bytes, `<write order>` (how the streams interleaved) and `<access record>` (what
//! it read and was refused): a hit replays and reports those too, so an entry that
//! lies about them is as suspect as one with wrong bytes. A file present in one run
//! and absent in another is a difference too.

pub mod provenance;

use crate::cache::{AccessRecord, Contents, Manifest};
use crate::exec::fresh::FreshRun;
use crate::key::{Digest, hash_bytes};
use crate::workspace::HashKind;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The name a run's stdout has among its files.
pub const STDOUT: &str = "<stdout>";
/// The name a run's stderr has among its files.
pub const STDERR: &str = "<stderr>";
/// The name of the order of a run's writes to its streams among its files.
pub const WRITE_ORDER: &str = "<write order>";
/// The name of a run's access record among its files.
pub const ACCESS: &str = "<access record>";

/// A run's write order and access record as the bytes a comparison sees: the JSON an
/// entry's manifest holds of them.
fn record_files(write_order: &[(u8, u64)], access: &AccessRecord) -> [(&'static str, Vec<u8>); 2] {
    [
        (WRITE_ORDER, serde_json::to_vec(write_order).expect("JSON")),
        (ACCESS, serde_json::to_vec(access).expect("JSON")),
    ]
}

/// A fresh run's outputs, streams and record, by name.
pub fn observe(run: &FreshRun, hash: HashKind) -> Observed {
    let mut files: Observed = run
        .produced
        .iter()
        .map(|p| {
            let seen = Seen {
                digest: p.hash,
                size: p.size,
                bytes: p.contents.clone(),
            };
            (p.path.clone(), seen)
        })
        .collect();
    let out = &run.outcome;
    let order = if out.write_order.is_empty() {
        // Kept by no entry either: replayed as stdout, then stderr (see `entry_files`).
        [(0u8, out.stdout.len() as u64), (1, out.stderr.len() as u64)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect()
    } else {
        crate::cache::manifest::write_order_record(&out.write_order)
    };
    let records = record_files(&order, &run.access);
    let streams = [
        (STDOUT, run.outcome.stdout.clone()),
        (STDERR, run.outcome.stderr.clone()),
    ];
    for (name, bytes) in streams.into_iter().chain(records) {
        let seen = Seen {
            digest: hash_bytes(hash, &bytes),
            size: bytes.len() as u64,
            bytes: Contents::Memory(bytes),
        };
        files.insert(name.to_string(), seen);
    }
    files
}

/// Drops the bytes a later `run` holds in memory that no diff will read: where it
/// agrees with `first`, and where an earlier run already differs from `first` (a diff
/// is between the first run and the first that differs, `differing` names those
/// files). Memory stays that of two runs however many there are.
pub fn forget_needless(run: &mut Observed, first: &Observed, differing: &mut BTreeSet<String>) {
    for (name, seen) in run.iter_mut() {
        if !matches!(seen.bytes, Contents::Memory(_)) {
            continue;
        }
        let same = first.get(name).is_some_and(|f| f.digest == seen.digest);
        if same || !differing.insert(name.clone()) {
            seen.bytes = Contents::Memory(Vec::new());
        }
    }
}

/// What a cache entry records of the same files: digest and size by name.
pub fn entry_files(m: &Manifest, hash: HashKind) -> BTreeMap<String, (Digest, u64)> {
    let d = |h: &str| Digest::from_hex(h).unwrap_or(Digest([0; 32]));
    let mut files: BTreeMap<String, (Digest, u64)> = m
        .outputs
        .iter()
        .map(|o| (o.path.clone(), (d(&o.hash), o.size)))
        .collect();
    files.insert(STDOUT.into(), (d(&m.stdout.hash), m.stdout.size));
    files.insert(STDERR.into(), (d(&m.stderr.hash), m.stderr.size));
    // An entry that keeps no write order replays stdout, then stderr.
    let order = crate::cache::manifest::write_order_record(&crate::cache::manifest::write_order(m));
    for (name, bytes) in record_files(&order, &m.access) {
        files.insert(name.into(), (hash_bytes(hash, &bytes), bytes.len() as u64));
    }
    files
}

/// One file of a run: its digest, size and bytes.
pub struct Seen {
    pub digest: Digest,
    pub size: u64,
    pub bytes: Contents,
}

/// What one run produced, by file name.
pub type Observed = BTreeMap<String, Seen>;

/// One file as a run or an entry had it, in a report: size and digest, or neither if
/// it had no such file.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Version {
    /// `run 1`, `run 2`..., `fresh runs` or `cache entry`.
    pub from: String,
    pub size: Option<u64>,
    pub digest: Option<String>,
}

impl Version {
    fn of(from: String, seen: Option<(u64, Digest)>) -> Version {
        Version {
            from,
            size: seen.map(|s| s.0),
            digest: seen.map(|s| s.1.hex()),
        }
    }
}

/// A file that is not the same everywhere.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub file: String,
    /// Each run's version (or the runs' and the entry's).
    pub versions: Vec<Version>,
    /// The first byte at which the first two differing runs differ, when both have the
    /// file.
    pub first_differing_byte: Option<u64>,
    /// For text, a few lines of unified diff around the first difference.
    pub diff: Option<String>,
}

/// The differences among `runs`, file by file, in name order.
pub fn compare_runs(runs: &[Observed]) -> Vec<Difference> {
    let names: BTreeSet<&String> = runs.iter().flat_map(|r| r.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        let seen: Vec<Option<&Seen>> = runs.iter().map(|r| r.get(name)).collect();
        let first = seen[0].map(|s| s.digest);
        if seen.iter().all(|s| s.map(|s| s.digest) == first) {
            continue;
        }
        let versions = seen
            .iter()
            .enumerate()
            .map(|(i, s)| Version::of(format!("run {}", i + 1), s.map(|s| (s.size, s.digest))))
            .collect();
        // The first run that differs from run 1, both present: where they part.
        let pair = seen
            .iter()
            .skip(1)
            .find_map(|other| match (seen[0], other) {
                (Some(a), Some(b)) if a.digest != b.digest => Some((a, *b)),
                _ => None,
            });
        let (first_differing_byte, diff) = match pair {
            Some((a, b)) => {
                let (a, b) = (read(&a.bytes), read(&b.bytes));
                let at = first_difference(&a, &b);
                (Some(at), text_diff(&a, &b))
            }
            None => (None, None),
        };
        out.push(Difference {
            file: name.clone(),
            versions,
            first_differing_byte,
            diff,
        });
    }
    out
}

/// The differences between agreeing runs (`run`, as the first of them) and a cache
/// entry's record of the same files (digest and size by name).
pub fn compare_entry(run: &Observed, entry: &BTreeMap<String, (Digest, u64)>) -> Vec<Difference> {
    let names: BTreeSet<&String> = run.keys().chain(entry.keys()).collect();
    names
        .into_iter()
        .filter(|name| run.get(*name).map(|s| s.digest) != entry.get(*name).map(|e| e.0))
        .map(|name| Difference {
            file: name.clone(),
            versions: vec![
                Version::of(
                    "fresh runs".into(),
                    run.get(name).map(|s| (s.size, s.digest)),
                ),
                Version::of("cache entry".into(), entry.get(name).map(|e| (e.1, e.0))),
            ],
            first_differing_byte: None,
            diff: None,
        })
        .collect()
}

fn read(bytes: &Contents) -> Vec<u8> {
    match bytes {
        Contents::File(path) => std::fs::read(path).unwrap_or_default(),
        Contents::Memory(b) => b.clone(),
    }
}

/// The offset of the first byte at which `a` and `b` differ (the shorter one's length
/// if one is the other's beginning).
pub fn first_difference(a: &[u8], b: &[u8]) -> u64 {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len())) as u64
}

/// Text up to this size gets a diff; larger files only their first differing byte.
const DIFF_LIMIT: usize = 1 << 20;

/// A unified diff of `a` and `b` with two lines of context, at most 40 lines, if both
/// are text.
fn text_diff(a: &[u8], b: &[u8]) -> Option<String> {
    if a.len() > DIFF_LIMIT || b.len() > DIFF_LIMIT {
        return None;
    }
    let (a, b) = (std::str::from_utf8(a).ok()?, std::str::from_utf8(b).ok()?);
    let diff = similar::TextDiff::from_lines(a, b);
    let text = diff
        .unified_diff()
        .context_radius(2)
        .header("run 1", "other run")
        .to_string();
    let mut lines: Vec<&str> = text.lines().take(40).collect();
    if text.lines().count() > 40 {
        lines.push("...");
    }
    Some(lines.join("\n"))
}

/// A declared input a run never opened, with the `inputs` entry that brought it in:
/// each one a needless cache miss when it changes (a file the task only saw in a
/// listing was not read).
#[derive(Debug, Clone, Serialize)]
pub struct NeverRead {
    pub path: String,
    pub declared_by: String,
}

/// `path (from `pattern`)` for each of `list`, comma-separated; `None` if it is empty.
pub fn never_read_text(list: Option<&[NeverRead]>) -> Option<String> {
    let items: Vec<String> = list
        .unwrap_or_default()
        .iter()
        .map(|n| {
            format!(
                "{} (from `{}`)",
                n.path.trim_start_matches('/'),
                n.declared_by
            )
        })
        .collect();
    (!items.is_empty()).then(|| items.join(", "))
}

/// The inputs of `prepared` not among `opened` (the run's access record), or `None` if
/// the record is cut short and may miss some the run did open.
pub fn never_read(
    def: &crate::workspace::TaskDef,
    prepared: &crate::exec::keys::Prepared,
    opened: BTreeSet<&str>,
) -> Option<Vec<NeverRead>> {
    if opened.len() >= wask_runtime::access::MAX_ENTRIES {
        return None;
    }
    let matchers: Vec<(String, globset::GlobSet)> = def
        .inputs
        .iter()
        .filter(|i| !i.value.starts_with('!'))
        .filter_map(|i| {
            let set = wask_runtime::paths::glob_set(std::slice::from_ref(&i.value)).ok()?;
            Some((i.value.clone(), set))
        })
        .collect();
    Some(
        prepared
            .inputs
            .iter()
            .filter(|i| !opened.contains(i.guest_path.as_str()))
            .map(|i| NeverRead {
                path: i.guest_path.clone(),
                declared_by: matchers
                    .iter()
                    .find(|(p, m)| *p == i.guest_path || m.is_match(&i.guest_path))
                    .map(|(p, _)| p.clone())
                    // Not named by an entry: a dependency's output (issue 13).
                    .unwrap_or_else(|| "deps".to_string()),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(files: &[(&str, &[u8])]) -> Observed {
        files
            .iter()
            .map(|(name, bytes)| {
                let digest = crate::key::hash_bytes(crate::workspace::HashKind::Blake3, bytes);
                let seen = Seen {
                    digest,
                    size: bytes.len() as u64,
                    bytes: Contents::Memory(bytes.to_vec()),
                };
                (name.to_string(), seen)
            })
            .collect()
    }

    #[test]
    fn agreeing_runs_have_no_differences() {
        let a = run(&[("/out/a.txt", b"same\n"), (STDOUT, b"hi\n")]);
        let b = run(&[("/out/a.txt", b"same\n"), (STDOUT, b"hi\n")]);
        assert!(compare_runs(&[a, b]).is_empty());
    }

    #[test]
    fn a_difference_names_the_file_the_byte_and_the_lines() {
        let a = run(&[("/out/t.txt", b"one\ntime 100\nthree\n")]);
        let b = run(&[("/out/t.txt", b"one\ntime 200\nthree\n")]);
        let d = compare_runs(&[a, b]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].file, "/out/t.txt");
        assert_eq!(d[0].first_differing_byte, Some(9));
        let diff = d[0].diff.as_deref().unwrap();
        assert!(
            diff.contains("-time 100") && diff.contains("+time 200"),
            "{diff}"
        );
    }

    #[test]
    fn a_file_missing_from_one_run_is_a_difference() {
        let a = run(&[("/out/a.txt", b"x")]);
        let b = run(&[]);
        let d = compare_runs(&[a, b]);
        assert_eq!(d[0].file, "/out/a.txt");
        assert_eq!(d[0].versions[1].size, None);
        assert_eq!(d[0].first_differing_byte, None);
    }

    #[test]
    fn binary_files_get_an_offset_and_no_diff() {
        let a = run(&[("/out/b.bin", &[0, 1, 2, 0xff])]);
        let b = run(&[("/out/b.bin", &[0, 1, 3, 0xff])]);
        let d = compare_runs(&[a, b]);
        assert_eq!(d[0].first_differing_byte, Some(2));
        assert!(d[0].diff.is_none());
    }
}
