//! A task's declaration (WS-005) made into a [`TaskDef`]: its module, paths,
//! references, mutex, environment and limits.

use crate::refs::TaskRef;
use crate::workspace::diag::{FileId, LoadError, Span};
use crate::workspace::load::{Loader, span};
use crate::workspace::names::{check_name, check_path};
use crate::workspace::raw::{RawEnv, RawModule, RawMutex, RawTask};
use crate::workspace::settings::{MutexMode, MutexScope};
use crate::workspace::{Located, ModuleSpec, MutexDecl, TaskDef, absolutize};
use std::collections::BTreeMap;
use toml::Spanned;

/// Environment variables that hold wask's own credentials.
const WASK_SECRETS: &[&str] = &["WASK_REMOTE_CACHE_TOKEN", "WASK_SIGNING_KEY"];

impl Loader {
    fn paths(
        &mut self,
        file: FileId,
        dir: &str,
        raw: Vec<Spanned<String>>,
        what: &str,
    ) -> Vec<Located<String>> {
        let mut out = Vec::new();
        for p in raw {
            // `!PATTERN` takes what PATTERN matches out (turbo's and moon's spelling).
            let (negated, text) = match p.get_ref().strip_prefix('!') {
                Some(rest) => (true, rest.to_string()),
                None => (false, p.get_ref().clone()),
            };
            let p = Spanned::new(p.span(), text);
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
            if wask_runtime::paths::is_reserved(&abs) {
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
                value: if negated { format!("!{abs}") } else { abs },
                span: span(file, p.span()),
            });
        }
        out
    }

    /// `deps` or `weak_deps`, parsed once: what load checked it keeps typed.
    fn refs(&mut self, file: FileId, raw: Vec<Spanned<String>>) -> Vec<Located<TaskRef>> {
        let mut out = Vec::new();
        for r in raw {
            match TaskRef::parse(r.get_ref()) {
                Ok(parsed) => out.push(Located {
                    value: parsed,
                    span: span(file, r.span()),
                }),
                Err(why) => self.err(
                    file,
                    r.span(),
                    format!("invalid task reference `{}`: {why}", r.get_ref()),
                    "here",
                ),
            }
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

    pub(in crate::workspace) fn task(
        &mut self,
        file: FileId,
        dir: &str,
        name: &str,
        task_span: Span,
        raw: RawTask,
    ) -> Option<TaskDef> {
        let module = self.module(file, dir, &raw.module);
        let inputs = self.paths(file, dir, raw.inputs, "input");
        // An output exclusion is kept apart: every rule about where a task writes reads
        // `outputs`, and an exclusion names nothing it may write.
        let (output_exclusions, outputs): (Vec<_>, Vec<_>) = self
            .paths(file, dir, raw.outputs, "output")
            .into_iter()
            .partition(|o| o.value.starts_with('!'));
        let output_exclusions = output_exclusions
            .into_iter()
            .map(|o| Located {
                value: o.value[1..].to_string(),
                span: o.span,
            })
            .collect();
        let deps = self.refs(file, raw.deps);
        let weak_deps = self.refs(file, raw.weak_deps);

        // WASI hands arguments and environment values to the guest as C strings: a NUL
        // would cut one short, and the task would see less than its key says.
        for (i, arg) in raw.args.iter().enumerate() {
            if arg.contains('\0') {
                let what = format!(
                    "argument {} of task `{name}` contains a NUL character, which a WASI program cannot receive",
                    i + 1
                );
                self.errors
                    .push(LoadError::at(task_span.clone(), what, "in this task"));
            }
        }
        let mutex = raw.mutex.map(|m| self.mutex(file, m));
        let (env_from_host, env_set) = self.env(file, raw.env);

        let task_limits = self.limits(file, self.default_limits, &raw.limits.unwrap_or_default());
        let clock = self.clock(file, &raw.clock, self.default_clock);
        if let Some(text) = &raw.description
            && (text.chars().any(char::is_control) || text.len() > 300)
        {
            let what = format!(
                "the description of task `{name}` must be one line of at most 300 bytes, without control characters"
            );
            self.errors
                .push(LoadError::at(task_span.clone(), what, "in this task"));
        }
        // A task left out: the graph of what is left would miss it (see `Loader`).
        let Some((module, module_spec)) = module else {
            self.incomplete = true;
            return None;
        };
        Some(TaskDef {
            name: name.to_string(),
            span: task_span,
            module,
            module_spec,
            args: raw.args,
            inputs,
            outputs,
            output_exclusions,
            deps,
            weak_deps,
            mutex,
            env_from_host,
            env_set,
            limits: task_limits,
            clock,
            gitignore: raw.gitignore.unwrap_or(true),
            description: raw.description,
        })
    }

    /// A task's `mutex`: a name (`~:name` for one per project) or a table with a
    /// scope and a mode.
    fn mutex(&mut self, file: FileId, m: Spanned<RawMutex>) -> MutexDecl {
        let range = m.span();
        let (name, scope, mode) = match m.into_inner() {
            RawMutex::Name(n) => (n, None, None),
            RawMutex::Table(t) => (t.name, t.scope, t.mode),
        };
        let (scope, name) = match (name.strip_prefix("~:"), scope) {
            (Some(n), _) => (MutexScope::Project, n.to_string()),
            (None, None) => (MutexScope::Workspace, name),
            (None, Some(scope)) => {
                let found = self.keyword(
                    file,
                    &scope,
                    range.clone(),
                    "mutex scope",
                    MutexScope::NAMES,
                );
                (found.unwrap_or(MutexScope::Workspace), name)
            }
        };
        if let Err(why) = check_name(&name) {
            let what = format!("invalid mutex name: {why}");
            self.err(file, range.clone(), what, "here");
        }
        let mode = mode
            .and_then(|m| self.keyword(file, &m, range, "mutex mode", MutexMode::NAMES))
            .unwrap_or(MutexMode::Exclusive);
        MutexDecl { name, scope, mode }
    }

    /// A task's `env`: the host variables it may see (sorted, once each) and the ones
    /// it sets.
    fn env(
        &mut self,
        file: FileId,
        env: Option<RawEnv>,
    ) -> (Vec<String>, BTreeMap<String, String>) {
        let mut from_host = Vec::new();
        let mut set = BTreeMap::new();
        if let Some(env) = env {
            for n in env.from_host {
                if let Err(why) = check_env_name(n.get_ref()) {
                    self.err(file, n.span(), why, "here");
                }
                // wask's own credentials never reach a task (nor, through it, a key,
                // a stream or a server).
                if WASK_SECRETS.contains(&n.get_ref().as_str()) {
                    let what = format!(
                        "`{}` is wask's own credential: no task may read it",
                        n.get_ref()
                    );
                    self.err(file, n.span(), what, "here");
                }
                from_host.push(n.into_inner());
            }
            for (k, v) in env.set {
                if let Err(why) = check_env_name(k.get_ref()) {
                    self.err(file, k.span(), why, "here");
                }
                if v.contains('\0') {
                    let what = format!(
                        "the value of `{}` contains a NUL character, which a WASI program cannot receive",
                        k.get_ref()
                    );
                    self.err(file, k.span(), what, "here");
                }
                set.insert(k.into_inner(), v);
            }
        }
        from_host.sort();
        from_host.dedup();
        (from_host, set)
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
