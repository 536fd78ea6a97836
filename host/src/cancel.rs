//! Whether the user asked wask to stop (Ctrl-C or SIGTERM, EXEC-012), as a value handed
//! to everything that may take long: the scheduler, and the cargo builds of guest
//! crates, which run in a process group of their own and are killed with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The first interrupting signal, once one arrived, or that the run was superseded
/// (`wask watch`: a newer change made it stale). Clones share both.
#[derive(Clone, Default)]
pub struct Cancel {
    signal: Arc<AtomicUsize>,
    superseded: Arc<AtomicBool>,
}

impl Cancel {
    /// A value that is never set (tests, benchmarks).
    pub fn never() -> Cancel {
        Cancel::default()
    }

    /// Installs the handlers: the first SIGINT or SIGTERM sets the returned value (what
    /// is running stops, and the command ends with 128 + the signal); a second one ends
    /// the process at once.
    pub fn on_signals() -> std::io::Result<Cancel> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::flag;
        let signal = Arc::new(AtomicUsize::new(0));
        let armed = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            // Order matters: the shutdown checks `armed` before this signal arms it.
            flag::register_conditional_shutdown(sig, 128 + sig, armed.clone())?;
            flag::register_usize(sig, signal.clone(), sig as usize)?;
            flag::register(sig, armed.clone())?;
        }
        Ok(Cancel {
            signal,
            superseded: Arc::default(),
        })
    }

    /// The signal that arrived first, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s as i32),
        }
    }

    pub fn is_set(&self) -> bool {
        self.signal().is_some() || self.superseded.load(Ordering::SeqCst)
    }

    /// A value for one run: set by the same signals, and by its own [`Cancel::supersede`].
    pub fn for_one_run(&self) -> Cancel {
        Cancel {
            signal: self.signal.clone(),
            superseded: Arc::default(),
        }
    }

    /// Stops what runs with this value (not with the one it came from): a newer change
    /// made it stale. No signal is recorded.
    pub fn supersede(&self) {
        self.superseded.store(true, Ordering::SeqCst);
    }
}
