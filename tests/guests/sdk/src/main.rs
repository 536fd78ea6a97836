//! A guest written with the wask-guest SDK, to test what the SDK does for a task
//! through the binary: `args = [ACTION, ...]`.
//!
//! | action | does |
//! |---|---|
//! | `env NAME OUT` | writes the variable NAME to OUT, or fails as `Task::env` does |
//! | `panic TEXT` | panics with TEXT |
//! | `read PATH` | reads PATH (an I/O error in words) |
//! | `two A B` | takes exactly two more arguments (a usage error otherwise) |

use wask_guest::{Result, Task};

fn act(task: &Task) -> Result<()> {
    let args = task.args();
    match args.first().map(String::as_str) {
        Some("env") if args.len() == 3 => {
            let value = task.env(&args[1])?;
            task.write_output(&args[2], value)
        }
        Some("panic") => panic!("{}", args.get(1).map_or("", |s| s.as_str())),
        Some("read") if args.len() == 2 => task.read(&args[1]).map(drop),
        Some("two") => {
            let [_, _, _] = task.args_exact::<3>()?;
            Ok(())
        }
        _ => Err(task.usage_error(format!("unknown action {args:?}"))),
    }
}

wask_guest::main! {
    name: "sdk",
    summary: "exercises the wask-guest SDK",
    usage: "args = [ACTION, ...]: env NAME OUT | panic TEXT | read PATH | two A B",
    inputs: "what `read` reads",
    outputs: "what `env` writes",
    run: act,
}
