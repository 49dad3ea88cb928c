//! Readable hex dumps for failure messages: 16 bytes a line with offsets and ASCII,
//! lines that differ from a reference marked with `>`.

use std::fmt::Write as _;

/// The first offset at which `a` and `b` differ (a length difference counts).
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
}

/// `bytes` as a hex dump. Lines whose bytes differ from `reference` (when given) start
/// with `>` and the differing bytes are bracketed.
pub fn dump(bytes: &[u8], reference: Option<&[u8]>) -> String {
    let mut out = String::new();
    if bytes.is_empty() {
        out.push_str("    (empty)\n");
    }
    for (line, chunk) in bytes.chunks(16).enumerate() {
        let base = line * 16;
        let differs = |i: usize| reference.is_some_and(|r| r.get(base + i) != Some(&chunk[i]));
        let marker = if (0..chunk.len()).any(differs) {
            '>'
        } else {
            ' '
        };
        let _ = write!(out, "  {marker} {base:04x} ");
        for i in 0..16 {
            if i == 8 {
                out.push(' ');
            }
            match chunk.get(i) {
                Some(byte) if differs(i) => {
                    let _ = write!(out, "[{byte:02x}]");
                }
                Some(byte) => {
                    let _ = write!(out, " {byte:02x} ");
                }
                None => out.push_str("    "),
            }
        }
        out.push_str(" |");
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    out
}

/// Input, expected and actual frames, with the first difference between expected
/// and actual called out.
pub fn compare(input: &[u8], expected: &[u8], actual: &[u8]) -> String {
    let mut out = String::new();
    match first_difference(expected, actual) {
        Some(offset) => {
            let _ = writeln!(
                out,
                "first difference at offset {offset} (0x{offset:x}): expected {}, actual {} \
                 (lengths: expected {}, actual {})",
                byte_at(expected, offset),
                byte_at(actual, offset),
                expected.len(),
                actual.len(),
            );
        }
        None => out.push_str("expected and actual frames are identical\n"),
    }
    let _ = writeln!(out, "input ({} bytes):\n{}", input.len(), dump(input, None));
    let _ = writeln!(
        out,
        "expected ({} bytes):\n{}",
        expected.len(),
        dump(expected, None)
    );
    let _ = write!(
        out,
        "actual ({} bytes, [xx] = differs from expected):\n{}",
        actual.len(),
        dump(actual, Some(expected))
    );
    out
}

fn byte_at(bytes: &[u8], offset: usize) -> String {
    bytes
        .get(offset)
        .map_or_else(|| "(end of frame)".to_owned(), |b| format!("0x{b:02x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_difference() {
        assert_eq!(first_difference(&[1, 2, 3], &[1, 2, 3]), None);
        assert_eq!(first_difference(&[1, 2, 3], &[1, 9, 3]), Some(1));
        assert_eq!(first_difference(&[1, 2], &[1, 2, 3]), Some(2));
    }

    #[test]
    fn marks_differing_lines_and_bytes() {
        let expected: Vec<u8> = (0..20).collect();
        let mut actual = expected.clone();
        actual[17] = 0xee;
        let text = dump(&actual, Some(&expected));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("    0000 "), "{text}");
        assert!(lines[1].starts_with("  > 0010 "), "{text}");
        assert!(lines[1].contains("[ee]"), "{text}");
    }
}
