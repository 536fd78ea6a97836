//! `md2html`: renders Markdown pages to HTML.
//!
//! `args = [SRC_DIR, OUT_DIR]` (project-relative or workspace paths). Every declared input
//! under `SRC_DIR` whose name ends in `.md` becomes `OUT_DIR/<same relative path>.html`: a
//! minimal HTML page whose `<title>` is the text of the first `# ` heading, or the file
//! stem when there is none. Relative links to `.md` files are rewritten to `.html`, so the
//! rendered pages link to each other. The output depends only on the input bytes.

use pulldown_cmark::{CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use wask_guest::{Result, Task};

wask_guest::main! {
    name: "md2html",
    summary: "renders Markdown pages to HTML",
    usage: "args = [SRC_DIR, OUT_DIR]",
    inputs: "the .md pages under SRC_DIR",
    outputs: "OUT_DIR/<same relative path>.html",
    run: render_all,
}

/// The task body: renders every `.md` input under `SRC_DIR` into `OUT_DIR`.
fn render_all(task: &Task) -> Result<()> {
    let [src, out] = task.args_exact::<2>()?;
    let src_dir = task.resolve(&src);
    let out_dir = task.resolve(&out);
    let pages: Vec<&str> = task
        .inputs_under(&src_dir)
        .into_iter()
        .filter(|p| p.ends_with(".md"))
        .collect();
    if pages.is_empty() {
        wask_guest::log(format!(
            "md2html: no declared `.md` inputs under {src_dir}; nothing to render"
        ));
        return Ok(());
    }
    for page in pages {
        let rel = page[src_dir.len()..].trim_start_matches('/');
        let markdown = task.read_string(page)?;
        let html = render_page(&markdown, file_stem(rel));
        let target = format!("{out_dir}/{}", html_path(rel));
        task.write_output(&target, html)
            .map_err(|e| e.context(format!("rendering {page}")))?;
        wask_guest::log(format!("md2html: {page} -> {target}"));
    }
    Ok(())
}

/// `guide/intro.md` -> `guide/intro.html`.
fn html_path(rel: &str) -> String {
    let stem = rel.strip_suffix(".md").unwrap_or(rel);
    format!("{stem}.html")
}

/// `guide/intro.md` -> `intro`.
fn file_stem(rel: &str) -> &str {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name.strip_suffix(".md").unwrap_or(name)
}

fn options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_FOOTNOTES
}

/// The plain text of the first level-1 heading, if the document has one.
fn first_h1(markdown: &str) -> Option<String> {
    let mut title: Option<String> = None;
    for event in Parser::new_ext(markdown, options()) {
        match (&mut title, event) {
            (
                None,
                Event::Start(Tag::Heading {
                    level: HeadingLevel::H1,
                    ..
                }),
            ) => title = Some(String::new()),
            (Some(t), Event::Text(s) | Event::Code(s)) => t.push_str(&s),
            (Some(t), Event::SoftBreak | Event::HardBreak) => t.push(' '),
            (Some(_), Event::End(TagEnd::Heading(HeadingLevel::H1))) => break,
            _ => {}
        }
    }
    title
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// A relative link to a Markdown page, pointed at the page it renders to.
///
/// `other.md#part` -> `other.html#part`; absolute URLs and non-`.md` links are unchanged.
fn rewrite_link(dest: CowStr<'_>) -> CowStr<'_> {
    if dest.contains("://") || dest.starts_with('/') || dest.starts_with("mailto:") {
        return dest;
    }
    let (path, fragment) = match dest.find('#') {
        Some(i) => (&dest[..i], &dest[i..]),
        None => (&dest[..], ""),
    };
    match path.strip_suffix(".md") {
        Some(stem) => CowStr::from(format!("{stem}.html{fragment}")),
        None => dest,
    }
}

/// Renders one Markdown document as a complete HTML page.
fn render_page(markdown: &str, fallback_title: &str) -> String {
    let title = first_h1(markdown).unwrap_or_else(|| fallback_title.to_string());
    let events = Parser::new_ext(markdown, options()).map(|event| match event {
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: rewrite_link(dest_url),
            title,
            id,
        }),
        other => other,
    });
    let mut body = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut body, events);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape_html(&title)
    )
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
    fn paths_map_md_to_html() {
        assert_eq!(html_path("index.md"), "index.html");
        assert_eq!(html_path("guide/intro.md"), "guide/intro.html");
        assert_eq!(file_stem("guide/intro.md"), "intro");
    }

    #[test]
    fn title_is_the_first_h1_as_plain_text() {
        let md = "Intro text\n\n## Not this\n\n# The `wask` *book*\n\n# Second\n";
        assert_eq!(first_h1(md).as_deref(), Some("The wask book"));
    }

    #[test]
    fn title_falls_back_to_the_file_stem() {
        let page = render_page("## Only a subheading\n", "notes");
        assert!(page.contains("<title>notes</title>"), "{page}");
    }

    #[test]
    fn title_is_escaped() {
        let page = render_page("# Fish & \"Chips\" < 3\n", "x");
        assert!(
            page.contains("<title>Fish &amp; &quot;Chips&quot; &lt; 3</title>"),
            "{page}"
        );
    }

    #[test]
    fn page_is_complete_and_deterministic() {
        let md = "# Hello\n\nSome *text*.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n";
        let page = render_page(md, "x");
        assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(page.contains("<h1>Hello</h1>"), "{page}");
        assert!(page.contains("<em>text</em>"), "{page}");
        assert!(page.contains("<table>"), "{page}");
        assert!(page.ends_with("</body>\n</html>\n"));
        assert_eq!(page, render_page(md, "x"));
    }

    #[test]
    fn relative_md_links_point_at_html() {
        let page = render_page(
            "[a](guide/intro.md#setup) [b](https://example.com/x.md) [c](pic.png)",
            "x",
        );
        assert!(page.contains("href=\"guide/intro.html#setup\""), "{page}");
        assert!(page.contains("href=\"https://example.com/x.md\""), "{page}");
        assert!(page.contains("href=\"pic.png\""), "{page}");
    }

    #[test]
    fn renders_every_md_input_under_the_source_dir() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("content/pages/guide")).unwrap();
        std::fs::write(root.join("content/pages/index.md"), "# Home\n").unwrap();
        std::fs::write(root.join("content/pages/guide/intro.md"), "# Intro\n").unwrap();
        std::fs::write(root.join("content/pages/notes.txt"), "skip").unwrap();
        let task = Task::from_parts(
            root,
            "/content",
            vec!["pages".into(), "dist/html".into()],
            vec![
                "/content/pages/guide/intro.md".into(),
                "/content/pages/index.md".into(),
                "/content/pages/notes.txt".into(),
            ],
            vec!["/content/dist/html/**/*.html".into()],
        );
        render_all(&task).unwrap();
        let home = std::fs::read_to_string(root.join("content/dist/html/index.html")).unwrap();
        assert!(home.contains("<title>Home</title>"));
        let intro =
            std::fs::read_to_string(root.join("content/dist/html/guide/intro.html")).unwrap();
        assert!(intro.contains("<title>Intro</title>"));
        assert!(!root.join("content/dist/html/notes.html").exists());
    }
}
