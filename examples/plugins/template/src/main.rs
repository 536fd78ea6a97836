//! `template`: renders Jinja templates ([minijinja]) with data from TOML or JSON files.
//!
//! `args = [TEMPLATE_DIR, OUT_DIR, DATA_FILE...]` (project-relative or workspace paths).
//!
//! - Every declared input under `TEMPLATE_DIR` is a template, named by its path under that
//!   directory (`layouts/base.html`), so templates can `{% extends %}`, `{% include %}` and
//!   `{% import %}` each other by those names.
//! - Every template whose file name does not start with `_` renders to
//!   `OUT_DIR/<same relative path>`, a trailing `.j2`, `.jinja` or `.jinja2` removed
//!   (`sitemap.xml.j2` becomes `sitemap.xml`). `_layout.html`, `partials/_nav.html` and the
//!   like are only there to be extended or included.
//! - Each `DATA_FILE` (`.toml` or `.json`) is one template variable named by its file stem:
//!   `data/site.toml` is `{{ site.title }}`. TOML dates and times are strings (RFC 3339).
//!
//! `.html`, `.htm` and `.xml` templates escape HTML (`& < > " '`), `.json`/`.yaml`/`.js` ones write
//! values as JSON (`|safe` opts out). An undefined variable is an error when printed or
//! iterated (a typo fails the task instead of rendering nothing), but may be tested with
//! `{% if x %}`. Block tags do not leave blank lines (`trim_blocks`, `lstrip_blocks`) and
//! a template's final newline is kept. The output depends only on the templates, the data
//! and the arguments: no clock, no environment, sorted iteration over templates.
//!
//! An error in a template or a data file names the file and the line:
//! `error: /site/templates/_layout.html:7: undefined value: ... (rendering /site/templates/index.html)`.
//!
//! [minijinja]: https://crates.io/crates/minijinja

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use wask_guest::{Error, Result, Task};

wask_guest::main! {
    name: "template",
    summary: "renders Jinja templates with data from TOML or JSON files",
    usage: "args = [TEMPLATE_DIR, OUT_DIR, DATA_FILE...]",
    inputs: "the templates under TEMPLATE_DIR and each DATA_FILE",
    outputs: "OUT_DIR/<template path>, `_` partials and a .j2 suffix left out",
    run: render_all,
}

/// The task body.
fn render_all(task: &Task) -> Result<()> {
    let (template_dir, out_dir, data_files) = match task.args() {
        [templates, out, data @ ..] => (task.resolve(templates), task.resolve(out), data),
        given => {
            return Err(Error::msg(format!(
                "expected `args = [TEMPLATE_DIR, OUT_DIR, DATA_FILE...]`, got {given:?}"
            )));
        }
    };

    let mut context = serde_json::Map::new();
    for file in data_files {
        let path = task.resolve(file);
        let name = variable_name(&path);
        let value = load_data(&path, &task.read_string(&path)?)?;
        if context.insert(name.to_string(), value).is_some() {
            return Err(Error::msg(format!(
                "two data files would both be the variable `{name}` (the file stem); rename one of them"
            )));
        }
    }

    let sources: Vec<(String, &str)> = task
        .inputs_under(&template_dir)
        .into_iter()
        .map(|path| {
            (
                path[template_dir.len()..]
                    .trim_start_matches('/')
                    .to_string(),
                path,
            )
        })
        .collect();
    if sources.is_empty() {
        return Err(Error::msg(format!(
            "no declared inputs under {template_dir}: list the templates in the task's `inputs`"
        )));
    }

    let mut env = environment();
    for (name, path) in &sources {
        let source = task.read_string(path)?;
        env.add_template_owned(name.clone(), source)
            .map_err(|e| template_error(&template_dir, &e))?;
    }

    let context = json_to_value(serde_json::Value::Object(context));
    let mut rendered = 0;
    for (name, path) in &sources {
        if is_partial(name) {
            continue;
        }
        let text = env
            .get_template(name)
            .and_then(|t| t.render(&context))
            .map_err(|e| {
                let error = template_error(&template_dir, &e);
                if e.name() == Some(name.as_str()) {
                    error
                } else {
                    Error::msg(format!("{error} (rendering {path})"))
                }
            })?;
        let target = format!("{out_dir}/{}", output_name(name));
        task.write_output(&target, text)?;
        wask_guest::log(format!("template: {path} -> {target}"));
        rendered += 1;
    }
    if rendered == 0 {
        wask_guest::log(format!(
            "template: every template under {template_dir} is a partial (`_` prefix); nothing rendered"
        ));
    }
    Ok(())
}

/// The template engine as every run configures it.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .expect("the default delimiters are valid"),
    );
    // HTML escaping of strings that leaves `/` alone, so URLs and paths stay readable
    // (minijinja's own writes `&#x2f;`); everything else as minijinja does it.
    env.set_formatter(|out, state, value| match value.as_str() {
        Some(text) if *state.auto_escape() == AutoEscape::Html && !value.is_safe() => out
            .write_str(&escape_html(text))
            .map_err(|_| minijinja::Error::from(minijinja::ErrorKind::WriteFailure)),
        _ => minijinja::escape_formatter(out, state, value),
    });
    env
}

/// Escapes the five characters that are special in HTML text and attribute values.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A template error as `file:line: what`, the file a workspace path.
fn template_error(template_dir: &str, e: &minijinja::Error) -> Error {
    let file = match e.name() {
        Some(name) => format!("{template_dir}/{name}"),
        None => template_dir.to_string(),
    };
    let place = match e.line() {
        Some(line) => format!("{file}:{line}"),
        None => file,
    };
    match (e.detail(), e.kind()) {
        (Some(detail), kind) => Error::msg(format!("{place}: {kind}: {detail}")),
        (None, minijinja::ErrorKind::UndefinedError) => Error::msg(format!(
            "{place}: undefined value: a variable or attribute the data does not have \
             (`{{% if x %}}` tests whether it exists)"
        )),
        (None, kind) => Error::msg(format!("{place}: {kind}")),
    }
}

/// `_layout.html` and `partials/_nav.html` are not rendered on their own.
fn is_partial(name: &str) -> bool {
    name.rsplit('/').next().unwrap_or(name).starts_with('_')
}

/// `sitemap.xml.j2` -> `sitemap.xml`; `pages/a.html` is unchanged.
fn output_name(name: &str) -> &str {
    [".j2", ".jinja2", ".jinja"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(name)
}

/// `/site/data/site.toml` -> `site`.
fn variable_name(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split_once('.').map_or(file, |(stem, _)| stem)
}

/// Parses a data file by its extension; errors name the file, line and column.
fn load_data(path: &str, text: &str) -> Result<serde_json::Value> {
    if path.ends_with(".toml") {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            Error::msg(format!(
                "{path}:{line}:{column}: {}",
                e.message().trim_end()
            ))
        })?;
        toml_to_json(path, toml::Value::Table(table))
    } else if path.ends_with(".json") {
        serde_json::from_str(text).map_err(|e| {
            let message = e.to_string();
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(m, _)| m);
            Error::msg(format!("{path}:{}:{}: {message}", e.line(), e.column()))
        })
    } else {
        Err(Error::msg(format!(
            "{path}: a data file must be `.toml` or `.json`"
        )))
    }
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// JSON-like data as a template value.
fn json_to_value(value: serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::from(s),
        serde_json::Value::Array(items) => {
            Value::from(items.into_iter().map(json_to_value).collect::<Vec<_>>())
        }
        serde_json::Value::Object(map) => {
            Value::from_pairs(map.into_iter().map(|(k, v)| (k, json_to_value(v))))
        }
    }
}

/// TOML data as JSON-like data: dates and times become RFC 3339 strings.
fn toml_to_json(path: &str, value: toml::Value) -> Result<serde_json::Value> {
    Ok(match value {
        toml::Value::String(s) => s.into(),
        toml::Value::Integer(i) => i.into(),
        toml::Value::Float(f) => serde_json::Number::from_f64(f)
            .ok_or_else(|| Error::msg(format!("{path}: {f} has no place in template data")))?
            .into(),
        toml::Value::Boolean(b) => b.into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(items) => items
            .into_iter()
            .map(|v| toml_to_json(path, v))
            .collect::<Result<Vec<_>>>()?
            .into(),
        toml::Value::Table(table) => table
            .into_iter()
            .map(|(k, v)| Ok((k, toml_to_json(path, v)?)))
            .collect::<Result<serde_json::Map<_, _>>>()?
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// A task in project `/site` over every file written under `root/site`.
    fn site_task(root: &Path, args: &[&str]) -> Task {
        let mut inputs: Vec<String> = Vec::new();
        for entry in walk(&root.join("site")) {
            let rel = entry.strip_prefix(root).unwrap().to_str().unwrap();
            inputs.push(format!("/{rel}"));
        }
        inputs.sort();
        Task::from_parts(
            root,
            "/site",
            args.iter().map(|s| s.to_string()).collect(),
            inputs,
            vec!["/site/dist/**".into()],
        )
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }

    #[test]
    fn names_of_outputs_partials_and_variables() {
        assert_eq!(output_name("sitemap.xml.j2"), "sitemap.xml");
        assert_eq!(output_name("a/b.html"), "a/b.html");
        assert!(is_partial("_layout.html"));
        assert!(is_partial("partials/_nav.html"));
        assert!(!is_partial("_dir/page.html"));
        assert_eq!(variable_name("/site/data/site.toml"), "site");
        assert_eq!(variable_name("/site/data/nav.v2.json"), "nav");
    }

    #[test]
    fn renders_pages_through_a_layout_with_toml_and_json_data() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "site/templates/_layout.html",
            "<title>{% block title %}{% endblock %} - {{ site.title }}</title>\n{% block body %}{% endblock %}\n",
        );
        write(
            root,
            "site/templates/releases.html",
            "{% extends \"_layout.html\" %}\n{% block title %}Releases{% endblock %}\n{% block body %}\n<ul>\n{% for r in site.releases %}\n<li>{{ r.version }} ({{ r.date }}): {{ r.notes }}</li>\n{% endfor %}\n</ul>\n{% endblock %}\n",
        );
        write(
            root,
            "site/templates/feeds/list.txt.j2",
            "{% for n in nav.links %}{{ n }}\n{% endfor %}",
        );
        write(
            root,
            "site/data/site.toml",
            "title = \"Docs & more\"\n[[releases]]\nversion = \"1.0\"\ndate = 2024-05-01\nnotes = \"<b>first</b>\"\n",
        );
        write(root, "site/data/nav.json", r#"{"links": ["a", "b"]}"#);
        let task = site_task(
            root,
            &["templates", "dist", "data/site.toml", "data/nav.json"],
        );
        render_all(&task).unwrap();
        let page = std::fs::read_to_string(root.join("site/dist/releases.html")).unwrap();
        assert_eq!(
            page,
            "<title>Releases - Docs &amp; more</title>\n<ul>\n<li>1.0 (2024-05-01): &lt;b&gt;first&lt;/b&gt;</li>\n</ul>\n"
        );
        let list = std::fs::read_to_string(root.join("site/dist/feeds/list.txt")).unwrap();
        assert_eq!(list, "a\nb\n");
        assert!(!root.join("site/dist/_layout.html").exists());

        // Deterministic: a second run writes the same bytes.
        render_all(&task).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("site/dist/releases.html")).unwrap(),
            page
        );
    }

    #[test]
    fn a_syntax_error_names_the_template_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "site/templates/page.html",
            "line one\n{% if x %}\nno end\n",
        );
        let err = render_all(&site_task(root, &["templates", "dist"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/site/templates/page.html:"),
            "names the file: {err}"
        );
        assert!(err.contains("syntax error"), "{err}");
    }

    #[test]
    fn an_undefined_variable_in_a_layout_names_the_layout_line_and_the_page() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "site/templates/_base.html", "ok\n{{ sitte.title }}\n");
        write(
            root,
            "site/templates/page.html",
            "{% extends \"_base.html\" %}",
        );
        write(root, "site/data/site.toml", "title = \"x\"\n");
        let err = render_all(&site_task(root, &["templates", "dist", "data/site.toml"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/site/templates/_base.html:2: undefined value"),
            "{err}"
        );
        assert!(
            err.ends_with("(rendering /site/templates/page.html)"),
            "{err}"
        );
    }

    #[test]
    fn if_on_a_missing_value_is_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "site/templates/a.txt",
            "{% if missing %}yes{% else %}no{% endif %}\n.\n",
        );
        render_all(&site_task(root, &["templates", "dist"])).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("site/dist/a.txt")).unwrap(),
            "no.\n",
            "trim_blocks drops the newline after a block tag; the last one is kept"
        );
    }

    #[test]
    fn a_malformed_data_file_names_file_line_and_column() {
        let err = load_data("/site/data/site.toml", "title = \"x\"\nbad = [1,\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/site/data/site.toml:"), "{err}");
        let line: usize = err.split(':').nth(1).unwrap().parse().unwrap();
        assert!(line >= 2, "{err}");

        let err = load_data("/d/x.json", "{\n  \"a\": 1,\n  oops\n}")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/d/x.json:3:3: "), "{err}");
        assert!(!err.contains(" at line "), "{err}");

        let err = load_data("/d/x.yaml", "a: 1").unwrap_err().to_string();
        assert!(err.contains(".toml") && err.contains(".json"), "{err}");
    }

    #[test]
    fn toml_dates_are_strings() {
        let v = load_data("/x.toml", "d = 1979-05-27T07:32:00Z\n").unwrap();
        assert_eq!(v["d"], "1979-05-27T07:32:00Z");
    }

    #[test]
    fn arguments_are_checked() {
        let task = Task::from_parts("/", "/site", vec!["templates".into()], vec![], vec![]);
        let err = render_all(&task).unwrap_err().to_string();
        assert!(err.contains("TEMPLATE_DIR, OUT_DIR"), "{err}");
        let task = Task::from_parts(
            "/",
            "/site",
            vec!["templates".into(), "dist".into()],
            vec![],
            vec![],
        );
        let err = render_all(&task).unwrap_err().to_string();
        assert!(
            err.contains("no declared inputs under /site/templates"),
            "{err}"
        );
    }
}
