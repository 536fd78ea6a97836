//! The one rule for the paths wask handles (PATH-001, PATH-003), and the pattern helpers
//! built on it.
//!
//! Every path that crosses wask's boundary meets the same rule, wherever it comes from: a
//! pattern declared in `wask.toml`, an input file found by a glob, a file a task created
//! among its outputs, a path recorded in a cache manifest. A path is UTF-8 text of `/`
//! separated names; no name is empty, `.` or `..`; no character is a control character
//! (newlines, NUL); a name is at most [`MAX_NAME_BYTES`] and the whole path at most
//! [`MAX_PATH_BYTES`]. What the rule refuses at one place it refuses at every other, so
//! nothing is collected that a restore would later refuse, and no two host names can
//! become the same path.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::ffi::OsStr;

/// The longest name (path segment) wask accepts: `NAME_MAX` of common filesystems.
pub const MAX_NAME_BYTES: usize = 255;

/// The longest workspace path wask accepts.
pub const MAX_PATH_BYTES: usize = 4096;

/// wask's own directory in every workspace: never an input, never an output.
pub const RESERVED_DIR: &str = "/.wask";

/// What is wrong with a path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("a path cannot be empty")]
    Empty,
    #[error("paths cannot contain control characters ({0:?})")]
    Control(char),
    #[error("paths cannot have empty segments (`//`, or a trailing `/`)")]
    EmptySegment,
    #[error("paths cannot contain `{0}` segments")]
    Dot(&'static str),
    #[error("a name in the path is {0} bytes long; names are at most {MAX_NAME_BYTES} bytes")]
    NameTooLong(usize),
    #[error("the path is {0} bytes long; paths are at most {MAX_PATH_BYTES} bytes")]
    TooLong(usize),
    #[error("the name {0} is not valid UTF-8; wask paths are UTF-8 text")]
    NotUtf8(String),
    #[error("a workspace path starts with `/`")]
    NotAbsolute,
}

/// Checks a path or pattern: relative (`src/**/*.md`) or workspace-absolute (`/tools/x`).
pub fn check(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong(path.len()));
    }
    if let Some(c) = path.chars().find(|c| c.is_control()) {
        return Err(PathError::Control(c));
    }
    let body = path.strip_prefix('/').unwrap_or(path);
    for seg in body.split('/') {
        match seg {
            "" => return Err(PathError::EmptySegment),
            "." => return Err(PathError::Dot(".")),
            ".." => return Err(PathError::Dot("..")),
            s if s.len() > MAX_NAME_BYTES => return Err(PathError::NameTooLong(s.len())),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a workspace-absolute path (`/docs/a.md`).
pub fn check_workspace_path(path: &str) -> Result<(), PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    check(path)
}

/// A host file name as text, or why it cannot be one.
pub fn name_text(name: &OsStr) -> Result<&str, PathError> {
    name.to_str()
        .ok_or_else(|| PathError::NotUtf8(format!("{:?}", name.to_string_lossy())))
}

/// `path` as a message shows it: whole when short, else its start and end and its
/// length, so a path of kilobytes never fills a report.
pub fn shown(path: &str) -> String {
    const MAX: usize = 160;
    if path.len() <= MAX {
        return path.to_string();
    }
    let mut head = 80;
    while !path.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = path.len() - 60;
    while !path.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}…{} ({} bytes)", &path[..head], &path[tail..], path.len())
}

/// Whether `path` (workspace-absolute) is `root` or lies under it.
pub fn is_under(path: &str, root: &str) -> bool {
    root == "/"
        || path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether `path` lies in wask's own directory, `/.wask`.
pub fn is_reserved(path: &str) -> bool {
    is_under(path, RESERVED_DIR)
}

/// Joins a guest-relative path onto a workspace-absolute base, resolving `.` and `..`
/// as text. The guest was refused anything that left its view, so this only names what
/// it asked for.
pub fn join_lexically(base: &str, relative: &str) -> String {
    let mut parts: Vec<&str> = if relative.starts_with('/') {
        Vec::new()
    } else {
        base.split('/').filter(|s| !s.is_empty()).collect()
    };
    for seg in relative.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Characters that make a path segment a glob (PATH-003).
pub fn is_glob_segment(segment: &str) -> bool {
    segment.contains(['*', '?', '[', '{', '\\'])
}

/// Whether a pattern has any glob segment.
pub fn is_glob(pattern: &str) -> bool {
    pattern.split('/').any(is_glob_segment)
}

/// The directory under which every match of `pattern` lies (workspace-absolute): the
/// segments before the first glob segment, or the parent of a literal path.
pub fn output_root(pattern: &str) -> String {
    let segs: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let literal = segs.iter().take_while(|s| !is_glob_segment(s)).count();
    let keep = if literal == segs.len() {
        literal.saturating_sub(1)
    } else {
        literal
    };
    format!("/{}", segs[..keep].join("/"))
}

/// Builds a matcher with wask's glob rules (PATH-003): `*` never crosses `/`, `\`
/// escapes, matching is case-sensitive.
pub fn glob_set(patterns: &[String]) -> Result<GlobSet, globset::Error> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(
            GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()?,
        );
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_refuses_what_path_001_refuses_and_overlong_names() {
        assert!(check("src/**/*.md").is_ok());
        assert!(check("/tools/x.wasm").is_ok());
        for bad in [
            "", "/", "a//b", "a/./b", "../x", "a/..", "a\u{0}b", "a\nb", "dist/", "a\u{7f}b",
        ] {
            assert!(check(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(
            check(&format!("a/{}", "n".repeat(256))),
            Err(PathError::NameTooLong(256))
        );
        assert!(check(&format!("a/{}", "n".repeat(255))).is_ok());
        let deep = "abcdefgh/".repeat(500) + "x";
        assert_eq!(check(&deep), Err(PathError::TooLong(deep.len())));
        assert_eq!(check_workspace_path("a/b"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn names_that_are_not_utf8_are_refused_not_made_lossy() {
        use std::os::unix::ffi::OsStrExt;
        let bad = OsStr::from_bytes(b"caf\xe9");
        assert!(matches!(name_text(bad), Err(PathError::NotUtf8(_))));
        assert_eq!(name_text(OsStr::new("café")), Ok("café"));
    }

    #[test]
    fn output_roots_stop_before_the_first_glob() {
        assert_eq!(output_root("/docs/dist/**/*.html"), "/docs/dist");
        assert_eq!(output_root("/docs/out.txt"), "/docs");
        assert_eq!(output_root("/out.txt"), "/");
        assert_eq!(output_root("/a/b{1,2}/c"), "/a");
    }

    #[test]
    fn star_does_not_cross_directories() {
        let set = glob_set(&["/p/*.txt".into(), "/q/**/*.md".into()]).unwrap();
        assert!(set.is_match("/p/a.txt"));
        assert!(!set.is_match("/p/sub/a.txt"));
        assert!(set.is_match("/q/x/y/z.md"));
        assert!(set.is_match("/q/z.md"));
    }

    #[test]
    fn joins_relative_paths_onto_their_directory() {
        assert_eq!(join_lexically("/", "docs/a.md"), "/docs/a.md");
        assert_eq!(
            join_lexically("/docs/dist", "x/../y.html"),
            "/docs/dist/y.html"
        );
        assert_eq!(join_lexically("/docs", "../../etc/passwd"), "/etc/passwd");
    }

    #[test]
    fn reserved_means_the_wask_directory_and_below() {
        assert!(is_reserved("/.wask"));
        assert!(is_reserved("/.wask/cache/x"));
        assert!(!is_reserved("/.waskx"));
        assert!(is_under("/a/b", "/a") && !is_under("/ab", "/a") && is_under("/x", "/"));
    }
}
