//! Reading `wask.toml` files into a [`Workspace`].
//!
//! TOML syntax and shape errors come from serde (one per file, with its span); every
//! rule wask checks itself (names, paths, references, settings) is checked on every file
//! before anything is reported, so one load shows all of them (WS-003).

use super::diag::{FileId, LoadError, LoadErrors, Sources, Span};
use super::names::{check_name, check_path};
use super::settings::{
    ClockSetting, HashKind, MutexMode, MutexScope, OutputMode, Settings, parse_size,
};
use super::{Located, ModuleSpec, MutexDecl, Project, TaskDef, Workspace, absolutize};
use crate::refs::TaskRef;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use wask_runtime::Limits;

const FILE_NAME: &str = "wask.toml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    workspace: Option<Spanned<RawWorkspace>>,
    project: Option<Spanned<RawProject>>,
    #[serde(default)]
    tasks: BTreeMap<Spanned<String>, Spanned<RawTask>>,
    cache: Option<Spanned<RawCache>>,
    concurrency: Option<Spanned<RawConcurrency>>,
    output: Option<Spanned<RawOutput>>,
    sandbox: Option<Spanned<RawSandbox>>,
    #[serde(default)]
    overlays: BTreeMap<Spanned<String>, Spanned<RawOverlay>>,
}

/// `[overlays.NAME]` (WS-006): tasks attached to every project whose tags match.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverlay {
    tags: Spanned<String>,
    #[serde(default)]
    tasks: BTreeMap<Spanned<String>, Spanned<RawTask>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkspace {
    projects: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProject {
    name: Option<Spanned<String>>,
    #[serde(default)]
    tags: Vec<Spanned<String>>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawTask {
    module: Spanned<RawModule>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    inputs: Vec<Spanned<String>>,
    #[serde(default)]
    outputs: Vec<Spanned<String>>,
    #[serde(default)]
    deps: Vec<Spanned<String>>,
    #[serde(default)]
    weak_deps: Vec<Spanned<String>>,
    mutex: Option<Spanned<RawMutex>>,
    env: Option<RawEnv>,
    limits: Option<RawLimits>,
    clock: Option<Spanned<String>>,
}

/// `module = "x.wasm"`, `{ path = "x.wasm", blake3 = "..." }` or
/// `{ crate = "/plugins/x", blake3 = "..." }`.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawModule {
    Path(String),
    Table(RawModuleTable),
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawModuleTable {
    path: Option<String>,
    #[serde(rename = "crate")]
    crate_dir: Option<String>,
    blake3: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawMutex {
    Name(String),
    Table {
        name: String,
        scope: Option<String>,
        mode: Option<String>,
    },
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawEnv {
    #[serde(default)]
    from_host: Vec<Spanned<String>>,
    #[serde(default)]
    set: BTreeMap<Spanned<String>, String>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum Amount {
    Number(u64),
    Text(String),
}

/// Per-task `limits = { ... }`; `[sandbox]` takes the same keys as defaults.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory: Option<Spanned<Amount>>,
    timeout: Option<Spanned<Amount>>,
    output: Option<Spanned<Amount>>,
    outputs_size: Option<Spanned<Amount>>,
    outputs_count: Option<Spanned<Amount>>,
    module_size: Option<Spanned<Amount>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    hash: Option<Spanned<String>>,
    dir: Option<Spanned<String>>,
    max_age: Option<Spanned<Amount>>,
    max_size: Option<Spanned<Amount>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConcurrency {
    default: Option<Spanned<Amount>>,
    #[serde(default)]
    tags: BTreeMap<Spanned<String>, Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    mode: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSandbox {
    memory: Option<Spanned<Amount>>,
    timeout: Option<Spanned<Amount>>,
    output: Option<Spanned<Amount>>,
    outputs_size: Option<Spanned<Amount>>,
    outputs_count: Option<Spanned<Amount>>,
    module_size: Option<Spanned<Amount>>,
    clock: Option<Spanned<String>>,
    epoch: Option<Spanned<u64>>,
}

impl RawSandbox {
    fn limits(&self) -> RawLimits {
        RawLimits {
            memory: self.memory.clone(),
            timeout: self.timeout.clone(),
            output: self.output.clone(),
            outputs_size: self.outputs_size.clone(),
            outputs_count: self.outputs_count.clone(),
            module_size: self.module_size.clone(),
        }
    }
}

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

struct Loader {
    root: PathBuf,
    sources: Sources,
    errors: Vec<LoadError>,
    /// `[sandbox]` defaults, which task `limits` and `clock` override.
    default_limits: Limits,
    default_clock: ClockSetting,
}

fn span(file: FileId, range: std::ops::Range<usize>) -> Span {
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
            Err(e) => {
                self.errors
                    .push(LoadError::plain(format!("cannot read {shown}: {e}")));
                return None;
            }
        };
        let file = self.sources.add(shown, text);
        match toml::from_str::<RawFile>(self.sources.text(file)) {
            Ok(raw) => Some((file, raw)),
            Err(e) => {
                let range = e.span().unwrap_or(0..0);
                self.errors.push(LoadError::at(
                    span(file, range),
                    e.message().trim().to_string(),
                    "here",
                ));
                None
            }
        }
    }

    fn err(&mut self, file: FileId, range: std::ops::Range<usize>, message: String, label: &str) {
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
        let ws = raw.workspace.take().expect("root has [workspace]");
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

    /// Expands `[workspace] projects` (WS-002): literal directories must hold a
    /// `wask.toml`; glob entries match the directories that do. Sorted, deduplicated.
    fn project_dirs(&mut self, file: FileId, entries: &[Spanned<String>]) -> Vec<String> {
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
                if self.root.join(&pattern).join(FILE_NAME).is_file() {
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
                if matcher.is_match(&rel) && entry.path().join(FILE_NAME).is_file() {
                    dirs.push(format!("/{rel}"));
                }
            }
        }
        dirs.sort();
        dirs.dedup();
        dirs
    }

    fn amount_size(&mut self, file: FileId, v: &Option<Spanned<Amount>>) -> Option<u64> {
        let v = v.as_ref()?;
        let r = match v.get_ref() {
            Amount::Number(n) => Ok(*n),
            Amount::Text(t) => parse_size(t),
        };
        r.map_err(|e| self.err(file, v.span(), e, "expected a size"))
            .ok()
    }

    fn amount_duration(&mut self, file: FileId, v: &Option<Spanned<Amount>>) -> Option<Duration> {
        let v = v.as_ref()?;
        let r = match v.get_ref() {
            Amount::Number(n) => Ok(Duration::from_secs(*n)),
            Amount::Text(t) => humantime::parse_duration(t)
                .map_err(|e| format!("expected a duration like `30s` or `5m`: {e}")),
        };
        r.map_err(|e| self.err(file, v.span(), e, "expected a duration"))
            .ok()
    }

    /// `base` with what `raw` sets: the one merge of `[sandbox]` defaults and a task's
    /// `limits`.
    fn limits(&mut self, file: FileId, base: Limits, raw: &RawLimits) -> Limits {
        let mut l = base;
        if let Some(m) = self.amount_size(file, &raw.memory) {
            l.memory_bytes = m;
        }
        if let Some(t) = self.amount_duration(file, &raw.timeout) {
            l.timeout = t;
        }
        if let Some(o) = self.amount_size(file, &raw.output) {
            l.output_bytes = usize::try_from(o).unwrap_or(usize::MAX);
        }
        if let Some(n) = self.amount_size(file, &raw.outputs_size) {
            l.outputs_size = n;
        }
        if let Some(n) = self.amount_size(file, &raw.outputs_count) {
            l.outputs_count = n;
        }
        if let Some(n) = self.amount_size(file, &raw.module_size) {
            l.module_bytes = n;
        }
        l
    }

    fn clock(
        &mut self,
        file: FileId,
        v: &Option<Spanned<String>>,
        default: ClockSetting,
    ) -> ClockSetting {
        match v.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
            None => default,
            Some(("fixed", _)) => ClockSetting::Fixed,
            Some(("host", _)) => ClockSetting::Host,
            Some((other, range)) => {
                self.err(
                    file,
                    range,
                    format!("unknown clock `{other}`: expected \"fixed\" or \"host\""),
                    "here",
                );
                default
            }
        }
    }

    fn settings(&mut self, file: FileId, raw: &RawFile) -> Option<Settings> {
        let mut s = Settings {
            hash: HashKind::Blake3,
            cache_dir: self.root.join(".wask/cache"),
            jobs: None,
            tag_caps: Vec::new(),
            output_mode: OutputMode::Live,
            limits: Limits::default(),
            clock: ClockSetting::Fixed,
            epoch_seconds: wask_runtime::determinism::DEFAULT_EPOCH_SECONDS,
            cache_max_age: None,
            cache_max_size: None,
        };
        if let Some(cache) = &raw.cache {
            let cache = cache.get_ref();
            if let Some(h) = &cache.hash {
                match h.get_ref().as_str() {
                    "blake3" => s.hash = HashKind::Blake3,
                    "sha256" => s.hash = HashKind::Sha256,
                    other => self.err(
                        file,
                        h.span(),
                        format!("unknown hash `{other}`: expected \"blake3\" or \"sha256\""),
                        "here",
                    ),
                }
            }
            if let Some(d) = &cache.dir {
                s.cache_dir = self.root.join(d.get_ref());
            }
            s.cache_max_size = self.amount_size(file, &cache.max_size);
            s.cache_max_age = self.amount_duration(file, &cache.max_age);
        }
        if let Ok(dir) = std::env::var("WASK_CACHE_DIR")
            && !dir.is_empty()
        {
            s.cache_dir = std::env::current_dir()
                .map(|c| c.join(&dir))
                .unwrap_or(dir.into());
        }
        if let Some(c) = &raw.concurrency {
            let c = c.get_ref();
            if let Some(d) = &c.default {
                match d.get_ref() {
                    Amount::Number(0) => self.err(
                        file,
                        d.span(),
                        "concurrency must be at least 1".into(),
                        "here",
                    ),
                    Amount::Number(n) => s.jobs = Some(*n as usize),
                    Amount::Text(t) if t == "auto" => {}
                    Amount::Text(t) => self.err(
                        file,
                        d.span(),
                        format!("expected \"auto\" or a number, found `{t}`"),
                        "here",
                    ),
                }
            }
            for (tag, cap) in &c.tags {
                if let Err(why) = check_name(tag.get_ref()) {
                    self.err(file, tag.span(), format!("invalid tag name: {why}"), "here");
                }
                if *cap.get_ref() == 0 {
                    self.err(
                        file,
                        cap.span(),
                        "a tag cap must be at least 1".into(),
                        "here",
                    );
                }
                s.tag_caps
                    .push((tag.get_ref().clone(), *cap.get_ref() as usize));
            }
        }
        if let Some(o) = &raw.output
            && let Some(m) = &o.get_ref().mode
        {
            match m.get_ref().as_str() {
                "live" => s.output_mode = OutputMode::Live,
                "buffered" => s.output_mode = OutputMode::Buffered,
                other => self.err(
                    file,
                    m.span(),
                    format!("unknown output mode `{other}`: expected \"live\" or \"buffered\""),
                    "here",
                ),
            }
        }
        if let Some(sb) = &raw.sandbox {
            let sb = sb.get_ref();
            s.limits = self.limits(file, s.limits, &sb.limits());
            s.clock = self.clock(file, &sb.clock, ClockSetting::Fixed);
            if let Some(e) = &sb.epoch {
                s.epoch_seconds = *e.get_ref();
            }
        }
        Some(s)
    }

    /// WS-006: attaches each overlay's tasks to the projects its tag filter matches. A
    /// project's own task wins; among overlays, one whose matched projects are a strict
    /// subset of every other's wins; anything else is a collision (DAG-004).
    fn apply_overlays(
        &mut self,
        file: FileId,
        overlays: BTreeMap<Spanned<String>, Spanned<RawOverlay>>,
        projects: &mut [Project],
    ) {
        struct Parsed {
            name: String,
            matched: BTreeSet<usize>,
            tasks: BTreeMap<Spanned<String>, Spanned<RawTask>>,
        }
        let mut parsed = Vec::new();
        for (name, overlay) in overlays {
            if let Err(why) = check_name(name.get_ref()) {
                self.err(
                    file,
                    name.span(),
                    format!("invalid overlay name: {why}"),
                    "here",
                );
            }
            let overlay = overlay.into_inner();
            let text = overlay.tags.get_ref();
            let filter = match crate::filter::Filter::parse(text) {
                Ok(f) => f,
                Err(e) => {
                    // Point inside the TOML string: past its opening quote.
                    let at = overlay.tags.span().start + 1 + e.offset;
                    self.err(
                        file,
                        at..at + 1,
                        format!(
                            "invalid tag filter in overlay `{}`: {}",
                            name.get_ref(),
                            e.message
                        ),
                        "here",
                    );
                    continue;
                }
            };
            let matched = (0..projects.len())
                .filter(|&p| filter.matches(|tag| projects[p].tags.iter().any(|t| t == tag)))
                .collect();
            parsed.push(Parsed {
                name: name.into_inner(),
                matched,
                tasks: overlay.tasks,
            });
        }
        for (p, project) in projects.iter_mut().enumerate() {
            // Per task name: (overlay index, its definition, the name's location).
            type Candidate<'a> = (usize, &'a Spanned<RawTask>, &'a Spanned<String>);
            let mut candidates: BTreeMap<&str, Vec<Candidate<'_>>> = BTreeMap::new();
            for (o, overlay) in parsed.iter().enumerate() {
                if !overlay.matched.contains(&p) {
                    continue;
                }
                for (tname, raw) in &overlay.tasks {
                    if !project.tasks.contains_key(tname.get_ref()) {
                        candidates
                            .entry(tname.get_ref())
                            .or_default()
                            .push((o, raw, tname));
                    }
                }
            }
            for (tname, found) in candidates {
                let winner = found.iter().find(|(o, _, _)| {
                    found.iter().all(|(other, _, _)| {
                        other == o
                            || (parsed[*o].matched.is_subset(&parsed[*other].matched)
                                && parsed[*o].matched != parsed[*other].matched)
                    })
                });
                let Some((_, raw, name_span)) = winner else {
                    let names: Vec<&str> = found
                        .iter()
                        .map(|(o, _, _)| parsed[*o].name.as_str())
                        .collect();
                    let mut error = LoadError::at(
                        span(file, found[0].2.span()),
                        format!(
                            "overlays {} all define task `{tname}` for project {}, and none is more specific",
                            names.join(", "),
                            project.name
                        ),
                        "defined here",
                    );
                    for (_, _, other) in &found[1..] {
                        error = error.also(span(file, other.span()), "and here");
                    }
                    self.errors.push(error.note(
                        "an overlay wins when the projects it matches are a strict subset of the other's; or define the task in the project itself",
                    ));
                    continue;
                };
                if let Err(why) = check_name(tname) {
                    self.err(
                        file,
                        name_span.span(),
                        format!("invalid task name: {why}"),
                        "here",
                    );
                }
                let task_span = span(file, name_span.span());
                let dir = project.dir.clone();
                if let Some(def) = self.task(file, &dir, tname, task_span, raw.get_ref().clone()) {
                    project.tasks.insert(tname.to_string(), def);
                }
            }
        }
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
                        self.err(
                            file,
                            range,
                            "`[project]` needs a `name`".into(),
                            "add `name = \"...\"`",
                        );
                        return None;
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
                self.errors.push(LoadError::at(
                    span(file, 0..0),
                    "this wask.toml has no `[project]` table".to_string(),
                    "expected `[project]` with a `name`",
                ));
                return None;
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

    fn paths(
        &mut self,
        file: FileId,
        dir: &str,
        raw: Vec<Spanned<String>>,
        what: &str,
    ) -> Vec<Located<String>> {
        let mut out = Vec::new();
        for p in raw {
            if let Err(why) = check_path(p.get_ref()) {
                self.err(
                    file,
                    p.span(),
                    format!("invalid {what} path `{}`: {why}", p.get_ref()),
                    "here",
                );
                continue;
            }
            let abs = absolutize(dir, p.get_ref());
            if abs == "/.wask" || abs.starts_with("/.wask/") {
                self.err(
                    file,
                    p.span(),
                    format!("`/.wask` is reserved for wask itself and cannot be a task {what}"),
                    "here",
                );
                continue;
            }
            if let Err(e) = wask_runtime::paths::glob_set(std::slice::from_ref(&abs)) {
                self.err(
                    file,
                    p.span(),
                    format!("invalid glob in {what} `{}`: {e}", p.get_ref()),
                    "here",
                );
                continue;
            }
            out.push(Located {
                value: abs,
                span: span(file, p.span()),
            });
        }
        out
    }

    fn refs(&mut self, file: FileId, raw: Vec<Spanned<String>>) -> Vec<Located<String>> {
        let mut out = Vec::new();
        for r in raw {
            if let Err(why) = TaskRef::parse(r.get_ref()) {
                self.err(
                    file,
                    r.span(),
                    format!("invalid task reference `{}`: {why}", r.get_ref()),
                    "here",
                );
                continue;
            }
            out.push(Located {
                value: r.get_ref().clone(),
                span: span(file, r.span()),
            });
        }
        out
    }

    /// The task's module: a `.wasm` path or a guest crate, with an optional pinned
    /// blake3 digest.
    fn module(
        &mut self,
        file: FileId,
        dir: &str,
        raw: &Spanned<RawModule>,
    ) -> Option<(Located<String>, ModuleSpec)> {
        let at = raw.span();
        let (path, is_crate, pin) = match raw.get_ref() {
            RawModule::Path(p) => (p.clone(), false, None),
            RawModule::Table(t) => match (&t.path, &t.crate_dir) {
                (Some(p), None) => (p.clone(), false, t.blake3.clone()),
                (None, Some(c)) => (c.clone(), true, t.blake3.clone()),
                _ => {
                    self.err(
                        file,
                        at,
                        "a module table needs exactly one of `path` (a .wasm file) or `crate` (a guest crate directory)".into(),
                        "here",
                    );
                    return None;
                }
            },
        };
        let what = if is_crate {
            "crate directory"
        } else {
            "module path"
        };
        if let Err(why) = check_path(&path) {
            self.err(file, at, format!("invalid {what}: {why}"), "here");
            return None;
        }
        if path.split('/').any(wask_runtime::paths::is_glob_segment) {
            self.err(file, at, format!("a {what} cannot be a glob"), "here");
            return None;
        }
        if let Some(pin) = &pin {
            let valid = pin.len() == 64
                && pin
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
            if !valid {
                self.err(
                    file,
                    at.clone(),
                    format!("`blake3 = \"{pin}\"` is not a digest: expected 64 lower-case hex digits (`b3sum x.wasm` or `wask` prints it)"),
                    "here",
                );
                return None;
            }
        }
        let value = absolutize(dir, &path);
        let spec = if is_crate {
            ModuleSpec::Crate {
                dir: value.clone(),
                pin,
            }
        } else {
            ModuleSpec::File {
                path: value.clone(),
                pin,
            }
        };
        Some((
            Located {
                value,
                span: span(file, at),
            },
            spec,
        ))
    }

    fn task(
        &mut self,
        file: FileId,
        dir: &str,
        name: &str,
        task_span: Span,
        raw: RawTask,
    ) -> Option<TaskDef> {
        let module = self.module(file, dir, &raw.module);
        let inputs = self.paths(file, dir, raw.inputs, "input");
        let outputs = self.paths(file, dir, raw.outputs, "output");
        let deps = self.refs(file, raw.deps);
        let weak_deps = self.refs(file, raw.weak_deps);

        let mutex = raw.mutex.map(|m| {
            let range = m.span();
            let (name, scope, mode) = match m.into_inner() {
                RawMutex::Name(n) => (n, None, None),
                RawMutex::Table { name, scope, mode } => (name, scope, mode),
            };
            let (scope, name) = match (name.strip_prefix("~:"), scope.as_deref()) {
                (Some(n), _) => (MutexScope::Project, n.to_string()),
                (None, None | Some("workspace")) => (MutexScope::Workspace, name),
                (None, Some("project")) => (MutexScope::Project, name),
                (None, Some(other)) => {
                    self.err(
                        file,
                        range.clone(),
                        format!(
                            "unknown mutex scope `{other}`: expected \"workspace\" or \"project\""
                        ),
                        "here",
                    );
                    (MutexScope::Workspace, name)
                }
            };
            if let Err(why) = check_name(&name) {
                self.err(
                    file,
                    range.clone(),
                    format!("invalid mutex name: {why}"),
                    "here",
                );
            }
            let mode = match mode.as_deref() {
                None | Some("exclusive") => MutexMode::Exclusive,
                Some("shared") => MutexMode::Shared,
                Some(other) => {
                    self.err(
                        file,
                        range,
                        format!(
                            "unknown mutex mode `{other}`: expected \"exclusive\" or \"shared\""
                        ),
                        "here",
                    );
                    MutexMode::Exclusive
                }
            };
            MutexDecl { name, scope, mode }
        });

        let mut env_from_host = Vec::new();
        let mut env_set = BTreeMap::new();
        if let Some(env) = raw.env {
            for n in env.from_host {
                if let Err(why) = check_env_name(n.get_ref()) {
                    self.err(file, n.span(), why, "here");
                }
                env_from_host.push(n.into_inner());
            }
            for (k, v) in env.set {
                if let Err(why) = check_env_name(k.get_ref()) {
                    self.err(file, k.span(), why, "here");
                }
                env_set.insert(k.into_inner(), v);
            }
        }
        env_from_host.sort();
        env_from_host.dedup();

        let task_limits = self.limits(file, self.default_limits, &raw.limits.unwrap_or_default());
        let clock = self.clock(file, &raw.clock, self.default_clock);
        let (module, module_spec) = module?;
        Some(TaskDef {
            name: name.to_string(),
            span: task_span,
            module,
            module_spec,
            args: raw.args,
            inputs,
            outputs,
            deps,
            weak_deps,
            mutex,
            env_from_host,
            env_set,
            limits: task_limits,
            clock,
        })
    }
}

fn check_env_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains(['=', '\0']) {
        Err(format!(
            "invalid environment variable name {name:?}: names are non-empty and contain no `=` or NUL"
        ))
    } else {
        Ok(())
    }
}
