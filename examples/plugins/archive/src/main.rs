//! `archive`: packs declared inputs into a reproducible `.tar.gz` (or `.tar`).
//!
//! `args = [BASE_DIR, OUT_FILE]` (project-relative or workspace paths). Every declared
//! input under `BASE_DIR` (but `OUT_FILE`) becomes an entry at its path under `BASE_DIR`;
//! `/` packs inputs from several projects with their workspace layout, so relative links
//! between them still work once unpacked. The format comes from `OUT_FILE`'s name:
//! `.tar.gz`/`.tgz` (gzip) or `.tar`.
//!
//! Two runs over the same files write the same bytes: entries are sorted by path, each
//! directory gets its own entry before its contents, every entry has uid and gid 0, no
//! user or group name, mode `0644` (files) or `0755` (directories) and the same mtime:
//! `SOURCE_DATE_EPOCH` when the task sets it (`env.set`), else 1980-01-01T00:00:00Z. The
//! gzip header has no file name, mtime 0 and OS "unknown". Built with
//! [tar](https://crates.io/crates/tar) and [flate2](https://crates.io/crates/flate2) on its
//! pure-Rust `miniz_oxide` backend.

use std::collections::BTreeMap;
use std::io::Write;
use wask_guest::{Error, Result, Task};

/// 1980-01-01T00:00:00Z, the earliest time a zip file can hold and wask's fixed clock.
const DEFAULT_MTIME: u64 = 315_532_800;

wask_guest::main! {
    name: "archive",
    summary: "packs declared inputs into a reproducible .tar.gz or .tar",
    usage: "args = [BASE_DIR, OUT_FILE]; the format comes from OUT_FILE's name (.tar.gz, .tgz or .tar)",
    inputs: "the files to pack, under BASE_DIR (`/` packs several projects with their layout)",
    outputs: "OUT_FILE, byte-identical for the same files",
    run: write_archive,
}

/// The task body.
fn write_archive(task: &Task) -> Result<()> {
    let [base, out] = task.args_exact::<2>()?;
    let base = task.resolve(&base);
    let out = task.resolve(&out);
    let gzip = if out.ends_with(".tar.gz") || out.ends_with(".tgz") {
        true
    } else if out.ends_with(".tar") {
        false
    } else {
        return Err(Error::msg(format!(
            "{out}: the archive's name must end in .tar.gz, .tgz or .tar"
        )));
    };
    let mut files = BTreeMap::new();
    for input in task.inputs_under(&base) {
        if input == out {
            continue;
        }
        let name = input[base.len()..].trim_start_matches('/').to_string();
        files.insert(name, task.read(input)?);
    }
    if files.is_empty() {
        return Err(Error::msg(format!(
            "no declared inputs under {base}: list the files to pack in the task's `inputs`"
        )));
    }
    let mtime = mtime(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref())?;
    let tar = tar_bytes(&files, mtime)?;
    let bytes = if gzip { gzip_bytes(&tar)? } else { tar };
    task.write_output(&out, &bytes)?;
    wask_guest::log(format!(
        "archive: {} file(s) under {base} -> {out} ({} bytes)",
        files.len(),
        bytes.len()
    ));
    Ok(())
}

/// The mtime of every entry: `SOURCE_DATE_EPOCH` (seconds) when set, else 1980-01-01.
fn mtime(source_date_epoch: Option<&str>) -> Result<u64> {
    match source_date_epoch.map(str::trim) {
        None | Some("") => Ok(DEFAULT_MTIME),
        Some(s) => s.parse().map_err(|_| {
            Error::msg(format!(
                "SOURCE_DATE_EPOCH={s:?} is not a number of seconds since 1970"
            ))
        }),
    }
}

/// A tar archive of `files` (path -> contents), normalised as the module docs say.
fn tar_bytes(files: &BTreeMap<String, Vec<u8>>, mtime: u64) -> Result<Vec<u8>> {
    // Each directory ("a/", "a/b/") and file, sorted: a directory sorts before its
    // contents because its name is their prefix.
    let mut entries: BTreeMap<String, Option<&[u8]>> = BTreeMap::new();
    for (path, contents) in files {
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            end += i + 1;
            entries.insert(path[..end].to_string(), None);
        }
        entries.insert(path.clone(), Some(contents));
    }
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in &entries {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        let data: &[u8] = match contents {
            Some(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                bytes
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                &[]
            }
        };
        header.set_size(data.len() as u64);
        builder
            .append_data(&mut header, path, data)
            .map_err(|e| Error::msg(format!("cannot add {path} to the archive: {e}")))?;
    }
    builder
        .into_inner()
        .map_err(|e| Error::msg(format!("cannot finish the archive: {e}")))
}

/// `bytes` gzip-compressed with a header that names no file and no time.
fn gzip_bytes(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::path::Path;

    fn files(list: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        list.iter()
            .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
            .collect()
    }

    /// `(path, type, mode, uid, gid, mtime, contents)` of every entry, in order.
    fn listing(tar: &[u8]) -> Vec<(String, char, u32, u64, u64, u64, String)> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let mut text = String::new();
                e.read_to_string(&mut text).unwrap();
                (
                    e.path().unwrap().to_str().unwrap().to_string(),
                    if h.entry_type().is_dir() { 'd' } else { 'f' },
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                    text,
                )
            })
            .collect()
    }

    #[test]
    fn entries_are_sorted_with_directories_and_normalised_metadata() {
        let tar = tar_bytes(
            &files(&[("b/x.html", "X"), ("a.txt", "A"), ("b/c/y.html", "Y")]),
            DEFAULT_MTIME,
        )
        .unwrap();
        let t = DEFAULT_MTIME;
        assert_eq!(
            listing(&tar),
            [
                ("a.txt".into(), 'f', 0o644, 0, 0, t, "A".into()),
                ("b/".into(), 'd', 0o755, 0, 0, t, String::new()),
                ("b/c/".into(), 'd', 0o755, 0, 0, t, String::new()),
                ("b/c/y.html".into(), 'f', 0o644, 0, 0, t, "Y".into()),
                ("b/x.html".into(), 'f', 0o644, 0, 0, t, "X".into()),
            ]
        );
    }

    #[test]
    fn long_paths_survive() {
        let long = format!("{}/file.txt", "d".repeat(150));
        let tar = tar_bytes(&files(&[(&long, "z")]), 0).unwrap();
        let names: Vec<String> = listing(&tar).into_iter().map(|e| e.0).collect();
        assert_eq!(names.last().unwrap(), &long);
    }

    #[test]
    fn gzip_is_byte_identical_and_unpacks() {
        let f = files(&[("a.txt", "hello")]);
        let one = gzip_bytes(&tar_bytes(&f, 7).unwrap()).unwrap();
        let two = gzip_bytes(&tar_bytes(&f, 7).unwrap()).unwrap();
        assert_eq!(one, two);
        assert_eq!(&one[4..8], &[0, 0, 0, 0], "gzip mtime is zero");
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&one[..])
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(listing(&tar)[0].6, "hello");
    }

    #[test]
    fn source_date_epoch_sets_the_mtime() {
        assert_eq!(mtime(None).unwrap(), DEFAULT_MTIME);
        assert_eq!(mtime(Some("1700000000")).unwrap(), 1_700_000_000);
        assert!(mtime(Some("yesterday")).is_err());
    }

    fn task(root: &Path, out: &str) -> Task {
        Task::from_parts(
            root,
            "/release",
            vec!["/".into(), out.into()],
            vec![
                "/content/dist/a.html".into(),
                "/site/dist/index.html".into(),
            ],
            vec![format!("/release/{out}")],
        )
    }

    #[test]
    fn packs_inputs_under_the_base_with_their_paths() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("content/dist")).unwrap();
        std::fs::create_dir_all(root.join("site/dist")).unwrap();
        std::fs::write(root.join("content/dist/a.html"), "A").unwrap();
        std::fs::write(root.join("site/dist/index.html"), "I").unwrap();
        write_archive(&task(root, "dist/site.tar")).unwrap();
        let tar = std::fs::read(root.join("release/dist/site.tar")).unwrap();
        let names: Vec<String> = listing(&tar).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            [
                "content/",
                "content/dist/",
                "content/dist/a.html",
                "site/",
                "site/dist/",
                "site/dist/index.html"
            ]
        );
        write_archive(&task(root, "dist/site.tgz")).unwrap();
        let err = write_archive(&task(root, "dist/site.rar"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(".tar.gz"), "{err}");
    }
}
