//! A streaming walk over a JSON document: every member and element is handed to a [`Visit`]
//! with the keys that lead to it, and nothing is kept but the path. The body extractors are
//! visitors, so a large body costs its length in reading, not in memory.

use std::fmt;
use std::io::Read;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// One step of the path to a value: an object's key, or an array's position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

/// The keys of a path, positions left out (`docs[2]._index` → `docs`, `_index`).
pub(crate) fn keys(path: &[Step]) -> impl DoubleEndedIterator<Item = &str> + Clone {
    path.iter().filter_map(|s| match s {
        Step::Key(k) => Some(k.as_str()),
        Step::Index(_) => None,
    })
}

/// Do the path's keys end with `suffix` (`"*"` matches any one key)?
pub(crate) fn ends_with(path: &[Step], suffix: &[&str]) -> bool {
    let mut ks = keys(path).rev();
    for want in suffix.iter().rev() {
        match ks.next() {
            Some(k) if *want == "*" || k == *want => {}
            _ => return false,
        }
    }
    true
}

/// `docs[2]._index`, for messages.
pub(crate) fn display(path: &[Step]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A scalar value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Scalar<'a> {
    Str(&'a str),
    /// A number, as its text.
    Number(&'a str),
    Bool(bool),
    Null,
}

/// Why a walk ended early.
#[derive(Debug)]
pub(crate) enum Halt {
    /// The visitor has what it needs (a touched resource was denied).
    Stop,
    /// The visitor cannot go on (a value of the wrong type where a name belongs...).
    Invalid(String),
}

pub(crate) type Flow = Result<(), Halt>;

/// Receives a document's values in order. `path` leads from the root to the value.
pub(crate) trait Visit {
    fn scalar(&mut self, path: &[Step], value: Scalar<'_>) -> Flow;
    /// An object begins; its members follow, then [`Visit::end_object`].
    fn begin_object(&mut self, _path: &[Step]) -> Flow {
        Ok(())
    }
    fn end_object(&mut self, _path: &[Step], _members: usize) -> Flow {
        Ok(())
    }
    fn end_array(&mut self, _path: &[Step], _elements: usize) -> Flow {
        Ok(())
    }
}

/// What a walk found wrong, or that the visitor stopped it.
#[derive(Debug)]
pub(crate) enum WalkError {
    Halt(Halt),
    /// Not JSON (or trailing data after it), with serde_json's line and column.
    Syntax(String),
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalkError::Halt(Halt::Stop) => f.write_str("stopped"),
            WalkError::Halt(Halt::Invalid(m)) | WalkError::Syntax(m) => f.write_str(m),
        }
    }
}

/// Walks one JSON document read from `r` (leading and trailing white space allowed, nothing
/// else after it). An empty input visits nothing.
pub(crate) fn walk_reader(r: impl Read, visit: &mut dyn Visit) -> Result<(), WalkError> {
    let mut blank = true;
    let counted = Blank {
        inner: r,
        blank: &mut blank,
    };
    let mut de = serde_json::Deserializer::from_reader(counted);
    let walked = walk_with(&mut de, visit);
    match walked {
        Err(WalkError::Syntax(_)) if blank => Ok(()),
        other => other,
    }
}

/// [`walk_reader`] on bytes in memory.
pub(crate) fn walk_slice(bytes: &[u8], visit: &mut dyn Visit) -> Result<(), WalkError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    walk_with(&mut de, visit)
}

/// Passes bytes through, noting whether any was not JSON white space.
struct Blank<'a, R> {
    inner: R,
    blank: &'a mut bool,
}

impl<R: Read> Read for Blank<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if *self.blank && !buf[..n].iter().all(u8::is_ascii_whitespace) {
            *self.blank = false;
        }
        Ok(n)
    }
}

fn walk_with<'de, R: serde_json::de::Read<'de>>(
    de: &mut serde_json::Deserializer<R>,
    visit: &mut dyn Visit,
) -> Result<(), WalkError> {
    let mut halt = None;
    let mut path = Vec::new();
    let mut spare = Vec::new();
    let seed = Walker {
        path: &mut path,
        spare: &mut spare,
        visit,
        halt: &mut halt,
    };
    let walked = seed.deserialize(&mut *de).and_then(|()| de.end());
    match (walked, halt) {
        (_, Some(h)) => Err(WalkError::Halt(h)),
        (Ok(()), None) => Ok(()),
        (Err(e), None) => Err(WalkError::Syntax(e.to_string())),
    }
}

struct Walker<'a> {
    path: &'a mut Vec<Step>,
    /// Key buffers of popped steps, reused: no allocation per key.
    spare: &'a mut Vec<String>,
    visit: &'a mut dyn Visit,
    halt: &'a mut Option<Halt>,
}

impl Walker<'_> {
    fn flow<E: de::Error>(&mut self, f: Flow) -> Result<(), E> {
        f.map_err(|h| {
            *self.halt = Some(h);
            E::custom("walk halted")
        })
    }

    fn number<E: de::Error>(mut self, text: &str) -> Result<(), E> {
        let f = self.visit.scalar(self.path, Scalar::Number(text));
        self.flow(f)
    }

    fn reborrow(&mut self) -> Walker<'_> {
        Walker {
            path: self.path,
            spare: self.spare,
            visit: self.visit,
            halt: self.halt,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walker<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walker<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E: de::Error>(mut self, b: bool) -> Result<(), E> {
        let f = self.visit.scalar(self.path, Scalar::Bool(b));
        self.flow(f)
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<(), E> {
        self.number(&n.to_string())
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<(), E> {
        self.number(&n.to_string())
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<(), E> {
        self.number(&n.to_string())
    }
    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        let f = self.visit.scalar(self.path, Scalar::Null);
        self.flow(f)
    }
    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        let f = self.visit.scalar(self.path, Scalar::Str(v));
        self.flow(f)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut n = 0;
        loop {
            self.path.push(Step::Index(n));
            let more = seq.next_element_seed(self.reborrow())?;
            self.path.pop();
            if more.is_none() {
                break;
            }
            n += 1;
        }
        let f = self.visit.end_array(self.path, n);
        self.flow(f)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let f = self.visit.begin_object(self.path);
        self.flow(f)?;
        let mut n = 0;
        loop {
            let mut key = self.spare.pop().unwrap_or_default();
            key.clear();
            if map.next_key_seed(KeyInto(&mut key))?.is_none() {
                self.spare.push(key);
                break;
            }
            self.path.push(Step::Key(key));
            let walked = map.next_value_seed(self.reborrow());
            if let Some(Step::Key(key)) = self.path.pop() {
                self.spare.push(key);
            }
            walked?;
            n += 1;
        }
        let f = self.visit.end_object(self.path, n);
        self.flow(f)
    }
}

/// Deserializes an object's key into a buffer that is reused.
struct KeyInto<'a>(&'a mut String);

impl<'de> DeserializeSeed<'de> for KeyInto<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyInto<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push_str(v);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Record(Vec<String>);

    impl Visit for Record {
        fn scalar(&mut self, path: &[Step], value: Scalar<'_>) -> Flow {
            self.0.push(format!("{} = {value:?}", display(path)));
            if value == Scalar::Str("stop") {
                return Err(Halt::Stop);
            }
            Ok(())
        }
        fn end_array(&mut self, path: &[Step], n: usize) -> Flow {
            self.0.push(format!("{} has {n}", display(path)));
            Ok(())
        }
    }

    fn walked(text: &str) -> Result<Vec<String>, String> {
        let mut r = Record::default();
        walk_slice(text.as_bytes(), &mut r).map_err(|e| e.to_string())?;
        let mut s = Record::default();
        walk_reader(text.as_bytes(), &mut s).map_err(|e| e.to_string())?;
        assert_eq!(r.0, s.0, "slice and reader walks differ");
        Ok(r.0)
    }

    #[test]
    fn walks_every_value_with_its_path() {
        assert_eq!(
            walked(r#" {"a":{"b":[1,"x",{"c":null}]},"d":true} "#).unwrap(),
            [
                "a.b[0] = Number(\"1\")",
                "a.b[1] = Str(\"x\")",
                "a.b[2].c = Null",
                "a.b has 3",
                "d = Bool(true)"
            ]
        );
        // Duplicate keys are both visited (whichever a parser keeps, both are seen).
        assert_eq!(
            walked(r#"{"i":"a","i":"b"}"#).unwrap(),
            ["i = Str(\"a\")", "i = Str(\"b\")"]
        );
        assert_eq!(walked("  ").unwrap(), Vec::<String>::new());
        assert_eq!(walked("").unwrap(), Vec::<String>::new());
        assert!(
            walked("\"abc").is_err(),
            "an unterminated string is not an empty body"
        );
        assert_eq!(walked(r#""\u0069""#).unwrap(), [" = Str(\"i\")"]);
    }

    #[test]
    fn syntax_errors_and_halts() {
        assert!(walked("{\"a\":").unwrap_err().contains("line 1"));
        assert!(walked("{} {}").is_err(), "trailing data");
        assert!(walked("{/* c */}").is_err());
        let mut r = Record::default();
        let e = walk_slice(br#"["stop","more"]"#, &mut r).unwrap_err();
        assert!(matches!(e, WalkError::Halt(Halt::Stop)));
        assert_eq!(r.0.len(), 1, "nothing after the stop is visited");
        let deep = "[".repeat(1000) + &"]".repeat(1000);
        assert!(walked(&deep).is_err(), "serde_json's recursion limit holds");
    }

    #[test]
    fn suffixes() {
        let p = vec![
            Step::Key("query".into()),
            Step::Key("terms".into()),
            Step::Key("user".into()),
            Step::Key("index".into()),
        ];
        assert!(ends_with(&p, &["terms", "*", "index"]));
        assert!(!ends_with(&p, &["query", "index"]));
        let q = vec![
            Step::Key("like".into()),
            Step::Index(3),
            Step::Key("_index".into()),
        ];
        assert!(ends_with(&q, &["like", "_index"]));
        assert_eq!(display(&q), "like[3]._index");
    }
}
