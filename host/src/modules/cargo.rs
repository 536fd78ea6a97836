//! Running cargo for a guest crate so that stopping wask stops the build: cargo runs in
//! a process group of its own (so a signal meant for wask alone, from `timeout` or a
//! service manager, can be passed on to everything the build started: rustc, build
//! scripts, their children), dies with wask if wask is killed, and is waited for while
//! wask watches for Ctrl-C or SIGTERM.

use crate::cancel::Cancel;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// How often a running build looks at the cancel flag.
const POLL: Duration = Duration::from_millis(20);

/// Why cargo did not run to its end.
pub enum Stopped {
    /// The user asked to stop; the build's process group was killed.
    Cancelled,
    /// Cargo could not be started or waited for.
    Io(std::io::Error),
}

/// Runs `cmd` to completion, capturing its output, unless `cancel` is set first; then
/// kills its whole process group. Whatever the build left running in its group when
/// cargo exits is killed too. With `progress`, each `Compiling ...` line cargo prints is
/// also shown on stderr as it comes, under that label: a long build is not silence.
pub fn run(mut cmd: Command, cancel: &Cancel, progress: Option<&str>) -> Result<Output, Stopped> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: between fork and exec this only calls prctl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            // If wask dies without a chance to kill the group, cargo goes with it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(Stopped::Io)?;
    let group = child.id() as i32;
    let kill_group = || {
        // SAFETY: kill with a negative pid signals the process group cargo leads.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    };
    let label = progress.map(str::to_string);
    let drain = |pipe: Option<Box<dyn Read + Send>>, label: Option<String>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let Some(p) = pipe else {
                return bytes;
            };
            let mut reader = std::io::BufReader::new(p);
            let mut line = Vec::new();
            while matches!(std::io::BufRead::read_until(&mut reader, b'\n', &mut line), Ok(n) if n > 0)
            {
                if let Some(label) = &label {
                    let text = String::from_utf8_lossy(&line);
                    if let Some(what) = text.trim().strip_prefix("Compiling ") {
                        eprintln!("  building {label}: compiling {what}");
                    }
                }
                bytes.append(&mut line);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        None,
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        label,
    );
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if cancel.is_set() => {
                kill_group();
                let _ = child.wait();
                return Err(Stopped::Cancelled);
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => {
                kill_group();
                return Err(Stopped::Io(e));
            }
        }
    };
    kill_group();
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}
