//! Lowering: the raw values of a file made into checked, typed ones, each problem
//! reported with its span and the load carrying on, so one load reports them all.

mod overlay;
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
