//! Index expressions as OpenSearch reads them: comma lists, wildcards, `_all`, exclusions, date
//! math, remote-cluster prefixes; and the percent-decoding of path parameters.

use std::borrow::Cow;

use super::pattern::Target;

/// An index expression that cannot be read (malformed date math, a `/` in a name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BadName(pub(crate) String);

/// OpenSearch's `RestUtils.decodeComponent` as its router applies it to path parameters:
/// `%XX` escapes and `%%` for `%`, `+` left as it is, the bytes read as UTF-8 with malformed
/// sequences replaced. `None` for a malformed escape (OpenSearch answers 400).
pub(crate) fn decode_param(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.contains('%') {
        return Some(Cow::Borrowed(raw));
    }
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            None => return None,
            Some(b'%') => {
                out.push(b'%');
                i += 2;
            }
            Some(&hi) => {
                let lo = *b.get(i + 2)?;
                let h = (hi as char).to_digit(16)?;
                let l = (lo as char).to_digit(16)?;
                out.push((h * 16 + l) as u8);
                i += 3;
            }
        }
    }
    Some(Cow::Owned(String::from_utf8_lossy(&out).into_owned()))
}

/// RFC 3986 percent-decoding, as a server that decodes the path before routing it would.
pub(crate) fn decode_generic(raw: &str) -> Cow<'_, str> {
    if !raw.contains('%') {
        return Cow::Borrowed(raw);
    }
    Cow::Owned(
        percent_encoding::percent_decode_str(raw)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// Expands an index expression (`a,b`, `logs-*`, `_all`, `-excluded`, `<logs-{now/d}>`,
/// `cluster:index`) into targets. Exclusions are dropped: they only narrow what a wildcard
/// reaches, so ignoring them is conservative. An expression of nothing but exclusions (or
/// nothing at all) means every index.
///
/// An item with white space around it is checked both as it is and trimmed: whether
/// OpenSearch trims a name depends on where it stands, so the request must pass either way.
pub(crate) fn index_items(expr: &str) -> Result<Vec<Target>, BadName> {
    let mut out = Vec::new();
    let items = expr.split(',').flat_map(|raw| {
        let trimmed = raw.trim();
        std::iter::once(raw).chain((trimmed != raw).then_some(trimmed))
    });
    for item in items {
        if item.is_empty() || item.starts_with('-') {
            continue;
        }
        let item = item.strip_prefix('+').unwrap_or(item);
        if item == "_all" {
            out.push(Target::wildcard("*"));
        } else if item.len() >= 2 && item.starts_with('<') && item.ends_with('>') {
            out.push(date_math(&item[1..item.len() - 1]).ok_or_else(|| {
                BadName(format!("the date-math index name {item:?} is malformed"))
            })?);
        } else if item.contains('/') {
            // No index name holds a `/` (`%2F` in a path): OpenSearch refuses it, and the
            // policy's resources, which use `/` to separate index and API, cannot judge it.
            return Err(BadName(format!("the index name {item:?} contains `/`")));
        } else {
            push_name(&mut out, item);
        }
    }
    if out.is_empty() {
        out.push(Target::wildcard("*"));
    }
    Ok(out)
}

/// A name where OpenSearch takes one (a bulk action's `_index`, `dest.index`, an alias): checked
/// split at commas, as elsewhere, and also whole, as OpenSearch reads it.
pub(crate) fn name_items(name: &str) -> Result<Vec<Target>, BadName> {
    let mut out = index_items(name)?;
    if name.contains(',') {
        out.push(Target::wildcard(name));
    }
    Ok(out)
}

/// One name (wildcards, `{{mustache}}` placeholders, a remote cluster's prefix).
fn push_name(out: &mut Vec<Target>, item: &str) {
    let item = mustache_to_wildcard(item);
    // `cluster:index` searches a remote cluster's index; it is checked as that name too, so a
    // Deny on the name covers it through any cluster alias.
    if let Some((_, local)) = item.rsplit_once(':') {
        if !local.is_empty() {
            out.push(Target::wildcard(local));
        }
    }
    out.push(Target::wildcard(&item));
}

/// `{{anything}}` (a mustache placeholder filled in later, as in search templates and ISM's
/// `target_index_name_template`) stands for any text: `*`.
pub(crate) fn mustache_to_wildcard(s: &str) -> Cow<'_, str> {
    if !s.contains("{{") {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        out.push('*');
        rest = match rest[start..].find("}}") {
            Some(end) => &rest[start + end + 2..],
            None => "",
        };
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// `logs-{now/d}` → `logs-*`; `\{` escapes; a `*` in the static text is a wildcard.
fn date_math(inner: &str) -> Option<Target> {
    let mut t = Target::literal("");
    let mut depth = 0usize;
    let mut chars = inner.chars();
    let mut lit = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' if depth == 0 => lit.push(chars.next()?),
            '\\' => {
                chars.next()?;
            }
            '{' => {
                if depth == 0 {
                    t.push_lit(&lit);
                    lit.clear();
                    t.push_any();
                }
                depth += 1;
            }
            '}' => depth = depth.checked_sub(1)?,
            '*' if depth == 0 => {
                t.push_lit(&lit);
                lit.clear();
                t.push_any();
            }
            c if depth == 0 => lit.push(c),
            _ => {}
        }
    }
    if depth != 0 {
        return None;
    }
    t.push_lit(&lit);
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(expr: &str) -> Vec<String> {
        index_items(expr)
            .unwrap()
            .into_iter()
            .map(|t| t.to_string())
            .collect()
    }

    #[test]
    fn expressions() {
        assert_eq!(items("a,b"), ["a", "b"]);
        assert_eq!(items("_all"), ["*"]);
        assert_eq!(items(""), ["*"], "an empty list is every index");
        assert_eq!(items("-secret"), ["*"]);
        assert_eq!(items("logs-*,-logs-secret"), ["logs-*"]);
        assert_eq!(items("a, b"), ["a", " b", "b"]);
        assert_eq!(items("+a"), ["a"]);
        assert_eq!(
            items("remote:restricted"),
            ["restricted", "remote:restricted"]
        );
        assert_eq!(items("*:restricted*"), ["restricted*", "*:restricted*"]);
        assert_eq!(items("<logs-{now/d}>"), ["logs-*"]);
        assert_eq!(items(r"<elastic\{ON\}-{now/M}>"), ["elastic{ON}-*"]);
        assert_eq!(items("{{idx}}-x"), ["*-x"]);
        assert!(index_items("<logs-{now/d>").is_err());
        assert!(index_items("a/b").is_err());
        assert_eq!(
            name_items("a,b")
                .unwrap()
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>(),
            ["a", "b", "a,b"]
        );
    }

    #[test]
    fn decoding_as_opensearch_does() {
        assert_eq!(decode_param("a%2Cb").unwrap(), "a,b");
        assert_eq!(
            decode_param("%%72").unwrap(),
            "%72",
            "`%%` is one `%`, not an escape"
        );
        assert_eq!(decode_param("a+b").unwrap(), "a+b");
        assert_eq!(decode_param("%5Fall").unwrap(), "_all");
        assert_eq!(decode_param("%FF").unwrap(), "\u{FFFD}");
        assert_eq!(decode_param("%"), None);
        assert_eq!(decode_param("%2"), None);
        assert_eq!(decode_param("%zz"), None);
        assert_eq!(decode_generic("%%72"), "%r");
        assert_eq!(decode_generic("%5Fbulk"), "_bulk");
    }
}
