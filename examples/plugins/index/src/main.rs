//! `index`: writes an HTML page linking every page of a directory.
//!
//! `args = [HTML_DIR, OUT_FILE]` (project-relative or workspace paths). Every declared
//! input under `HTML_DIR` whose name ends in `.html` gets one entry, sorted by path, named
//! by the page's `<title>` (or its path when it has none). Links are relative to the
//! directory of `OUT_FILE`, so the index works when opened straight from the workspace.

use wask_guest::{Result, Task};

wask_guest::main! {
    name: "index",
    summary: "writes an HTML page linking every page of a directory",
    usage: "args = [HTML_DIR, OUT_FILE]",
    inputs: "the .html pages under HTML_DIR",
    outputs: "OUT_FILE",
    run: write_index,
}

/// The task body.
fn write_index(task: &Task) -> Result<()> {
    let [html_dir, out] = task.args_exact::<2>()?;
    let html_dir = task.resolve(&html_dir);
    let out = task.resolve(&out);
    let out_dir = out.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let mut pages: Vec<&str> = task
        .inputs_under(&html_dir)
        .into_iter()
        .filter(|p| p.ends_with(".html") && *p != out)
        .collect();
    pages.sort_unstable();
    let mut entries = Vec::with_capacity(pages.len());
    for page in pages {
        let html = task.read_string(page)?;
        let shown = page[html_dir.len()..].trim_start_matches('/');
        let title = extract_title(&html)
            .map(str::to_string)
            .unwrap_or_else(|| escape_html(shown));
        entries.push(Entry {
            href: relative_link(out_dir, page),
            title,
            shown: escape_html(shown),
        });
    }
    let count = entries.len();
    task.write_output(&out, render_index(&entries))?;
    wask_guest::log(format!("index: {count} page(s) under {html_dir} -> {out}"));
    Ok(())
}

struct Entry {
    /// URL relative to the index's directory.
    href: String,
    /// HTML text (already escaped, as found inside `<title>`).
    title: String,
    /// HTML-escaped path of the page under the indexed directory.
    shown: String,
}

/// The contents of the first `<title>` element, as HTML text (entities kept).
fn extract_title(html: &str) -> Option<&str> {
    let lower = html.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title>")?;
    Some(html[start..end].trim()).filter(|t| !t.is_empty())
}

/// The path of workspace path `to`, relative to workspace directory `from_dir`.
///
/// `relative_link("/site/dist", "/content/dist/a.html")` -> `../../content/dist/a.html`.
fn relative_link(from_dir: &str, to: &str) -> String {
    let from: Vec<&str> = from_dir.split('/').filter(|s| !s.is_empty()).collect();
    let to: Vec<&str> = to.split('/').filter(|s| !s.is_empty()).collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts = vec![".."; from.len() - common];
    parts.extend_from_slice(&to[common..]);
    parts.join("/")
}

fn render_index(entries: &[Entry]) -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Index</title>\n</head>\n<body>\n<h1>Index</h1>\n<ul>\n",
    );
    for e in entries {
        html.push_str(&format!(
            "<li><a href=\"{}\">{}</a> <small>{}</small></li>\n",
            escape_html(&e.href),
            e.title,
            e.shown
        ));
    }
    html.push_str("</ul>\n</body>\n</html>\n");
    html
}

/// HTML-escapes text for element content and attribute values.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    pulldown_cmark_escape::escape_html(&mut out, text).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_is_extracted_case_insensitively() {
        assert_eq!(
            extract_title("<html><head><TITLE lang=en> A &amp; B </TITLE>"),
            Some("A &amp; B")
        );
        assert_eq!(extract_title("<title></title>"), None);
        assert_eq!(extract_title("<p>no title</p>"), None);
    }

    #[test]
    fn links_are_relative_to_the_index_directory() {
        assert_eq!(
            relative_link("/site/dist", "/content/dist/html/a.html"),
            "../../content/dist/html/a.html"
        );
        assert_eq!(
            relative_link("/site/dist", "/site/dist/x/a.html"),
            "x/a.html"
        );
        assert_eq!(relative_link("", "/a.html"), "a.html");
    }

    #[test]
    fn index_lists_pages_sorted_with_titles() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let html = root.join("content/dist/html");
        std::fs::create_dir_all(html.join("guide")).unwrap();
        std::fs::write(html.join("b.html"), "<title>Bee</title>").unwrap();
        std::fs::write(html.join("guide/a.html"), "<title>Guide</title>").unwrap();
        std::fs::write(html.join("untitled.html"), "<p>x</p>").unwrap();
        let task = Task::from_parts(
            root,
            "/site",
            vec!["/content/dist/html".into(), "dist/index.html".into()],
            vec![
                "/content/dist/html/untitled.html".into(),
                "/content/dist/html/b.html".into(),
                "/content/dist/html/guide/a.html".into(),
            ],
            vec!["/site/dist/index.html".into()],
        );
        write_index(&task).unwrap();
        let index = std::fs::read_to_string(root.join("site/dist/index.html")).unwrap();
        let b = index.find(">Bee</a>").unwrap();
        let g = index.find(">Guide</a>").unwrap();
        let u = index.find(">untitled.html</a>").unwrap();
        assert!(b < g && g < u, "{index}");
        assert!(
            index.contains("href=\"../../content/dist/html/guide/a.html\""),
            "{index}"
        );
    }
}
