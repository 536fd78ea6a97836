//! Lowering: the raw values of a file made into checked, typed ones, each problem
//! reported with its span and the load carrying on, so one load reports them all.

mod overlay;
pub(crate) mod remote;
mod settings;
mod task;

use super::diag::FileId;
use super::load::Loader;
use super::raw::{Amount, RawLimits};
use super::settings::{ClockSetting, parse_size};
use std::time::Duration;
use toml::Spanned;
use wask_runtime::Limits;

impl Loader {
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
            if t > wask_runtime::MAX_TIMEOUT {
                let span = raw.timeout.as_ref().map(|v| v.span()).unwrap_or_default();
                self.err(
                    file,
                    span,
                    "a timeout is at most a year (`366d`)".into(),
                    "here",
                );
            } else {
                l.timeout = t;
            }
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
        v.as_ref()
            .and_then(|v| self.keyword(file, v.get_ref(), v.span(), "clock", ClockSetting::NAMES))
            .unwrap_or(default)
    }

    /// The value `text` names among `choices`, or an error at `range` naming them all:
    /// the one parser of every keyword setting (hash, output mode, clock, mutex scope
    /// and mode).
    fn keyword<T: Copy>(
        &mut self,
        file: FileId,
        text: &str,
        range: std::ops::Range<usize>,
        what: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        if let Some((_, value)) = choices.iter().find(|(name, _)| *name == text) {
            return Some(*value);
        }
        let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        let expected = match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        self.err(
            file,
            range,
            format!("unknown {what} `{text}`: expected {expected}"),
            "here",
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::load::{Loader, load};
    use super::super::raw::{Amount, RawLimits};
    use super::super::settings::{ClockSetting, HashKind};
    use crate::refs::TaskRef;
    use std::time::Duration;
    use toml::Spanned;
    use wask_runtime::Limits;

    fn loader() -> Loader {
        Loader {
            root: std::path::PathBuf::from("/nowhere"),
            sources: Default::default(),
            errors: Vec::new(),
            default_limits: Limits::default(),
            default_clock: ClockSetting::Fixed,
            incomplete: false,
        }
    }

    fn amount(text: &str) -> Option<Spanned<Amount>> {
        Some(Spanned::new(3..9, Amount::Text(text.to_string())))
    }

    #[test]
    fn a_keyword_is_one_of_its_names_or_an_error_listing_them_all() {
        let mut l = loader();
        assert_eq!(
            l.keyword(0, "host", 0..4, "clock", ClockSetting::NAMES),
            Some(ClockSetting::Host)
        );
        assert!(l.errors.is_empty());
        assert_eq!(
            l.keyword(0, "Host", 5..9, "clock", ClockSetting::NAMES),
            None
        );
        assert_eq!(
            l.errors[0].message,
            "unknown clock `Host`: expected \"fixed\" or \"host\""
        );
        assert_eq!(l.errors[0].primary.as_ref().unwrap().0.range, 5..9);
        assert_eq!(l.keyword(0, "md5", 0..3, "hash", HashKind::NAMES), None);
        assert_eq!(
            l.errors[1].message,
            "unknown hash `md5`: expected \"blake3\" or \"sha256\""
        );
        let three = [("a", 1u8), ("b", 2), ("c", 3)];
        assert_eq!(l.keyword(0, "b", 0..1, "letter", &three), Some(2));
        assert_eq!(l.keyword(0, "d", 0..1, "letter", &three), None);
        assert_eq!(
            l.errors[2].message,
            "unknown letter `d`: expected \"a\", \"b\" or \"c\""
        );
        let one = [("only", 1u8)];
        assert_eq!(l.keyword(0, "other", 0..5, "thing", &one), None);
        assert_eq!(
            l.errors[3].message,
            "unknown thing `other`: expected \"only\""
        );
    }

    #[test]
    fn task_limits_override_the_defaults_one_by_one() {
        let mut l = loader();
        let base = Limits {
            memory_bytes: 1,
            timeout: Duration::from_secs(2),
            output_bytes: 3,
            outputs_size: 4,
            outputs_count: 5,
            module_bytes: 6,
        };
        let raw = RawLimits {
            memory: amount("64MiB"),
            timeout: amount("90s"),
            outputs_count: Some(Spanned::new(0..2, Amount::Number(7))),
            ..Default::default()
        };
        let merged = l.limits(0, base, &raw);
        assert!(l.errors.is_empty());
        assert_eq!(merged.memory_bytes, 64 << 20);
        assert_eq!(merged.timeout, Duration::from_secs(90));
        assert_eq!(merged.outputs_count, 7);
        // What the task does not set stays the default.
        assert_eq!(
            (
                merged.output_bytes,
                merged.outputs_size,
                merged.module_bytes
            ),
            (3, 4, 6)
        );
    }

    #[test]
    fn a_bad_limit_is_an_error_at_its_span_and_keeps_the_default() {
        let mut l = loader();
        let raw = RawLimits {
            memory: amount("lots"),
            timeout: amount("367d"),
            ..Default::default()
        };
        let merged = l.limits(0, Limits::default(), &raw);
        assert_eq!(merged.memory_bytes, Limits::default().memory_bytes);
        assert_eq!(merged.timeout, Limits::default().timeout);
        assert_eq!(l.errors.len(), 2, "{:?}", l.errors);
        assert!(
            l.errors
                .iter()
                .all(|e| e.primary.as_ref().unwrap().0.range == (3..9))
        );
        assert!(l.errors[1].message.contains("at most a year"));
    }

    #[test]
    fn a_loaded_task_keeps_what_load_checked_typed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("wask.toml"),
            "[workspace]\n\n[sandbox]\nmemory = \"32MiB\"\nclock = \"host\"\n\n\
             [project]\nname = \"p\"\n\n\
             [tasks.a]\nmodule = \"tools/a.wasm\"\nargs = [\"x\"]\n\
             inputs = [\"src/*.txt\"]\noutputs = [\"out/a.txt\"]\n\
             limits = { timeout = \"5s\" }\nclock = \"fixed\"\n\n\
             [tasks.b]\nmodule = \"tools/b.wasm\"\ndeps = [\"~:a\"]\nweak_deps = [\"p:a\"]\n",
        )
        .unwrap();
        let ws = load(dir.path()).unwrap_or_else(|e| panic!("{e:?}"));
        let p = ws.project("p").unwrap();
        let (a, b) = (&p.tasks["a"], &p.tasks["b"]);
        assert_eq!(a.module.value, "/tools/a.wasm");
        assert_eq!(a.inputs[0].value, "/src/*.txt");
        assert_eq!(a.outputs[0].value, "/out/a.txt");
        assert_eq!(a.args, ["x"]);
        // The task's own settings win over `[sandbox]`; what it leaves comes from there.
        assert_eq!(a.clock, ClockSetting::Fixed);
        assert_eq!(a.limits.timeout, Duration::from_secs(5));
        assert_eq!(a.limits.memory_bytes, 32 << 20);
        assert_eq!(b.clock, ClockSetting::Host);
        assert_eq!(b.deps[0].value, TaskRef::SameProject("a".into()));
        assert_eq!(
            b.weak_deps[0].value,
            TaskRef::Project("p".into(), "a".into())
        );
        let text = ws.sources.text(b.deps[0].span.file);
        assert_eq!(&text[b.deps[0].span.range.clone()], "\"~:a\"");
    }
}
