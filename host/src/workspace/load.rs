//! Reading `wask.toml` files into a [`Workspace`]: the driver of a load. The stages are
//! [`super::raw`] (the serde schema), [`super::discover`] (the root and its projects)
//! and [`super::lower`] (settings, tasks and overlays made into checked values).
//!
//! TOML syntax and shape errors come from serde (one per file, with its span); every
//! rule wask checks itself (names, paths, references, settings) is checked on every file
//! before anything is reported, so one load shows all of them (WS-003).

use super::diag::{FileId, LoadError, LoadErrors, Sources, Span};
use super::names::check_name;
use super::raw::RawFile;
use super::settings::ClockSetting;
use super::{Project, Workspace};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use wask_runtime::Limits;

pub(super) const FILE_NAME: &str = "wask.toml";

/// How many unknown keys of one file are reported before the rest are left unsaid.
const MAX_UNKNOWN_KEYS: usize = 50;

fn is_unknown_key(e: &toml::de::Error) -> bool {
    e.message().starts_with("unknown field")
}

/// A TOML or schema error at its span; an unknown key labelled with the known key
/// closest to it.
fn toml_error(file: FileId, e: &toml::de::Error) -> LoadError {
    let message = e.message().trim().to_string();
    let label = if is_unknown_key(e) {
        unknown_key_hint(&message)
    } else {
        "here".to_string()
    };
    LoadError::at(span(file, e.span().unwrap_or(0..0)), message, label)
}

/// "did you mean `inputs`?" for serde's "unknown field `inptus`, expected one of
/// `module`, ..." (every name in backticks after the first is a candidate).
fn unknown_key_hint(message: &str) -> String {
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    match quoted.split_first() {
        Some((word, known)) => {
            let hint = super::suggest::did_you_mean(word, known.iter().copied());
            if hint.is_empty() {
                "unknown key".into()
            } else {
                hint
            }
        }
        None => "here".into(),
    }
}

/// Takes the entry whose key lies at `range` out of `table`, at any depth; whether
/// there was one.
fn remove_key_at(
    table: &mut toml::Spanned<toml::de::DeTable<'_>>,
    range: &std::ops::Range<usize>,
) -> bool {
    fn in_table(table: &mut toml::de::DeTable<'_>, range: &std::ops::Range<usize>) -> bool {
        let found = table
            .iter()
            .find(|(k, _)| k.span() == *range)
            .map(|(k, _)| k.get_ref().to_string());
        if let Some(key) = found {
            table.remove(key.as_str());
            return true;
        }
        table.iter_mut().any(|(_, v)| in_value(v.get_mut(), range))
    }
    fn in_value(value: &mut toml::de::DeValue<'_>, range: &std::ops::Range<usize>) -> bool {
        match value {
            toml::de::DeValue::Table(t) => in_table(t, range),
            toml::de::DeValue::Array(items) => {
                items.iter_mut().any(|v| in_value(v.get_mut(), range))
            }
            _ => false,
        }
    }
    in_table(table.get_mut(), range)
}

pub(super) struct Loader {
    pub(super) root: PathBuf,
    pub(super) sources: Sources,
    pub(super) errors: Vec<LoadError>,
    /// `[sandbox]` defaults, which task `limits` and `clock` override.
    pub(super) default_limits: Limits,
    pub(super) default_clock: ClockSetting,
    /// Set when a file, project or task was left out for its errors: the graph of what
    /// is left would report references to it as missing.
    pub(super) incomplete: bool,
}

pub(super) fn span(file: FileId, range: std::ops::Range<usize>) -> Span {
    Span { file, range }
}

/// Loads and checks the workspace rooted at `root`.
pub fn load(root: &Path) -> Result<Workspace, LoadErrors> {
    let mut l = Loader {
        root: root.to_path_buf(),
        sources: Sources::default(),
        errors: Vec::new(),
        default_limits: Limits::default(),
        default_clock: ClockSetting::Fixed,
        incomplete: false,
    };
    let workspace = l.load_all();
    if l.errors.is_empty()
        && let Some(mut w) = workspace
    {
        w.sources = l.sources;
        return Ok(w);
    }
    Err(LoadErrors {
        sources: l.sources,
        errors: l.errors,
        partial: workspace.filter(|_| !l.incomplete).map(Box::new),
    })
}

impl Loader {
    fn read(&mut self, dir: &Path) -> Option<(FileId, RawFile)> {
        let path = dir.join(FILE_NAME);
        let shown = path
            .strip_prefix(&self.root)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| path.display().to_string());
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => return self.leave_out(LoadError::plain(format!("cannot read {shown}: {e}"))),
        };
        let file = self.sources.add(shown, text);
        let text = self.sources.text(file);
        // The common case, a file that fits the schema, is read once.
        match toml::from_str::<RawFile>(text) {
            Ok(raw) => return Some((file, raw)),
            Err(e) if !is_unknown_key(&e) => return self.leave_out(toml_error(file, &e)),
            Err(_) => {}
        }
        let mut table = match toml::de::DeTable::parse(text) {
            Ok(table) => table,
            Err(e) => return self.leave_out(toml_error(file, &e)),
        };
        // serde stops at the first unknown key; each one found is taken out and the
        // file read again, so one `check` names every misspelt key (issue 13).
        let mut unknown = 0;
        loop {
            use serde::Deserialize;
            use serde::de::IntoDeserializer;
            let e = match RawFile::deserialize(table.clone().into_deserializer()) {
                // With the unknown keys out, the rest is still checked: one load
                // reports everything (the errors already recorded fail it).
                Ok(raw) => return Some((file, raw)),
                Err(e) => e,
            };
            let range = e.span().unwrap_or(0..0);
            if !is_unknown_key(&e)
                || unknown >= MAX_UNKNOWN_KEYS
                || !remove_key_at(&mut table, &range)
            {
                return self.leave_out(toml_error(file, &e));
            }
            self.errors.push(toml_error(file, &e));
            unknown += 1;
        }
    }

    /// Records an error for which a file, project or task was left out of the load.
    pub(super) fn leave_out<T>(&mut self, error: LoadError) -> Option<T> {
        self.errors.push(error);
        self.incomplete = true;
        None
    }

    pub(super) fn err(
        &mut self,
        file: FileId,
        range: std::ops::Range<usize>,
        message: String,
        label: &str,
    ) {
        self.errors
            .push(LoadError::at(span(file, range), message, label));
    }

    fn load_all(&mut self) -> Option<Workspace> {
        let root = self.root.clone();
        let (root_file, mut raw) = self.read(&root)?;
        let settings = self.settings(root_file, &raw)?;
        self.default_limits = settings.limits;
        self.default_clock = settings.clock;
        let overlays = std::mem::take(&mut raw.overlays);
        // Found as the root by its `[workspace]` table, which a misspelt key inside a
        // dotted header can take out with it when unknown keys are removed.
        let Some(ws) = raw.workspace.take() else {
            return self.leave_out(LoadError::at(
                span(root_file, 0..0),
                "the root wask.toml has no usable `[workspace]` table",
                "expected `[workspace]`",
            ));
        };
        let mut projects = Vec::new();
        match ws.into_inner().projects {
            None => {
                // Implicit mode: the root itself is the one project (WS-002).
                projects.extend(self.project(root_file, raw, "/", true));
            }
            Some(entries) => {
                if raw.project.is_some() || !raw.tasks.is_empty() {
                    let at = raw.project.as_ref().map(|p| p.span()).unwrap_or(0..0);
                    self.err(
                        root_file,
                        at,
                        "a workspace that lists `projects` cannot also be a project".into(),
                        "move this project and its tasks into a listed directory",
                    );
                }
                for dir in self.project_dirs(root_file, &entries) {
                    let host = root.join(dir.trim_start_matches('/'));
                    if let Some((file, raw)) = self.read(&host) {
                        for (table, present) in [
                            ("workspace", raw.workspace.as_ref().map(|s| s.span())),
                            ("cache", raw.cache.as_ref().map(|s| s.span())),
                            ("concurrency", raw.concurrency.as_ref().map(|s| s.span())),
                            ("output", raw.output.as_ref().map(|s| s.span())),
                            ("sandbox", raw.sandbox.as_ref().map(|s| s.span())),
                            (
                                "overlays",
                                raw.overlays.first_key_value().map(|(k, _)| k.span()),
                            ),
                        ] {
                            if let Some(range) = present {
                                self.err(
                                    file,
                                    range,
                                    format!("`[{table}]` belongs in the workspace root's wask.toml, not in a project"),
                                    "not allowed in a project",
                                );
                            }
                        }
                        projects.extend(self.project(file, raw, &dir, false));
                    }
                }
            }
        }
        projects.sort_by(|a: &Project, b| a.name.cmp(&b.name));
        self.apply_overlays(root_file, overlays, &mut projects);
        for pair in projects.windows(2) {
            if pair[0].name == pair[1].name {
                self.errors.push(
                    LoadError::plain(format!(
                        "two projects are named `{}`: {} and {}",
                        pair[0].name, pair[0].dir, pair[1].dir
                    ))
                    .note("project names are unique within a workspace (ID-002)"),
                );
            }
        }
        Some(Workspace {
            root,
            settings,
            projects,
            sources: Sources::default(),
        })
    }

    fn project(
        &mut self,
        file: FileId,
        raw: RawFile,
        dir: &str,
        implicit: bool,
    ) -> Option<Project> {
        let (name, tags) = match raw.project {
            Some(p) => {
                let range = p.span();
                let p = p.into_inner();
                let name = match p.name {
                    Some(n) => {
                        if let Err(why) = check_name(n.get_ref()) {
                            self.err(
                                file,
                                n.span(),
                                format!("invalid project name: {why}"),
                                "here",
                            );
                        }
                        n.into_inner()
                    }
                    None if implicit => self.dir_name(),
                    None => {
                        return self.leave_out(LoadError::at(
                            span(file, range),
                            "`[project]` needs a `name`",
                            "add `name = \"...\"`",
                        ));
                    }
                };
                let mut tags = Vec::new();
                for t in p.tags {
                    if let Err(why) = check_name(t.get_ref()) {
                        self.err(file, t.span(), format!("invalid tag: {why}"), "here");
                    }
                    tags.push(t.into_inner());
                }
                tags.sort();
                tags.dedup();
                (name, tags)
            }
            None if implicit => (self.dir_name(), Vec::new()),
            None => {
                return self.leave_out(LoadError::at(
                    span(file, 0..0),
                    "this wask.toml has no `[project]` table",
                    "expected `[project]` with a `name`",
                ));
            }
        };
        let mut tasks = BTreeMap::new();
        for (tname, t) in raw.tasks {
            if let Err(why) = check_name(tname.get_ref()) {
                self.err(
                    file,
                    tname.span(),
                    format!("invalid task name: {why}"),
                    "here",
                );
            }
            let task_span = span(file, tname.span());
            if let Some(def) = self.task(file, dir, tname.get_ref(), task_span, t.into_inner()) {
                tasks.insert(tname.into_inner(), def);
            }
        }
        Some(Project {
            name,
            dir: dir.to_string(),
            tags,
            tasks,
            file,
        })
    }

    fn dir_name(&self) -> String {
        let name = self
            .root
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if check_name(&name).is_ok() {
            name
        } else {
            "root".into()
        }
    }
}
