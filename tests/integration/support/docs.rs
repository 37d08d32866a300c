//! Reading the repository's Markdown: the fenced blocks that tests run or compare.

use std::path::Path;

/// `file` (relative to the repository root) as text.
pub fn read(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The ```-fenced block that opens on `lines[open]`: its text and the index of the line after
/// its closing fence.
pub fn block_at(file: &str, lines: &[&str], open: usize) -> (String, usize) {
    assert!(
        lines
            .get(open)
            .is_some_and(|l| l.trim_start().starts_with("```")),
        "{file}:{}: a ``` block must stand here",
        open + 1
    );
    let close = (open + 1..lines.len())
        .find(|&j| lines[j].trim_start().starts_with("```"))
        .unwrap_or_else(|| panic!("{file}:{}: unclosed block", open + 1));
    (lines[open + 1..close].join("\n"), close + 1)
}
