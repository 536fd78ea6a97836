//! Load errors with file, line and column (WS-003), collected so that one load reports
//! every problem at once, and rendered in one place.

use codespan_reporting::diagnostic::{Diagnostic, Label};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term::{self, termcolor::WriteColor};
use std::ops::Range;

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
}

impl LoadError {
    pub fn at(span: Span, message: impl Into<String>, label: impl Into<String>) -> Self {
        LoadError {
            message: message.into(),
            primary: Some((span, label.into())),
            secondary: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn plain(message: impl Into<String>) -> Self {
        LoadError {
            message: message.into(),
            primary: None,
            secondary: Vec::new(),
            notes: Vec::new(),
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
}

/// Every error of a load, with the sources needed to show them.
pub struct LoadErrors {
    pub sources: Sources,
    pub errors: Vec<LoadError>,
}

impl std::fmt::Debug for LoadErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} load error(s)", self.errors.len())
    }
}

impl LoadErrors {
    /// Writes every error as `error: ...` with `┌─ file:line:column` and the source line.
    pub fn render(&self, out: &mut dyn WriteColor) -> std::io::Result<()> {
        let config = term::Config::default();
        for e in &self.errors {
            let mut labels = Vec::new();
            if let Some((span, label)) = &e.primary {
                labels.push(Label::primary(span.file, span.range.clone()).with_message(label));
            }
            for (span, label) in &e.secondary {
                labels.push(Label::secondary(span.file, span.range.clone()).with_message(label));
            }
            let d = Diagnostic::error()
                .with_message(&e.message)
                .with_labels(labels)
                .with_notes(e.notes.clone());
            term::emit(out, &config, &self.sources.files, &d)
                .map_err(|err| std::io::Error::other(err.to_string()))?;
        }
        writeln!(
            out,
            "error: the workspace has {} error{}; nothing was run",
            self.errors.len(),
            if self.errors.len() == 1 { "" } else { "s" }
        )
    }
}
