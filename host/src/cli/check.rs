//! `wask check`: load the workspace and report every error, running nothing.

use super::{CliError, EXIT_OK};
use std::path::PathBuf;

pub fn check(directory: Option<PathBuf>) -> Result<i32, CliError> {
    let dir = super::start_dir(directory)?;
    let (ws, graph) = super::load(&dir)?;
    println!(
        "workspace {} is valid: {} project{}, {} task{}",
        ws.root.display(),
        ws.projects.len(),
        if ws.projects.len() == 1 { "" } else { "s" },
        graph.nodes.len(),
        if graph.nodes.len() == 1 { "" } else { "s" },
    );
    Ok(EXIT_OK)
}
