//! Load errors with file, line and column (WS-003), collected so that one load reports
//! every problem at once, and rendered in one place.

use codespan_reporting::diagnostic::{Diagnostic, Label};
use codespan_reporting::files::{Files, SimpleFiles};
use codespan_reporting::term::{self, termcolor::WriteColor};
use std::ops::Range;

/// The longest line a message shows whole; longer ones are cut around what matters.
pub const MAX_SHOWN: usize = 200;

/// `text` with every line longer than `max` bytes cut to its start, saying how much was
/// left out: a 400 KB value in a message is shown as its first 200 bytes.
pub fn clip_lines(text: &str, max: usize) -> String {
    text.lines()
        .map(|line| {
            if line.len() <= max {
                return line.to_string();
            }
            let cut = floor_char(line, max);
            format!("{}… ({} more bytes)", &line[..cut], line.len() - cut)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The part of `line` around byte `at`, at most about `width` bytes, with `…` where it
/// was cut, and the byte offset of `at` within what is returned.
pub fn window(line: &str, at: usize, width: usize) -> (String, usize) {
    if line.len() <= width {
        return (line.to_string(), at);
    }
    let start = floor_char(line, at.saturating_sub(width / 3));
    let end = floor_char(line, (start + width).min(line.len()));
    let (lead, trail) = (
        if start > 0 { "…" } else { "" },
        if end < line.len() { "…" } else { "" },
    );
    (
        format!("{lead}{}{trail}", &line[start..end]),
        lead.len() + at - start,
    )
}

/// The largest char boundary of `s` at or below `i`.
fn floor_char(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Index of a source file in [`Sources`].
pub type FileId = usize;

/// The text of every file read during a load, kept for rendering diagnostics.
#[derive(Default)]
pub struct Sources {
    files: SimpleFiles<String, String>,
}

impl Sources {
    /// Adds a file; `name` is how it is shown (workspace-relative).
    pub fn add(&mut self, name: String, text: String) -> FileId {
        self.files.add(name, text)
    }

    /// How file `id` is shown: its path relative to the workspace root.
    pub fn name(&self, id: FileId) -> &str {
        self.files.get(id).map(|f| f.name().as_str()).unwrap_or("")
    }

    pub fn text(&self, id: FileId) -> &str {
        self.files
            .get(id)
            .map(|f| f.source().as_str())
            .unwrap_or("")
    }
}

/// A source location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub file: FileId,
    pub range: Range<usize>,
}

/// One problem found while loading or checking a workspace.
#[derive(Debug, Clone)]
pub struct LoadError {
    pub message: String,
    pub primary: Option<(Span, String)>,
    pub secondary: Vec<(Span, String)>,
    pub notes: Vec<String>,
    /// A finding that does not stop a run (a glob that matches nothing yet).
    pub warning: bool,
}

impl LoadError {
    pub fn at(span: Span, message: impl Into<String>, label: impl Into<String>) -> Self {
        LoadError {
            message: message.into(),
            primary: Some((span, label.into())),
            secondary: Vec::new(),
            notes: Vec::new(),
            warning: false,
        }
    }

    pub fn plain(message: impl Into<String>) -> Self {
        LoadError {
            message: message.into(),
            primary: None,
            secondary: Vec::new(),
            notes: Vec::new(),
            warning: false,
        }
    }

    pub fn also(mut self, span: Span, label: impl Into<String>) -> Self {
        self.secondary.push((span, label.into()));
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// The same finding as a warning.
    pub fn as_warning(mut self) -> Self {
        self.warning = true;
        self
    }
}

/// Every error of a load, with the sources needed to show them.
pub struct LoadErrors {
    pub sources: Sources,
    pub errors: Vec<LoadError>,
    /// What loaded despite the errors, when nothing was left out: the graph's checks
    /// can still run on it, so one `check` reports those too.
    pub partial: Option<Box<crate::workspace::Workspace>>,
}

impl std::fmt::Debug for LoadErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} load error(s)", self.errors.len())
    }
}

impl LoadErrors {
    /// Writes every error as `error: ...` with `┌─ file:line:column` and the source line.
    /// A label on a line too long to show whole is given as a note with its location
    /// and the part of the line around it.
    pub fn render(&self, out: &mut dyn WriteColor) -> std::io::Result<()> {
        let config = term::Config::default();
        for e in &self.errors {
            let mut labels = Vec::new();
            let mut notes: Vec<String> = Vec::new();
            let spans = e
                .primary
                .iter()
                .map(|p| (p, true))
                .chain(e.secondary.iter().map(|s| (s, false)));
            for ((span, label), primary) in spans {
                if let Some(note) = self.long_line_note(span, label) {
                    notes.push(note);
                } else if primary {
                    labels.push(Label::primary(span.file, span.range.clone()).with_message(label));
                } else {
                    labels
                        .push(Label::secondary(span.file, span.range.clone()).with_message(label));
                }
            }
            notes.extend(e.notes.iter().map(|n| clip_lines(n, MAX_SHOWN)));
            let d = if e.warning {
                Diagnostic::warning()
            } else {
                Diagnostic::error()
            };
            let d = d
                .with_message(clip_lines(&e.message, MAX_SHOWN))
                .with_labels(labels)
                .with_notes(notes);
            term::emit(out, &config, &self.sources.files, &d)
                .map_err(|err| std::io::Error::other(err.to_string()))?;
        }
        let errors = self.errors.iter().filter(|e| !e.warning).count();
        if errors == 0 {
            return Ok(());
        }
        writeln!(
            out,
            "error: the workspace has {errors} error{}; nothing was run",
            if errors == 1 { "" } else { "s" }
        )
    }

    /// For a span on a line longer than [`MAX_SHOWN`]: where it is and the line around
    /// it, as a note.
    fn long_line_note(&self, span: &Span, label: &str) -> Option<String> {
        let files = &self.sources.files;
        let line = files.line_index(span.file, span.range.start).ok()?;
        let range = files.line_range(span.file, line).ok()?;
        let text = self
            .sources
            .text(span.file)
            .get(range.clone())?
            .trim_end_matches(['\n', '\r']);
        if text.len() <= MAX_SHOWN {
            return None;
        }
        let at = span.range.start - range.start;
        let (shown, caret) = window(text, at, MAX_SHOWN / 2);
        let column = files
            .column_number(span.file, line, span.range.start)
            .ok()?;
        Some(format!(
            "{label}: {}:{}:{column} (a line of {} bytes; around it:)\n    {shown}\n    {}^",
            files.name(span.file).ok()?,
            line + 1,
            text.len(),
            " ".repeat(shown[..caret].chars().count())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_around_the_point_that_matters() {
        let line = format!("{}X{}", "a".repeat(1000), "b".repeat(1000));
        let (shown, at) = window(&line, 1000, 60);
        assert!(shown.len() < 80 && shown.starts_with('…') && shown.ends_with('…'));
        assert_eq!(&shown[at..at + 1], "X");
        let clipped = clip_lines(&format!("short\n{line}"), 50);
        assert!(clipped.starts_with("short\naaaa"));
        assert!(clipped.ends_with("… (1951 more bytes)"), "{clipped}");
        assert_eq!(
            clip_lines("é".repeat(100).as_str(), 5),
            "éé… (196 more bytes)"
        );
    }

    #[test]
    fn a_load_error_on_a_huge_line_shows_its_location_not_the_line() {
        let mut sources = Sources::default();
        let text = format!("a = 1\nx = [{}]\n", "1, ".repeat(100_000));
        let file = sources.add("wask.toml".into(), text);
        let errors = LoadErrors {
            partial: None,
            sources,
            errors: vec![LoadError::at(
                Span {
                    file,
                    range: 150..151,
                },
                "something is wrong",
                "here",
            )],
        };
        let mut out = codespan_reporting::term::termcolor::NoColor::new(Vec::new());
        errors.render(&mut out).unwrap();
        let shown = String::from_utf8(out.into_inner()).unwrap();
        assert!(shown.len() < 1500, "{} bytes shown", shown.len());
        assert!(shown.contains("here: wask.toml:2:145"), "{shown}");
    }
}
