//! Which tasks a set of changed files touches, for `wask run --affected` and `wask
//! watch`: a task is affected when a changed path is one of its inputs (or could be:
//! a removed file matched by a glob), its module, or the `wask.toml` that declares it;
//! every task that depends on an affected one is affected too; a task with
//! `gitignore = false` always is (it may read a file git neither tracks nor lists). The changed paths come
//! from git ([`changed_since`]) or from the file system's events.

use crate::graph::{Graph, PathPatterns};
use crate::workspace::{ModuleSpec, Workspace};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The tasks `changed` (workspace paths, `/a/b.txt`) affects, and their dependents.
pub fn affected(ws: &Workspace, graph: &Graph, changed: &BTreeSet<String>) -> BTreeSet<usize> {
    let root_file = "/wask.toml";
    let mut hit = BTreeSet::new();
    for n in 0..graph.nodes.len() {
        let def = graph.task(ws, n);
        // A task that reads ignored files may read one git does not track, whose
        // change no commit shows: it is always affected.
        if !def.gitignore {
            hit.insert(n);
            continue;
        }
        let declared_in = format!("/{}", ws.sources.name(def.span.file));
        let (excluded, included): (Vec<String>, Vec<String>) = def
            .inputs
            .iter()
            .map(|i| i.value.clone())
            .partition(|v| v.starts_with('!'));
        let included = PathPatterns::new(included);
        let excluded = PathPatterns::new(excluded.into_iter().map(|e| e[1..].to_string()));
        let touches = |path: &String| {
            let module = match &def.module_spec {
                ModuleSpec::File { path: m, .. } => m == path,
                ModuleSpec::Crate { dir, .. } => wask_runtime::paths::is_under(path, dir),
            };
            *path == declared_in
                || path == root_file
                || module
                || (included.matches(path) && !excluded.matches(path))
        };
        if changed.iter().any(touches) {
            hit.insert(n);
        }
    }
    // Dependents: whatever reads an affected task's outputs, or runs after it by `deps`.
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); graph.nodes.len()];
    for (n, node) in graph.nodes.iter().enumerate() {
        for p in &node.hard {
            dependents[*p].push(n);
        }
    }
    let mut stack: Vec<usize> = hit.iter().copied().collect();
    while let Some(n) = stack.pop() {
        for d in &dependents[n] {
            if hit.insert(*d) {
                stack.push(*d);
            }
        }
    }
    hit
}

/// What changed in the git checkout holding `root` since `base`: files changed, added
/// or removed in commits since it, in the index or in the working tree, and untracked
/// files git does not ignore; as workspace paths, only those inside the workspace.
///
/// Without `base`: the merge base of `HEAD` with the default branch (`origin/HEAD`,
/// else `main`, else `master`), or `HEAD` itself when there is none or `HEAD` is on it,
/// so that only the uncommitted changes count.
pub fn changed_since(
    root: &Path,
    base: Option<&str>,
) -> Result<(String, BTreeSet<String>), String> {
    let top = git(root, &["rev-parse", "--show-toplevel"]).map_err(|e| {
        format!(
            "--affected compares with git, and {} is not in a git repository ({e}); run the tasks by name, or with --workspace",
            root.display()
        )
    })?;
    let top = std::path::PathBuf::from(top.trim_end_matches('\n'));
    let base = match base {
        // git would read it as an option.
        Some(b) if b.starts_with('-') => {
            return Err(format!(
                "--base {b}: a commit, branch or tag, not an option"
            ));
        }
        Some(b) => b.to_string(),
        None => default_base(root),
    };
    let base_commit = git(
        root,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{base}^{{commit}}"),
        ],
    )
    .map_err(|_| {
        format!(
            "--base {base}: no such commit in the repository at {}",
            top.display()
        )
    })?;
    let base_commit = base_commit.trim().to_string();
    let mut listed = git(
        root,
        &[
            "diff",
            "--name-only",
            "--no-renames",
            "--no-ext-diff",
            "--no-textconv",
            "-z",
            &base_commit,
            "--",
        ],
    )?;
    listed.push_str(&git(
        root,
        &[
            "ls-files",
            "--others",
            // wask's globs skip what `.gitignore` files ignore, not what
            // `.git/info/exclude` or a user's global excludes do: those files are
            // inputs, so their changes count.
            "--exclude-per-directory=.gitignore",
            "-z",
            "--full-name",
        ],
    )?);
    // Files marked assume-unchanged or skip-worktree are never compared by git, so it
    // cannot say whether they changed: they count as changed.
    for entry in git(root, &["ls-files", "-v", "-z", "--full-name"])?.split('\0') {
        if let Some((tag, path)) = entry.split_once(' ')
            && (tag.chars().all(|c| c.is_ascii_lowercase()) || tag == "S")
        {
            listed.push('\0');
            listed.push_str(path);
        }
    }
    // git names paths from the top of the checkout; the workspace may be below it.
    let root = root.canonicalize().map_err(|e| e.to_string())?;
    let top = top.canonicalize().map_err(|e| e.to_string())?;
    let changed = listed
        .split('\0')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let rel = top.join(p);
            let rel = rel.strip_prefix(&root).ok()?;
            Some(format!("/{}", rel.to_str()?))
        })
        .collect();
    Ok((base, changed))
}

/// The default base, as a commit git takes: `HEAD` when it is on the default branch
/// (or there is none), else its merge base with it.
fn default_base(root: &Path) -> String {
    let commit = |r: &str| {
        git(
            root,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{r}^{{commit}}"),
            ],
        )
        .ok()
        .map(|c| c.trim().to_string())
    };
    let head = commit("HEAD");
    ["origin/HEAD", "main", "master"]
        .into_iter()
        .find(|b| commit(b).is_some())
        .and_then(|b| git(root, &["merge-base", "HEAD", b]).ok())
        .map(|c| c.trim().to_string())
        .filter(|base| Some(base) != head.as_ref())
        .unwrap_or_else(|| "HEAD".to_string())
}

/// Runs git in `dir`, returning its stdout, or its stderr as the error. A checkout's
/// own configuration can name programs for git to run (`core.fsmonitor`, external diff
/// drivers); none of them is run for wask, which only asks for names.
fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "core.fsmonitor=false", "-c", "diff.external="])
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if output.status.success() {
        String::from_utf8(output.stdout).map_err(|_| "git printed a path that is not UTF-8".into())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}
