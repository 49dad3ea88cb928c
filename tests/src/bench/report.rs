//! Writing a benchmark runner's results: the document as pretty-printed JSON
//! (serde) beside its Markdown rendering.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

/// Writes `value` to `path` as pretty-printed JSON with a final newline; non-finite
/// numbers become `null`.
pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .with_context(|| format!("serialising {}", path.display()))?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Writes `OUT/STEM.json` (the document) and `OUT/STEM.md` (its rendering);
/// returns the two paths.
pub fn write_results(
    out: &Path,
    stem: &str,
    document: &impl Serialize,
    markdown: &str,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (json, md) = (
        out.join(format!("{stem}.json")),
        out.join(format!("{stem}.md")),
    );
    write_json(&json, document)?;
    std::fs::write(&md, markdown).with_context(|| format!("writing {}", md.display()))?;
    Ok((json, md))
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize)]
    struct Doc {
        name: &'static str,
        xs: Vec<f64>,
    }

    #[test]
    fn non_finite_numbers_are_null() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("ha-bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let doc = Doc {
            name: "a\"b",
            xs: vec![1.0, 2.5, f64::NAN],
        };
        let (json, md) = super::write_results(&dir, "results", &doc, "# md\n")?;
        let text = std::fs::read_to_string(&json)?;
        let back: serde_json::Value = serde_json::from_str(&text)?;
        assert_eq!(back["name"], "a\"b");
        assert_eq!(back["xs"], serde_json::json!([1.0, 2.5, null]));
        assert!(text.ends_with("}\n"), "{text:?}");
        assert_eq!(std::fs::read_to_string(&md)?, "# md\n");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
