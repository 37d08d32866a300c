//! IAM-style wildcard patterns (`*` = any run of characters, `?` = one character)
//! and the request-side resources they are matched against.
//!
//! A request-side [`Target`] is a resource path in which an *index wildcard*
//! (`*` in an index expression, `_all`, a date-math placeholder) stands for
//! any run of characters.  Everything else in a target is literal: a `*` in a
//! document id is just a character.  Matching a policy pattern against a
//! target therefore has two flavours:
//!
//! * [`Glob::covers`]: every concrete resource the target can stand for is
//!   matched by the pattern (used for `Allow`; sound: when it says yes, it is
//!   yes, and it may say no for exotic pattern pairs);
//! * [`Glob::overlaps`]: at least one concrete resource the target can stand
//!   for is matched by the pattern (used for `Deny`; exact).
//!
//! For a target without index wildcards both are plain wildcard matching.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GTok {
    Lit(char),
    One,
    Many,
}

/// A policy-side pattern as written in `Resource`, `Action` or `Principal`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Glob {
    toks: Vec<GTok>,
    /// The pattern as bytes, `None` for a byte `*`, when it is ASCII without `?`: then matching
    /// bytes is matching characters (no ASCII byte is part of another character).
    ascii: Option<Vec<Option<u8>>>,
}

impl Glob {
    pub(crate) fn new(text: &str) -> Glob {
        let mut toks = Vec::with_capacity(text.len());
        for c in text.chars() {
            let t = match c {
                '*' => GTok::Many,
                '?' => GTok::One,
                c => GTok::Lit(c),
            };
            // `**` means the same as `*`; collapsing keeps the DP tables small.
            if t == GTok::Many && toks.last() == Some(&GTok::Many) {
                continue;
            }
            toks.push(t);
        }
        let ascii = toks
            .iter()
            .map(|t| match t {
                GTok::Many => Some(None),
                GTok::Lit(c) if c.is_ascii() => Some(Some(*c as u8)),
                _ => None,
            })
            .collect();
        Glob { toks, ascii }
    }

    /// Plain IAM wildcard matching of a concrete string (no allocation: it runs for every
    /// resource of every request).
    pub(crate) fn matches(&self, s: &str) -> bool {
        if let Some(p) = &self.ascii {
            return matches_bytes(p, s.as_bytes());
        }
        let p = &self.toks;
        // `si` and the star's position are byte offsets at character boundaries.
        let (mut pi, mut si) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        let char_at = |i: usize| s[i..].chars().next().unwrap_or_default();
        while si < s.len() {
            let c = char_at(si);
            if pi < p.len() {
                match p[pi] {
                    GTok::Many => {
                        star = Some((pi, si));
                        pi += 1;
                        continue;
                    }
                    GTok::One => {
                        pi += 1;
                        si += c.len_utf8();
                        continue;
                    }
                    GTok::Lit(l) if l == c => {
                        pi += 1;
                        si += c.len_utf8();
                        continue;
                    }
                    GTok::Lit(_) => {}
                }
            }
            match star {
                Some((sp, ss)) => {
                    let next = ss + char_at(ss).len_utf8();
                    pi = sp + 1;
                    si = next;
                    star = Some((sp, next));
                }
                None => return false,
            }
        }
        while pi < p.len() && p[pi] == GTok::Many {
            pi += 1;
        }
        pi == p.len()
    }

    /// Does this pattern match *every* resource `t` can stand for?
    pub(crate) fn covers(&self, t: &Target) -> bool {
        let Some(tt) = &t.toks else {
            return self.matches(&t.display);
        };
        let g = &self.toks;
        if ends_clash(g, tt) {
            return false;
        }
        let (n, m) = (g.len(), tt.len());
        let w = m + 1;
        // cov[i*w + j]: g[i..] covers tt[j..]
        with_table((n + 1) * w, |cov| {
            cov[n * w + m] = true;
            for i in (0..n).rev() {
                for j in (0..=m).rev() {
                    cov[i * w + j] = match g[i] {
                        GTok::Many => cov[(i + 1) * w + j] || (j < m && cov[i * w + j + 1]),
                        GTok::One => {
                            j < m && matches!(tt[j], TTok::Lit(_)) && cov[(i + 1) * w + j + 1]
                        }
                        GTok::Lit(c) => j < m && tt[j] == TTok::Lit(c) && cov[(i + 1) * w + j + 1],
                    };
                }
            }
            cov[0]
        })
    }

    /// Whether matching `prefix` followed by any text is decided by the prefix alone:
    /// `Some(true)` when every continuation matches (`logs*` after `logs-1/_doc/`),
    /// `Some(false)` when none does (`restricted*`), `None` when the continuation matters
    /// (`*5`, `logs-1/_doc/a*`). A bulk's lines into one index then share a verdict.
    pub(crate) fn decided_after(&self, prefix: &str) -> Option<bool> {
        let g = &self.toks;
        // live[i]: g[..i] can match the prefix read so far; a `*` is live with what follows.
        let mut live = vec![false; g.len() + 1];
        let close = |live: &mut [bool]| {
            for i in 0..g.len() {
                if live[i] && g[i] == GTok::Many {
                    live[i + 1] = true;
                }
            }
        };
        live[0] = true;
        close(&mut live);
        let mut next = vec![false; g.len() + 1];
        for c in prefix.chars() {
            next.fill(false);
            for (i, tok) in g.iter().enumerate() {
                if live[i] {
                    match tok {
                        GTok::Many => next[i] = true,
                        GTok::One => next[i + 1] = true,
                        GTok::Lit(l) if *l == c => next[i + 1] = true,
                        GTok::Lit(_) => {}
                    }
                }
            }
            close(&mut next);
            std::mem::swap(&mut live, &mut next);
        }
        let rest_all_stars = |i: usize| i < g.len() && g[i..].iter().all(|t| *t == GTok::Many);
        if (0..g.len()).any(|i| live[i] && rest_all_stars(i)) {
            Some(true)
        } else if !live.contains(&true) {
            Some(false)
        } else {
            None
        }
    }

    /// Does this pattern match *some* resource `t` can stand for?
    pub(crate) fn overlaps(&self, t: &Target) -> bool {
        let Some(tt) = &t.toks else {
            return self.matches(&t.display);
        };
        let g = &self.toks;
        if ends_clash(g, tt) {
            return false;
        }
        let (n, m) = (g.len(), tt.len());
        let w = m + 1;
        // ok[i*w + j]: some string is accepted by both g[i..] and tt[j..]
        with_table((n + 1) * w, |ok| {
            for i in (0..=n).rev() {
                for j in (0..=m).rev() {
                    if i == n && j == m {
                        ok[i * w + j] = true;
                        continue;
                    }
                    let gi = g.get(i).copied();
                    let tj = tt.get(j).copied();
                    let mut r = false;
                    // epsilon moves
                    if gi == Some(GTok::Many) {
                        r |= ok[(i + 1) * w + j];
                    }
                    if tj == Some(TTok::Any) {
                        r |= ok[i * w + j + 1];
                    }
                    // consume one common character
                    if let (Some(gt), Some(tk)) = (gi, tj) {
                        let ni = if gt == GTok::Many { i } else { i + 1 };
                        let nj = if tk == TTok::Any { j } else { j + 1 };
                        let compatible = match (gt, tk) {
                            (GTok::Lit(a), TTok::Lit(b)) => a == b,
                            _ => true,
                        };
                        if compatible && (ni, nj) != (i, j) {
                            r |= ok[ni * w + nj];
                        }
                    }
                    ok[i * w + j] = r;
                }
            }
            ok[0]
        })
    }
}

/// Do the pattern and the target start, or end, with literal text that differs? Then no string
/// is both (a quick answer for most pairs: `restricted*` and `logs-2026.*/_search`).
fn ends_clash(g: &[GTok], tt: &[TTok]) -> bool {
    let lit_g = |t: &GTok| match t {
        GTok::Lit(c) => Some(*c),
        _ => None,
    };
    let lit_t = |t: &TTok| match t {
        TTok::Lit(c) => Some(*c),
        TTok::Any => None,
    };
    let differ = |a: Option<char>, b: Option<char>| matches!((a, b), (Some(x), Some(y)) if x != y);
    let front = g
        .iter()
        .map(lit_g)
        .zip(tt.iter().map(lit_t))
        .take_while(|(a, b)| a.is_some() && b.is_some())
        .any(|(a, b)| differ(a, b));
    let back = g
        .iter()
        .rev()
        .map(lit_g)
        .zip(tt.iter().rev().map(lit_t))
        .take_while(|(a, b)| a.is_some() && b.is_some())
        .any(|(a, b)| differ(a, b));
    front || back
}

/// Runs `f` on a zeroed table of `len` flags: on the stack when it is small (it is, for the
/// patterns and resources of real requests), else on the heap.
fn with_table(len: usize, f: impl FnOnce(&mut [bool]) -> bool) -> bool {
    const ON_STACK: usize = 2048;
    if len <= ON_STACK {
        let mut table = [false; ON_STACK];
        f(&mut table[..len])
    } else {
        f(&mut vec![false; len])
    }
}

/// [`Glob::matches`] on bytes (`None` is `*`).
fn matches_bytes(p: &[Option<u8>], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(None) => {
                star = Some((pi, si));
                pi += 1;
                continue;
            }
            Some(Some(b)) if *b == s[si] => {
                pi += 1;
                si += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, ss)) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(Option::is_none)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TTok {
    Lit(char),
    Any,
}

/// A resource path a request touches, e.g. `restricted-index/_doc/1`, `_bulk`,
/// or `logs-*/_search` where the `*` came from an index wildcard.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    display: String,
    /// `None`: a literal resource (`display` is the whole truth).
    toks: Option<Vec<TTok>>,
}

impl Target {
    /// A literal resource: any `*` or `?` in it is an ordinary character.
    pub fn literal(s: &str) -> Target {
        Target {
            display: s.to_string(),
            toks: None,
        }
    }

    /// [`Target::literal`] of a string already built.
    pub fn literal_owned(s: String) -> Target {
        Target {
            display: s,
            toks: None,
        }
    }

    /// A resource where `*` stands for any run of characters (an index wildcard).
    pub fn wildcard(s: &str) -> Target {
        let mut t = Target::literal("");
        for (i, part) in s.split('*').enumerate() {
            if i > 0 {
                t.push_any();
            }
            t.push_lit(part);
        }
        t
    }

    pub(crate) fn push_lit(&mut self, s: &str) {
        if let Some(toks) = &mut self.toks {
            toks.extend(s.chars().map(TTok::Lit));
        }
        self.display.push_str(s);
    }

    pub(crate) fn push_any(&mut self) {
        let toks = self
            .toks
            .get_or_insert_with(|| self.display.chars().map(TTok::Lit).collect());
        if toks.last() != Some(&TTok::Any) {
            toks.push(TTok::Any);
        }
        self.display.push('*');
    }

    /// This target followed by a literal suffix.
    pub(crate) fn join(&self, suffix: &str) -> Target {
        let mut t = self.clone();
        t.push_lit(suffix);
        t
    }

    /// True when the target stands for more than one resource.
    pub fn is_wildcard(&self) -> bool {
        self.toks.is_some()
    }

    /// The resource path, with `*` where an index wildcard stands.
    pub fn as_str(&self) -> &str {
        &self.display
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_wildcard() {
            write!(f, "Target::wildcard({:?})", self.display)
        } else {
            write!(f, "Target::literal({:?})", self.display)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn g(s: &str) -> Glob {
        Glob::new(s)
    }

    #[test]
    fn plain_matching() {
        assert!(g("*").matches(""));
        assert!(g("*").matches("a/b/c"));
        assert!(g("test-index/*").matches("test-index/_doc/1"));
        assert!(!g("test-index/*").matches("test-index"));
        assert!(g("test-index*").matches("test-index"));
        assert!(g("test-index*").matches("test-index-2/_search"));
        assert!(g("a?c").matches("abc"));
        assert!(!g("a?c").matches("ac"));
        assert!(g("*_search").matches("x/_search"));
        assert!(!g("_bulk").matches("_bulk/x"));
        assert!(g("a*b*c").matches("aXXbYYc"));
        assert!(!g("a*b*c").matches("aXXbYY"));
        assert!(g("é*").matches("éa"));
    }

    #[test]
    fn literal_targets_treat_stars_as_characters() {
        let t = Target::literal("test-index/_doc/a*b");
        assert!(!t.is_wildcard());
        assert!(g("test-index/_doc/a\u{2a}b").covers(&t));
        assert!(!g("test-index/_doc/ab").overlaps(&t));
    }

    #[test]
    fn covers_and_overlaps() {
        let all = Target::wildcard("*/_search");
        assert!(g("*").covers(&all));
        assert!(!g("test-*").covers(&all));
        assert!(g("restricted-index/*").overlaps(&all));
        assert!(g("restricted-*").overlaps(&all));
        assert!(!g("restricted-index").overlaps(&all));

        let r = Target::wildcard("r*/_search");
        assert!(g("restricted-index/*").overlaps(&r));
        assert!(!g("test-index/*").overlaps(&r));
        assert!(!g("restricted-index/*").covers(&r));

        let t = Target::wildcard("test-*/_search");
        assert!(g("test-*").covers(&t));
        assert!(g("test-*/*").covers(&t));
        assert!(g("test-*/_search").covers(&t));
        assert!(!g("test-index/*").covers(&t));
        assert!(g("test-index/*").overlaps(&t));
        assert!(!g("test-?/*").covers(&t));
        assert!(g("test-?/*").overlaps(&t));
        assert!(!g("logs-*").overlaps(&t));
    }

    #[test]
    fn target_building() {
        let mut t = Target::literal("logs-");
        t.push_any();
        t.push_any();
        let t = t.join("/_search");
        assert_eq!(t.as_str(), "logs-**/_search");
        assert!(t.is_wildcard());
        assert!(g("logs-2024/*").overlaps(&t));
        assert_eq!(Target::wildcard("abc").as_str(), "abc");
        assert!(!Target::wildcard("abc").is_wildcard());
    }

    fn concrete(t: &str, fill: &str) -> String {
        t.replace('*', fill)
    }

    /// IAM wildcard matching, by its definition (slow, obviously right).
    fn reference(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('*', rest)) => (0..=s.len()).any(|i| reference(rest, &s[i..])),
            Some(('?', rest)) => !s.is_empty() && reference(rest, &s[1..]),
            Some((c, rest)) => s.first() == Some(c) && reference(rest, &s[1..]),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// `matches` is IAM wildcard matching, multi-byte characters included.
        #[test]
        fn matching_is_wildcard_matching(pat in "[aé*?]{0,7}|[ab*]{0,7}", s in "[aéb]{0,7}") {
            let p: Vec<char> = pat.chars().collect();
            let chars: Vec<char> = s.chars().collect();
            prop_assert_eq!(Glob::new(&pat).matches(&s), reference(&p, &chars), "{} vs {}", pat, s);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Soundness of `covers` and completeness of `overlaps`, checked on instances.
        #[test]
        fn covers_and_overlaps_agree_with_instances(
            pat in "[ab*?/]{0,6}",
            tgt in "[ab*/]{0,6}",
            fills in proptest::collection::vec("[ab/]{0,3}", 4),
        ) {
            let glob = Glob::new(&pat);
            let target = Target::wildcard(&tgt);
            let covers = glob.covers(&target);
            let overlaps = glob.overlaps(&target);
            for f in &fills {
                let inst = concrete(&tgt, f);
                let m = glob.matches(&inst);
                if covers { prop_assert!(m, "{pat} covers {tgt} but not {inst}"); }
                if m { prop_assert!(overlaps, "{pat} matches {inst} but no overlap with {tgt}"); }
            }
            if covers { prop_assert!(overlaps); }
        }
    }

    #[test]
    fn verdicts_a_prefix_decides() {
        assert_eq!(g("logs*").decided_after("logs-1/_doc/"), Some(true));
        assert_eq!(g("*").decided_after(""), Some(true));
        assert_eq!(g("restricted*").decided_after("logs-1/_doc/"), Some(false));
        assert_eq!(g("*5").decided_after("logs-1/_doc/"), None);
        assert_eq!(g("logs-1/_doc/a*").decided_after("logs-1/_doc/"), None);
        assert_eq!(g("logs-1/_doc/").decided_after("logs-1/_doc/"), None);
        assert_eq!(g("logs-?/*").decided_after("logs-1/_doc/"), Some(true));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]
        /// A decided prefix is the verdict for every continuation.
        #[test]
        fn a_decided_prefix_holds_for_every_continuation(
            pat in "[aé/*?]{0,6}",
            prefix in "[aé/]{0,5}",
            rests in proptest::collection::vec("[aé/]{0,4}", 6),
        ) {
            let glob = Glob::new(&pat);
            if let Some(verdict) = glob.decided_after(&prefix) {
                for rest in &rests {
                    let s = format!("{prefix}{rest}");
                    prop_assert_eq!(glob.matches(&s), verdict, "{} on {}", pat, s);
                }
            }
        }
    }
}
