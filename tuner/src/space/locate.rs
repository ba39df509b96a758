//! Maps byte offsets and dotted key paths of a TOML text to lines.
//!
//! The `toml` crate reports a byte span but not the key path, and our own semantic checks know the
//! key path but not the line; scanning the text for table headers and `key =` lines answers both
//! for the documented layout of search-space files (tables with plain keys).

/// 1-based line number of a byte offset.
pub fn line_of_offset(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The table header (`[a.b]` or `[[a.b]]`) in force at a line, as a dotted path.
fn header_of(line: &str) -> Option<String> {
    let t = line.trim();
    let inner = t.strip_prefix("[[").and_then(|s| s.split("]]").next()).or_else(|| {
        t.strip_prefix('[').and_then(|s| s.split(']').next())
    })?;
    Some(inner.split('.').map(|p| p.trim().trim_matches('"')).collect::<Vec<_>>().join("."))
}

/// The key written at the start of a `key = value` line, if any.
fn key_of(line: &str) -> Option<String> {
    let t = line.trim_start();
    if t.starts_with('#') || t.starts_with('[') {
        return None;
    }
    let (key, _) = t.split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty()).then(|| key.to_string())
}

/// Dotted key path of the key on the line holding `offset` (or the header, if it is one).
pub fn key_at_offset(text: &str, offset: usize) -> String {
    let target = line_of_offset(text, offset);
    let mut table = String::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(h) = header_of(line) {
            if i + 1 == target {
                return h;
            }
            table = h;
            continue;
        }
        if i + 1 == target {
            return match key_of(line) {
                Some(k) if table.is_empty() => k,
                Some(k) => format!("{table}.{k}"),
                None => table,
            };
        }
    }
    table
}

/// 1-based line of a dotted key path: the `key =` line inside its table, else the table header.
pub fn line_of_key(text: &str, path: &str) -> Option<usize> {
    let (table, key) = match path.rsplit_once('.') {
        Some((t, k)) => (t, k),
        None => ("", path),
    };
    let mut current = String::new();
    let mut header_line = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(h) = header_of(line) {
            current = h;
            if current == path {
                return Some(i + 1);
            }
            if current == table {
                header_line = Some(i + 1);
            }
            continue;
        }
        if current == table && key_of(line).as_deref() == Some(key) {
            return Some(i + 1);
        }
    }
    header_line
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[study]\nname = \"x\"\n\n[params.peak_lr]\nscale = \"log\"\nmin = 2.0\n";

    #[test]
    fn finds_key_lines_inside_tables() {
        assert_eq!(line_of_key(TEXT, "study.name"), Some(2));
        assert_eq!(line_of_key(TEXT, "params.peak_lr.min"), Some(6));
        assert_eq!(line_of_key(TEXT, "params.peak_lr"), Some(4));
        // A missing key falls back to its table's header.
        assert_eq!(line_of_key(TEXT, "params.peak_lr.max"), Some(4));
        assert_eq!(line_of_key(TEXT, "nope.key"), None);
    }

    #[test]
    fn names_the_key_at_an_offset() {
        let offset = TEXT.find("min").unwrap_or(0);
        assert_eq!(key_at_offset(TEXT, offset), "params.peak_lr.min");
        assert_eq!(line_of_offset(TEXT, offset), 6);
        assert_eq!(key_at_offset(TEXT, 0), "study");
    }
}
