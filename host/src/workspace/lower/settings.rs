//! Workspace settings (WS-004): `[cache]`, `[concurrency]`, `[output]`, `[sandbox]`.

use crate::workspace::diag::FileId;
use crate::workspace::load::Loader;
use crate::workspace::names::check_name;
use crate::workspace::raw::{Amount, RawCache, RawConcurrency, RawFile};
use crate::workspace::settings::{ClockSetting, HashKind, OutputMode, Settings};
use wask_runtime::Limits;

impl Loader {
    pub(in crate::workspace) fn settings(
        &mut self,
        file: FileId,
        raw: &RawFile,
    ) -> Option<Settings> {
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
            remote: None,
        };
        if let Some(cache) = &raw.cache {
            self.cache_settings(file, cache.get_ref(), &mut s);
        }
        if let Ok(dir) = std::env::var("WASK_CACHE_DIR")
            && !dir.is_empty()
        {
            s.cache_dir = std::env::current_dir()
                .map(|c| c.join(&dir))
                .unwrap_or(dir.into());
        }
        s.remote = self.remote_from_environment(s.remote.take());
        if let Some(c) = &raw.concurrency {
            self.concurrency(file, c.get_ref(), &mut s);
        }
        if let Some(o) = &raw.output
            && let Some(m) = &o.get_ref().mode
            && let Some(mode) = self.keyword(
                file,
                m.get_ref(),
                m.span(),
                "output mode",
                OutputMode::NAMES,
            )
        {
            s.output_mode = mode;
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

    /// `[cache]`: the hash function, the directory, and `clean`'s defaults.
    fn cache_settings(&mut self, file: FileId, cache: &RawCache, s: &mut Settings) {
        if let Some(h) = &cache.hash
            && let Some(kind) = self.keyword(file, h.get_ref(), h.span(), "hash", HashKind::NAMES)
        {
            s.hash = kind;
        }
        if let Some(d) = &cache.dir {
            s.cache_dir = self.root.join(d.get_ref());
        }
        s.cache_max_size = self.amount_size(file, &cache.max_size);
        s.cache_max_age = self.amount_duration(file, &cache.max_age);
        if let Some(remote) = &cache.remote {
            s.remote = self.remote(file, remote);
        }
    }

    /// `[concurrency]`: the default number of jobs and the per-tag caps.
    fn concurrency(&mut self, file: FileId, c: &RawConcurrency, s: &mut Settings) {
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
                let what = "a tag cap must be at least 1".into();
                self.err(file, cap.span(), what, "here");
            }
            s.tag_caps
                .push((tag.get_ref().clone(), *cap.get_ref() as usize));
        }
    }
}
