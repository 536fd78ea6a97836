//! `convert`: converts data between JSON, YAML and TOML, or checks that files parse.
//!
//! - `args = [FROM_FILE, TO_FILE]` (project-relative or workspace paths): reads `FROM_FILE`
//!   and writes the same data to `TO_FILE`, each format chosen by the extension (`.json`,
//!   `.yaml`/`.yml`, `.toml`). JSON is written pretty-printed with two-space indents;
//!   keys keep the order of the source document. TOML dates and times become RFC 3339
//!   strings elsewhere; data TOML cannot hold (a `null`, a top level that is not a table)
//!   is an error naming where it is.
//! - `args = ["--check"]` or `["--check", DIR...]`: parses every declared input (under the
//!   `DIR`s, when given) by its extension and writes nothing. Every invalid file is
//!   reported, then the task fails.
//!
//! A parse error names the file, line and column: `/site/data/site.toml:3:7: invalid string`.
//! Uses [serde_json](https://crates.io/crates/serde_json),
//! [serde_yaml_ng](https://crates.io/crates/serde_yaml_ng) and
//! [toml](https://crates.io/crates/toml).

use serde_json::Value;
use wask_guest::{Error, Result, Task};

wask_guest::main! {
    name: "convert",
    summary: "converts data between JSON, YAML and TOML, or checks that files parse",
    usage: "args = [FROM_FILE, TO_FILE] (formats by extension), or [\"--check\", DIR...]",
    inputs: "FROM_FILE, or the files to check",
    outputs: "TO_FILE (nothing with --check)",
    run: convert,
}

/// The task body.
fn convert(task: &Task) -> Result<()> {
    match task.args() {
        [flag, dirs @ ..] if flag == "--check" => check(task, dirs),
        [from, to] if !from.starts_with("--") => {
            let (from, to) = (task.resolve(from), task.resolve(to));
            let (from_format, to_format) = (Format::of(&from)?, Format::of(&to)?);
            let value = from_format.parse(&from, &task.read_string(&from)?)?;
            let text = to_format
                .write(&value)
                .map_err(|e| e.context(format!("cannot write {from} as {to}")))?;
            task.write_output(&to, text)?;
            wask_guest::log(format!("convert: {from} -> {to}"));
            Ok(())
        }
        given => Err(Error::msg(format!(
            "expected `args = [FROM_FILE, TO_FILE]` or `[\"--check\", DIR...]`, got {given:?}"
        ))),
    }
}

/// `--check`: parses every declared input (under `dirs`, when given).
fn check(task: &Task, dirs: &[String]) -> Result<()> {
    let files: Vec<&str> = if dirs.is_empty() {
        task.inputs().iter().map(String::as_str).collect()
    } else {
        let mut files: Vec<&str> = dirs.iter().flat_map(|d| task.inputs_under(d)).collect();
        files.sort_unstable();
        files.dedup();
        files
    };
    let mut failed = 0;
    for file in &files {
        let outcome = Format::of(file)
            .and_then(|format| format.parse(file, &task.read_string(file)?).map(drop));
        if let Err(e) = outcome {
            wask_guest::log(format!("invalid: {e}"));
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(Error::msg(format!(
            "{failed} of {} file(s) are not valid",
            files.len()
        )));
    }
    wask_guest::log(format!("convert: {} file(s) are valid", files.len()));
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    Json,
    Yaml,
    Toml,
}

impl Format {
    /// The format of a file, by its extension.
    fn of(path: &str) -> Result<Format> {
        let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        match ext.to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "yaml" | "yml" => Ok(Format::Yaml),
            "toml" => Ok(Format::Toml),
            _ => Err(Error::msg(format!(
                "{path}: unknown format (the extension must be .json, .yaml, .yml or .toml)"
            ))),
        }
    }

    /// Parses `text`, the contents of `path`; errors are `path:line:column: message`.
    fn parse(self, path: &str, text: &str) -> Result<Value> {
        match self {
            Format::Json => serde_json::from_str(text)
                .map_err(|e| located(path, e.line(), e.column(), &strip_position(&e.to_string()))),
            Format::Yaml => serde_yaml_ng::from_str(text).map_err(|e| {
                let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
                located(path, line, column, &strip_position(&e.to_string()))
            }),
            Format::Toml => {
                let table: toml::Table = toml::from_str(text).map_err(|e| {
                    let (line, column) = e
                        .span()
                        .map_or((1, 1), |span| line_column(text, span.start));
                    located(path, line, column, e.message().trim_end())
                })?;
                toml_to_json(toml::Value::Table(table))
                    .map_err(|e| Error::msg(format!("{path}: {e}")))
            }
        }
    }

    /// `value` as a document of this format, ending in a newline.
    fn write(self, value: &Value) -> Result<String> {
        match self {
            Format::Json => {
                let mut text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
                text.push('\n');
                Ok(text)
            }
            Format::Yaml => serde_yaml_ng::to_string(value).map_err(|e| Error::msg(e.to_string())),
            Format::Toml => {
                if !value.is_object() {
                    return Err(Error::msg(
                        "a TOML document is a table, but this data is not a map at the top level",
                    ));
                }
                if let Some(at) = find_null(value, String::new()) {
                    return Err(Error::msg(format!("TOML has no null, found at `{at}`")));
                }
                toml::to_string_pretty(value).map_err(|e| Error::msg(e.to_string()))
            }
        }
    }
}

fn located(path: &str, line: usize, column: usize, message: &str) -> Error {
    Error::msg(format!("{path}:{line}:{column}: {message}"))
}

/// The message without the position the file name already gives:
/// `expected value at line 1 column 2` -> `expected value`, and
/// `x at line 3 column 2, while parsing y` -> `x, while parsing y`.
fn strip_position(message: &str) -> String {
    let Some(start) = message.find(" at line ") else {
        return message.to_string();
    };
    let rest = &message[start + " at line ".len()..];
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest
        .strip_prefix(" column ")
        .map_or(rest, |r| r.trim_start_matches(|c: char| c.is_ascii_digit()));
    format!("{}{rest}", &message[..start])
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// TOML data as JSON-like data: dates and times become RFC 3339 strings.
fn toml_to_json(value: toml::Value) -> Result<Value, String> {
    Ok(match value {
        toml::Value::String(s) => s.into(),
        toml::Value::Integer(i) => i.into(),
        toml::Value::Float(f) => serde_json::Number::from_f64(f)
            .ok_or_else(|| format!("{f} cannot be written as JSON or YAML data"))?
            .into(),
        toml::Value::Boolean(b) => b.into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(items) => items
            .into_iter()
            .map(toml_to_json)
            .collect::<Result<Vec<_>, _>>()?
            .into(),
        toml::Value::Table(table) => table
            .into_iter()
            .map(|(k, v)| Ok((k, toml_to_json(v)?)))
            .collect::<Result<serde_json::Map<_, _>, String>>()?
            .into(),
    })
}

/// The path (`a.b[2]`) of the first `null` in `value`.
fn find_null(value: &Value, at: String) -> Option<String> {
    match value {
        Value::Null => Some(if at.is_empty() { ".".into() } else { at }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_null(v, format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let key = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            find_null(v, key)
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const TOML: &str = r#"title = "Docs"
released = 2024-05-01
ratio = 0.5

[author]
name = "Ada"
tags = ["a", "b"]

[[pages]]
path = "index.html"
weight = 1
"#;

    fn task(root: &Path, args: &[&str], inputs: &[&str]) -> Task {
        Task::from_parts(
            root,
            "/site",
            args.iter().map(|s| s.to_string()).collect(),
            inputs.iter().map(|s| s.to_string()).collect(),
            vec![],
        )
    }

    #[test]
    fn formats_come_from_extensions() {
        assert_eq!(Format::of("a.json").unwrap(), Format::Json);
        assert_eq!(Format::of("a/b.YML").unwrap(), Format::Yaml);
        assert_eq!(Format::of("a.yaml").unwrap(), Format::Yaml);
        assert_eq!(Format::of("a.toml").unwrap(), Format::Toml);
        let err = Format::of("/site/a.ini").unwrap_err().to_string();
        assert!(err.starts_with("/site/a.ini: unknown format"), "{err}");
    }

    #[test]
    fn every_format_round_trips_the_same_data() {
        let data = Format::Toml.parse("a.toml", TOML).unwrap();
        assert_eq!(data["released"], "2024-05-01");
        for format in [Format::Json, Format::Yaml, Format::Toml] {
            let text = format.write(&data).unwrap();
            assert!(text.ends_with('\n'), "{format:?}: {text}");
            assert_eq!(
                format.parse("x", &text).unwrap(),
                data,
                "{format:?}: {text}"
            );
        }
    }

    #[test]
    fn json_keeps_the_order_of_the_source() {
        let data = Format::Toml.parse("a.toml", TOML).unwrap();
        let json = Format::Json.write(&data).unwrap();
        let order: Vec<usize> = [
            "\"title\"",
            "\"released\"",
            "\"ratio\"",
            "\"author\"",
            "\"pages\"",
        ]
        .iter()
        .map(|k| json.find(k).unwrap())
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{json}");
        assert!(json.starts_with("{\n  \"title\": \"Docs\","), "{json}");
    }

    #[test]
    fn parse_errors_name_file_line_and_column() {
        let err = Format::Toml
            .parse("/s/site.toml", "title = \"x\"\nname = \"unterminated\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/s/site.toml:2:"), "{err}");

        let err = Format::Json
            .parse("/s/a.json", "{\n  \"a\": 1,\n}\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/s/a.json:3:1: trailing comma"), "{err}");

        let err = Format::Yaml
            .parse("/s/a.yaml", "a: 1\nb: [1, 2\nc: 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/s/a.yaml:"), "{err}");
        let line: usize = err.split(':').nth(1).unwrap().parse().unwrap();
        assert!(line >= 2, "{err}");
        assert!(!err.contains(" at line 3 column 2"), "{err}");
        assert_eq!(
            strip_position("x at line 3 column 2, while parsing y"),
            "x, while parsing y"
        );
    }

    #[test]
    fn toml_cannot_hold_null_or_a_bare_list() {
        let err = Format::Toml
            .write(&serde_json::json!({"a": {"b": [1, null]}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`a.b[1]`"), "{err}");
        let err = Format::Toml
            .write(&serde_json::json!([1, 2]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("table"), "{err}");
    }

    #[test]
    fn converts_a_file_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("site/data")).unwrap();
        std::fs::write(root.join("site/data/site.toml"), TOML).unwrap();
        let t = task(
            root,
            &["data/site.toml", "dist/site.yaml"],
            &["/site/data/site.toml"],
        );
        convert(&t).unwrap();
        let yaml = std::fs::read_to_string(root.join("site/dist/site.yaml")).unwrap();
        assert!(yaml.starts_with("title: Docs\n"), "{yaml}");
    }

    #[test]
    fn check_reports_every_invalid_input() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("site/data")).unwrap();
        std::fs::write(root.join("site/data/a.toml"), "a = 1\n").unwrap();
        std::fs::write(root.join("site/data/b.json"), "{").unwrap();
        std::fs::write(root.join("site/data/c.yaml"), "- x\n").unwrap();
        std::fs::write(root.join("site/other.toml"), "[").unwrap();
        let inputs = [
            "/site/data/a.toml",
            "/site/data/b.json",
            "/site/data/c.yaml",
            "/site/other.toml",
        ];
        let err = convert(&task(root, &["--check"], &inputs))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "2 of 4 file(s) are not valid");
        let err = convert(&task(root, &["--check", "data"], &inputs))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "1 of 3 file(s) are not valid");
        convert(&task(root, &["--check"], &inputs[..1])).unwrap();
    }

    #[test]
    fn arguments_are_checked() {
        let err = convert(&task(Path::new("/"), &["a.json"], &[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("FROM_FILE, TO_FILE"), "{err}");
    }
}
