//! `checksum`: writes a `SHA256SUMS` manifest of every declared input.
//!
//! `args = [OUT_FILE]` (a project-relative or workspace path). One line per input,
//! `<sha256 hex>  <path>`, sorted by path, in the format `sha256sum` writes. Paths are
//! relative to the project directory (with `../` for inputs in other projects), so
//! `sha256sum -c dist/SHA256SUMS` run from the project directory checks the files.

use sha2::{Digest, Sha256};
use wask_guest::{Result, Task};

wask_guest::main! {
    name: "checksum",
    summary: "writes a SHA256SUMS manifest of every declared input",
    usage: "args = [OUT_FILE]",
    inputs: "the files to list (a dependency's outputs count)",
    outputs: "OUT_FILE, in the format `sha256sum -c` checks",
    run: write_manifest,
}

/// The task body.
fn write_manifest(task: &Task) -> Result<()> {
    let [out] = task.args_exact::<1>()?;
    let out = task.resolve(&out);
    let mut files = Vec::with_capacity(task.inputs().len());
    for input in task.inputs() {
        if *input == out {
            continue;
        }
        let digest = sha256_hex(&task.read(input)?);
        files.push((relative_path(task.project_dir(), input), digest));
    }
    let count = files.len();
    task.write_output(&out, manifest(files))?;
    wask_guest::log(format!("checksum: {count} file(s) -> {out}"));
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Workspace path `to` relative to the project directory `project_dir`.
///
/// `relative_path("/site", "/content/a.html")` -> `../content/a.html`.
fn relative_path(project_dir: &str, to: &str) -> String {
    let from: Vec<&str> = project_dir.split('/').filter(|s| !s.is_empty()).collect();
    let to: Vec<&str> = to.split('/').filter(|s| !s.is_empty()).collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts = vec![".."; from.len() - common];
    parts.extend_from_slice(&to[common..]);
    parts.join("/")
}

/// `(path, hex digest)` pairs as `SHA256SUMS` text, sorted by path.
fn manifest(mut files: Vec<(String, String)>) -> String {
    files.sort();
    files
        .iter()
        .map(|(path, hex)| format!("{hex}  {path}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_the_known_value() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn paths_are_relative_to_the_project() {
        assert_eq!(
            relative_path("/site", "/site/dist/index.html"),
            "dist/index.html"
        );
        assert_eq!(
            relative_path("/site", "/content/a.html"),
            "../content/a.html"
        );
        assert_eq!(relative_path("/", "/a/b"), "a/b");
        assert_eq!(relative_path("/site", "/site-old/x"), "../site-old/x");
    }

    #[test]
    fn manifest_is_sorted_in_sha256sum_format() {
        let text = manifest(vec![("b".into(), "22".into()), ("a".into(), "11".into())]);
        assert_eq!(text, "11  a\n22  b\n");
    }

    #[test]
    fn manifest_covers_every_input() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("content")).unwrap();
        std::fs::create_dir_all(root.join("site/dist")).unwrap();
        std::fs::write(root.join("content/a.html"), "abc").unwrap();
        std::fs::write(root.join("site/dist/index.html"), "").unwrap();
        let task = Task::from_parts(
            root,
            "/site",
            vec!["dist/SHA256SUMS".into()],
            vec!["/content/a.html".into(), "/site/dist/index.html".into()],
            vec!["/site/dist/SHA256SUMS".into()],
        );
        write_manifest(&task).unwrap();
        let sums = std::fs::read_to_string(root.join("site/dist/SHA256SUMS")).unwrap();
        assert_eq!(
            sums,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  ../content/a.html\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  dist/index.html\n"
        );
    }
}
