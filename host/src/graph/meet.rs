//! Whether two globs can name one path, decided exactly: each glob becomes a DFA (from
//! the regex `globset` compiles it to), and the pair of DFAs is searched, byte by byte
//! over the bytes a path may hold, for a pair of states where both accept. So `*.txt`
//! and `a.*` meet (on `a.txt`), `*.md` and `x*.txt` do not, and no heuristic decides.

use regex_automata::Anchored;
use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::util::{start, syntax};
use std::collections::HashSet;

/// One glob, compiled for [`meet`].
pub struct PathGlob {
    dfa: dense::DFA<Vec<u32>>,
}

/// Bounds on one glob's DFA and on one search: globs in a `wask.toml` are small, and a
/// pattern past these is judged by the caller's fallback instead.
const DFA_BYTES: usize = 4 << 20;
const MAX_PAIRS: usize = 200_000;

impl PathGlob {
    /// The glob `pattern` as `wask` reads globs (`*` stays within a segment); `None`
    /// when it is no glob or too large to decide.
    pub fn new(pattern: &str) -> Option<PathGlob> {
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .ok()?;
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .start_kind(StartKind::Anchored)
                    .dfa_size_limit(Some(DFA_BYTES))
                    .determinize_size_limit(Some(DFA_BYTES)),
            )
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .build(glob.regex())
            .ok()?;
        Some(PathGlob { dfa })
    }
}

/// The bytes a path may hold: no control characters (the path rule), any byte of a
/// UTF-8 sequence.
fn path_bytes() -> impl Iterator<Item = u8> {
    (0x20..=0x7e).chain(0x80..=0xff)
}

/// Whether some path matches both `a` and `b`; `None` when the search was too large
/// to finish.
pub fn meet(a: &PathGlob, b: &PathGlob) -> Option<bool> {
    let anchored = start::Config::new().anchored(Anchored::Yes);
    let start = (
        a.dfa.start_state(&anchored).ok()?,
        b.dfa.start_state(&anchored).ok()?,
    );
    let accepts = |g: &PathGlob, s| g.dfa.is_match_state(g.dfa.next_eoi_state(s));
    let mut seen = HashSet::from([start]);
    let mut todo = vec![start];
    while let Some((x, y)) = todo.pop() {
        if accepts(a, x) && accepts(b, y) {
            return Some(true);
        }
        for byte in path_bytes() {
            let next = (a.dfa.next_state(x, byte), b.dfa.next_state(y, byte));
            let dead = |g: &PathGlob, s| g.dfa.is_dead_state(s) || g.dfa.is_quit_state(s);
            if dead(a, next.0) || dead(b, next.1) {
                continue;
            }
            if seen.insert(next) {
                if seen.len() > MAX_PAIRS {
                    return None;
                }
                todo.push(next);
            }
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meets(a: &str, b: &str) -> bool {
        meet(&PathGlob::new(a).unwrap(), &PathGlob::new(b).unwrap()).unwrap()
    }

    #[test]
    fn globs_that_share_a_path_meet() {
        assert!(meets("/p/dist/*.txt", "/p/dist/a.*"));
        assert!(meets("/p/**", "/p/dist/x/*.css"));
        assert!(meets("/p/{a,b}/x", "/p/[b-c]/?"));
        assert!(meets("/p/**/z", "/p/z"));
        assert!(meets("/p/é*", "/p/*é"));
    }

    #[test]
    fn globs_with_no_common_path_do_not() {
        assert!(!meets("/p/*.md", "/p/x*.txt"));
        assert!(!meets("/p/dist/*", "/p/dist/*/x"));
        assert!(!meets("/p/a/**", "/p/b/**"));
        assert!(!meets("/p/[!a]", "/p/a"));
        assert!(!meets("/p/*.txt", "/p/*.tx"));
    }
}
