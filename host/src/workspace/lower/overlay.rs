//! Overlays (WS-006): tasks declared once in the root file and attached to every
//! project whose tags match.

use crate::workspace::Project;
use crate::workspace::diag::{FileId, LoadError};
use crate::workspace::load::{Loader, span};
use crate::workspace::names::check_name;
use crate::workspace::raw::{RawOverlay, RawTask};
use std::collections::{BTreeMap, BTreeSet};
use toml::Spanned;

/// An overlay whose tag filter parsed, with the projects it matches.
struct Parsed {
    name: String,
    matched: BTreeSet<usize>,
    tasks: BTreeMap<Spanned<String>, Spanned<RawTask>>,
}

/// One overlay's definition of a task for a project: (overlay index, its definition,
/// the name's location).
type Candidate<'a> = (usize, &'a Spanned<RawTask>, &'a Spanned<String>);

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
        let parsed: Vec<Parsed> = overlays
            .into_iter()
            .filter_map(|(name, overlay)| self.parse_overlay(file, name, overlay, projects))
            .collect();
        for (p, project) in projects.iter_mut().enumerate() {
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
                let Some(&(_, raw, name_span)) = self.winner(file, &parsed, project, tname, &found)
                else {
                    continue;
                };
                if let Err(why) = check_name(tname) {
                    let what = format!("invalid task name: {why}");
                    self.err(file, name_span.span(), what, "here");
                }
                let task_span = span(file, name_span.span());
                let dir = project.dir.clone();
                if let Some(def) = self.task(file, &dir, tname, task_span, raw.get_ref().clone()) {
                    project.tasks.insert(tname.to_string(), def);
                }
            }
        }
    }

    /// One overlay: its name checked, its tag filter parsed and matched against the
    /// projects; `None` (with the error) when the filter does not parse.
    fn parse_overlay(
        &mut self,
        file: FileId,
        name: Spanned<String>,
        overlay: Spanned<RawOverlay>,
        projects: &[Project],
    ) -> Option<Parsed> {
        if let Err(why) = check_name(name.get_ref()) {
            let what = format!("invalid overlay name: {why}");
            self.err(file, name.span(), what, "here");
        }
        let overlay = overlay.into_inner();
        let filter = match crate::filter::Filter::parse(overlay.tags.get_ref()) {
            Ok(f) => f,
            Err(e) => {
                // Point inside the TOML string: past its opening quote.
                let at = overlay.tags.span().start + 1 + e.offset;
                let what = format!(
                    "invalid tag filter in overlay `{}`: {}",
                    name.get_ref(),
                    e.message
                );
                self.err(file, at..at + 1, what, "here");
                return None;
            }
        };
        let matched = (0..projects.len())
            .filter(|&p| filter.matches(|tag| projects[p].tags.iter().any(|t| t == tag)))
            .collect();
        Some(Parsed {
            name: name.into_inner(),
            matched,
            tasks: overlay.tasks,
        })
    }

    /// Among the overlays defining `tname` for `project`, the one whose projects are a
    /// strict subset of every other's; a collision (reported) when there is none.
    fn winner<'a>(
        &mut self,
        file: FileId,
        parsed: &[Parsed],
        project: &Project,
        tname: &str,
        found: &'a [Candidate<'a>],
    ) -> Option<&'a Candidate<'a>> {
        let winner = found.iter().find(|(o, _, _)| {
            found.iter().all(|(other, _, _)| {
                other == o
                    || (parsed[*o].matched.is_subset(&parsed[*other].matched)
                        && parsed[*o].matched != parsed[*other].matched)
            })
        });
        if winner.is_none() {
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
        }
        winner
    }
}
