//! "Did you mean": the known name closest to a misspelt one, for keys, projects and
//! tasks.

/// The candidate closest to `word`, if one is close enough to be what was meant (a
/// typo or two, or a near prefix), and not `word` itself.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(f64, &str)> = None;
    for candidate in candidates {
        if candidate == word {
            continue;
        }
        let score = strsim::jaro_winkler(word, candidate);
        let edits = strsim::damerau_levenshtein(word, candidate);
        let close = edits <= 2.max(word.len() / 4) || score >= 0.88;
        if close && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// ` did you mean `X`?` for [`closest`], or nothing.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates)
        .map(|c| format!("did you mean `{c}`?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn a_typo_finds_its_word_and_nonsense_finds_none() {
        let keys = ["module", "args", "inputs", "outputs", "deps", "weak_deps"];
        assert_eq!(closest("inptus", keys), Some("inputs"));
        assert_eq!(closest("output", keys), Some("outputs"));
        assert_eq!(closest("dep", keys), Some("deps"));
        assert_eq!(closest("weakdeps", keys), Some("weak_deps"));
        assert_eq!(closest("zzzzzz", keys), None);
        assert_eq!(closest("inputs", ["inputs"]), None);
    }
}
