//! Overlays (WS-006): tasks declared once in the root file and attached to every
//! project whose tags match.

use crate::workspace::Project;
use crate::workspace::diag::{FileId, LoadError};
use crate::workspace::load::{Loader, span};
use crate::workspace::names::check_name;
use crate::workspace::raw::{RawOverlay, RawTask};
use std::collections::{BTreeMap, BTreeSet};
use toml::Spanned;

impl Loader {
    /// WS-006: attaches each overlay's tasks to the projects its tag filter matches. A
    /// project's own task wins; among overlays, one whose matched projects are a strict
    /// subset of every other's wins; anything else is a collision (DAG-004).
    pub(in crate::workspace) fn apply_overlays(
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
}
