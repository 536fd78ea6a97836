//! Finding the workspace (WS-001) and its projects (WS-002).

use super::diag::FileId;
use super::load::{FILE_NAME, Loader};
use super::names::check_path;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Finds the workspace root (WS-001): the nearest directory at or above `start` whose
/// `wask.toml` has a `[workspace]` table.
pub fn find_root(start: &Path) -> anyhow::Result<PathBuf> {
    let start = start
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("cannot open directory {}: {e}", start.display()))?;
    for dir in start.ancestors() {
        let file = dir.join(FILE_NAME);
        if let Ok(text) = std::fs::read_to_string(&file) {
            let has_workspace = text
                .parse::<toml::Table>()
                .map(|t| t.contains_key("workspace"))
                .unwrap_or_else(|_| text.lines().any(|l| l.trim() == "[workspace]"));
            if has_workspace {
                return Ok(dir.to_path_buf());
            }
        }
    }
    anyhow::bail!(
        "no workspace found: no `{FILE_NAME}` with a `[workspace]` table in {} or any parent directory\n\
         hint: run `wask` inside a workspace, pass `-C DIR`, or create a `{FILE_NAME}` containing `[workspace]`",
        start.display()
    )
}

impl Loader {
    /// Expands `[workspace] projects` (WS-002): literal directories must hold a
    /// `wask.toml`; glob entries match the directories that do. Sorted, deduplicated.
    pub(super) fn project_dirs(
        &mut self,
        file: FileId,
        entries: &[Spanned<String>],
    ) -> Vec<String> {
        let mut dirs = Vec::new();
        for entry in entries {
            let pattern = entry.get_ref().trim_start_matches('/').to_string();
            if let Err(why) = check_path(&pattern) {
                self.err(
                    file,
                    entry.span(),
                    format!("invalid project path: {why}"),
                    "here",
                );
                continue;
            }
            if !pattern.split('/').any(wask_runtime::paths::is_glob_segment) {
                let dir = self.root.join(&pattern);
                let resolved = dir.canonicalize().ok();
                if resolved.is_some() && resolved.as_deref() != Some(dir.as_path()) {
                    // A link would make another directory (outside the workspace, even)
                    // a project: its wask.toml and modules read from there.
                    self.err(
                        file,
                        entry.span(),
                        format!(
                            "project directory `{pattern}` is a symbolic link or lies under one; list the directory itself"
                        ),
                        "listed here",
                    );
                } else if is_regular(&dir.join(FILE_NAME)) {
                    dirs.push(format!("/{pattern}"));
                } else {
                    self.err(
                        file,
                        entry.span(),
                        format!("project directory `{pattern}` has no {FILE_NAME}"),
                        "listed here",
                    );
                }
                continue;
            }
            let matcher = match wask_runtime::paths::glob_set(std::slice::from_ref(&pattern)) {
                Ok(m) => m,
                Err(e) => {
                    self.err(file, entry.span(), format!("invalid glob: {e}"), "here");
                    continue;
                }
            };
            let walker = walkdir::WalkDir::new(&self.root)
                .min_depth(1)
                .follow_links(false)
                .into_iter()
                .filter_entry(|e| {
                    e.file_type().is_dir() && !e.file_name().to_string_lossy().starts_with('.')
                });
            for entry in walker.flatten() {
                let rel = entry
                    .path()
                    .strip_prefix(&self.root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                if matcher.is_match(&rel) && is_regular(&entry.path().join(FILE_NAME)) {
                    dirs.push(format!("/{rel}"));
                }
            }
        }
        dirs.sort();
        dirs.dedup();
        dirs
    }
}

/// A regular file, not a link to one.
fn is_regular(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}
