//! DAG-003: a task that reads what another task writes depends on it, declared or not.
//!
//! For every pair (consumer input pattern, producer output pattern) of two different
//! tasks, an edge is implied when the patterns can name the same file:
//!
//! * literal and literal: the same path;
//! * literal and glob: the glob matches the literal;
//! * glob and glob: the literal directory before the first glob segment of one lies
//!   within the other's (or they are equal), and some path matches both. A
//!   representative path of one (each `*`, `**` and `?` replaced by `x`, `{a,b}` by `a`,
//!   `[ab]` by `a`) matching the other settles most pairs at once; the rest are decided
//!   exactly by [`super::meet`] (`*.txt` and `a.*` meet on `a.txt`).
//!
//! Outputs are indexed by their literal directory, so each input looks only at the
//! outputs along its own path: linear in the number of patterns for typical workspaces.

use super::meet::{PathGlob, meet};
use globset::{Glob, GlobMatcher};
use std::collections::{BTreeMap, BTreeSet};
use wask_runtime::paths::{is_glob_segment, output_root};

/// One output pattern of one task.
struct Output {
    task: usize,
    pattern: String,
    glob: Option<GlobMatcher>,
    /// Compiled for the exact check when a pair first needs it.
    exact: std::cell::OnceCell<Option<PathGlob>>,
}

/// For each task (by index), the tasks whose outputs its inputs can read, sorted.
pub fn implied_producers(inputs: &[Vec<String>], outputs: &[Vec<String>]) -> Vec<BTreeSet<usize>> {
    let index = OutputIndex::new(outputs);
    let mut implied = vec![BTreeSet::new(); inputs.len()];
    for (consumer, patterns) in inputs.iter().enumerate() {
        let found = &mut implied[consumer];
        for input in patterns {
            if is_glob(input) {
                index.writers_of_glob(input, found);
            } else {
                index.writers_of_literal(input, found);
            }
        }
        found.remove(&consumer);
    }
    implied
}

/// Every output pattern, literal ones by path and glob ones by their literal root.
struct OutputIndex<'a> {
    literal: BTreeMap<&'a str, Vec<usize>>,
    globs: BTreeMap<String, Vec<Output>>,
}

impl<'a> OutputIndex<'a> {
    fn new(outputs: &'a [Vec<String>]) -> Self {
        let mut literal: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut globs: BTreeMap<String, Vec<Output>> = BTreeMap::new();
        for (task, patterns) in outputs.iter().enumerate() {
            for p in patterns {
                if is_glob(p) {
                    globs.entry(output_root(p)).or_default().push(Output {
                        task,
                        pattern: p.clone(),
                        glob: matcher(p),
                        exact: std::cell::OnceCell::new(),
                    });
                } else {
                    literal.entry(p.as_str()).or_default().push(task);
                }
            }
        }
        OutputIndex { literal, globs }
    }

    /// The tasks that write the literal path `input`: its literal outputs, and globs
    /// rooted along its path that match it.
    fn writers_of_literal(&self, input: &str, found: &mut BTreeSet<usize>) {
        found.extend(self.literal.get(input).into_iter().flatten());
        for dir in ancestors(input) {
            for o in self.globs.get(dir).into_iter().flatten() {
                if o.glob.as_ref().is_some_and(|g| g.is_match(input)) {
                    found.insert(o.task);
                }
            }
        }
    }

    /// The tasks that can write a path the glob `input` matches: literal outputs under
    /// its root it matches, and glob outputs rooted at, above or below its root that can
    /// meet it.
    fn writers_of_glob(&self, input: &str, found: &mut BTreeSet<usize>) {
        let root = output_root(input);
        let Some(input_glob) = matcher(input) else {
            return;
        };
        let prefix = if root == "/" {
            "/".to_string()
        } else {
            format!("{root}/")
        };
        for (path, tasks) in self.literal.range(prefix.as_str()..) {
            if !path.starts_with(&prefix) {
                break;
            }
            if input_glob.is_match(path) {
                found.extend(tasks.iter().copied());
            }
        }
        let example_in = representative(input);
        let exact_in = std::cell::OnceCell::new();
        let mut check = |o: &Output| {
            let hit = input_glob.is_match(representative(&o.pattern))
                || o.glob.as_ref().is_some_and(|g| g.is_match(&example_in))
                || exact_meet(
                    exact_in.get_or_init(|| PathGlob::new(input)),
                    o.exact.get_or_init(|| PathGlob::new(&o.pattern)),
                );
            if hit {
                found.insert(o.task);
            }
        };
        for dir in ancestors(&root).chain(std::iter::once(root.as_str())) {
            self.globs
                .get(dir)
                .into_iter()
                .flatten()
                .for_each(&mut check);
        }
        for (dir, outs) in self.globs.range(prefix.clone()..) {
            if !dir.starts_with(&prefix) {
                break;
            }
            outs.iter().for_each(&mut check);
        }
    }
}

fn is_glob(pattern: &str) -> bool {
    pattern.split('/').any(is_glob_segment)
}

/// Patterns matched against literal paths all at once: whether [`can_meet`] holds for
/// any of them and a path, with one glob set instead of a glob compiled per question.
pub struct PathPatterns {
    literals: std::collections::HashSet<String>,
    globs: globset::GlobSet,
}

impl PathPatterns {
    pub fn new(patterns: impl IntoIterator<Item = String>) -> PathPatterns {
        let (globs, literals): (Vec<String>, Vec<String>) =
            patterns.into_iter().partition(|p| is_glob(p));
        PathPatterns {
            literals: literals.into_iter().collect(),
            // Every pattern was compiled when the workspace loaded.
            globs: wask_runtime::paths::glob_set(&globs)
                .unwrap_or_else(|_| globset::GlobSet::empty()),
        }
    }

    /// Every output pattern of the workspace: whether some task writes a path.
    pub fn outputs_of(ws: &crate::workspace::Workspace) -> PathPatterns {
        PathPatterns::new(
            ws.projects
                .iter()
                .flat_map(|p| p.tasks.values())
                .flat_map(|t| t.outputs.iter().map(|o| o.value.clone())),
        )
    }

    /// Whether some pattern names the literal path `path`.
    pub fn matches(&self, path: &str) -> bool {
        self.literals.contains(path) || self.globs.is_match(path)
    }
}

/// Whether two patterns can name the same file, by the rules of the module docs.
pub fn can_meet(a: &str, b: &str) -> bool {
    match (is_glob(a), is_glob(b)) {
        (false, false) => a == b,
        (false, true) => matcher(b).is_some_and(|g| g.is_match(a)),
        (true, false) => matcher(a).is_some_and(|g| g.is_match(b)),
        (true, true) => {
            let (ra, rb) = (output_root(a), output_root(b));
            let nested =
                wask_runtime::paths::is_under(&ra, &rb) || wask_runtime::paths::is_under(&rb, &ra);
            nested
                && (matcher(a).is_some_and(|g| g.is_match(representative(b)))
                    || matcher(b).is_some_and(|g| g.is_match(representative(a)))
                    || exact_meet(&PathGlob::new(a), &PathGlob::new(b)))
        }
    }
}

/// Whether the exact search finds a path both globs match (a glob too large to decide
/// is judged by the representative checks alone).
fn exact_meet(a: &Option<PathGlob>, b: &Option<PathGlob>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => meet(a, b).unwrap_or(false),
        _ => false,
    }
}

fn matcher(pattern: &str) -> Option<GlobMatcher> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .ok()
        .map(|g: Glob| g.compile_matcher())
}

/// `/a/b/c` gives `/a/b`, `/a`, `/`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(path);
    std::iter::from_fn(move || {
        let p = rest?;
        let cut = p.rfind('/')?;
        let parent = if cut == 0 { "/" } else { &p[..cut] };
        rest = if parent == "/" || parent == p {
            None
        } else {
            Some(parent)
        };
        Some(parent)
    })
}

/// One path a glob matches, built from its text.
fn representative(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '*' => {
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                out.push('x');
            }
            '?' => out.push('x'),
            '{' => {
                let mut first = String::new();
                let mut depth = 1;
                let mut taking = true;
                for c in chars.by_ref() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        ',' if depth == 1 => taking = false,
                        _ => {}
                    }
                    if taking && c != '{' && c != '}' {
                        first.push(c);
                    }
                }
                out.push_str(&representative(&first));
            }
            '[' => {
                let mut class = String::new();
                for c in chars.by_ref() {
                    if c == ']' && !class.is_empty() {
                        break;
                    }
                    class.push(c);
                }
                let pick = match class.strip_prefix(['!', '^']) {
                    // A negated class: any character it does not list.
                    Some(excluded) => ['x', 'y', '0', '_']
                        .into_iter()
                        .find(|c| !excluded.contains(*c)),
                    None => class.chars().next(),
                };
                out.push(pick.unwrap_or('x'));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn implied(inputs: &[&[&str]], outputs: &[&[&str]]) -> Vec<Vec<usize>> {
        let own = |v: &[&[&str]]| -> Vec<Vec<String>> {
            v.iter()
                .map(|ps| ps.iter().map(|p| p.to_string()).collect())
                .collect()
        };
        implied_producers(&own(inputs), &own(outputs))
            .into_iter()
            .map(|s| s.into_iter().collect())
            .collect()
    }

    #[test]
    fn literal_and_glob_pairs() {
        // 0 writes /gen/a.txt; 1 writes /dist/**/*.html; 2 reads both ways.
        let got = implied(
            &[&[], &[], &["/gen/a.txt", "/dist/x/page.html"]],
            &[&["/gen/a.txt"], &["/dist/**/*.html"], &[]],
        );
        assert_eq!(got, [vec![], vec![], vec![0, 1]]);
    }

    #[test]
    fn glob_inputs_find_literal_and_glob_outputs() {
        let got = implied(
            &[&[], &[], &[], &["/p/**/*.html"]],
            &[
                &["/p/a/index.html"],
                &["/p/dist/**/*.html"],
                &["/p/dist/**/*.css"],
                &[],
            ],
        );
        assert_eq!(got[3], vec![0, 1], "the css producer is not implied");
    }

    #[test]
    fn disjoint_directories_and_own_outputs_imply_nothing() {
        let got = implied(
            &[&["/src/**"], &["/p/out/**"]],
            &[&["/src/gen/**"], &["/q/**"]],
        );
        assert_eq!(got, [Vec::<usize>::new(), vec![]]);
    }

    #[test]
    fn an_input_above_an_output_root_sees_it() {
        let got = implied(&[&[], &["/site/**"]], &[&["/site/dist/{a,b}.txt"], &[]]);
        assert_eq!(got[1], vec![0]);
    }

    #[test]
    fn outputs_that_can_meet() {
        assert!(can_meet("/out/x.txt", "/out/x.tx[t]"));
        assert!(can_meet("/out/**", "/out/css/*.css"));
        assert!(can_meet("/a/b.txt", "/a/b.txt"));
        assert!(!can_meet("/out/*.js", "/out/*.css"));
        assert!(!can_meet("/a/**", "/b/**"));
    }

    #[test]
    fn representatives() {
        assert_eq!(representative("/a/**/*.md"), "/a/x/x.md");
        assert_eq!(representative("/a/{b,c}/[!x]?.txt"), "/a/b/yx.txt");
        assert_eq!(representative("/a/[mn].txt"), "/a/m.txt");
        assert_eq!(representative(r"/a/\*.txt"), "/a/*.txt");
    }

    #[test]
    fn ancestors_walk_up_to_the_root() {
        assert_eq!(ancestors("/a/b/c").collect::<Vec<_>>(), ["/a/b", "/a", "/"]);
        assert_eq!(ancestors("/a").collect::<Vec<_>>(), ["/"]);
    }
}
