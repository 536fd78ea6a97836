//! Identifier and path rules (ID-001, PATH-001).

/// Checks a project, task, tag or mutex name (ID-001). Returns what is wrong.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("names are 1 to 64 bytes long".into());
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err("a name starts with an ASCII letter or digit".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "names use only ASCII letters, digits, `_` and `-`, not {c:?}"
        ));
    }
    Ok(())
}

/// Checks a declared path or pattern (PATH-001) by the one path rule of
/// [`wask_runtime::paths`]. Returns what is wrong.
pub fn check_path(path: &str) -> Result<(), String> {
    wask_runtime::paths::check(path).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_id_001() {
        assert!(check_name("build-1_x").is_ok());
        assert!(check_name("9lives").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("a.b").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn paths_follow_path_001() {
        assert!(check_path("src/**/*.md").is_ok());
        assert!(check_path("/tools/x.wasm").is_ok());
        for bad in [
            "", "/", "a//b", "a/./b", "../x", "a/..", "a\u{0}b", "a\nb", "dist/",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
