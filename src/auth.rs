//! Inbound authentication: who may use the proxy (and so its IAM identity).
//!
//! * [`Htpasswd`]: Apache htpasswd files with bcrypt entries only
//!   (`htpasswd -B`); every other hash kind is refused at load.
//! * [`BearerTokens`]: a file with one token a line.
//! * [`Authenticator`]: checks an `Authorization` header against either.
//!
//! bcrypt is deliberately slow (~50–250 ms at cost 10–12, more in debug
//! builds), and [`Authenticator::check`] runs it on the calling thread: call it
//! from `tokio::task::spawn_blocking` (or `block_in_place`).  Successful Basic
//! verifications are cached in memory (HMAC-SHA-256 of user and password under a
//! per-process random key, compared in constant time), so a browser's many
//! requests with the same credentials cost one bcrypt.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use base64::Engine as _;
use http::HeaderValue;
use ring::hmac;
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// The realm in `WWW-Authenticate` challenges.
pub const REALM: &str = "sigv4-proxy";

/// How many successful Basic verifications [`Htpasswd`] remembers by default.
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

/// Tokens shorter than this are refused at load.
pub const MIN_TOKEN_LEN: usize = 16;

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    name: String,
    kind: CredentialKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    /// An htpasswd user (HTTP Basic).
    Basic,
    /// A bearer token, named `token:<line>` after its line in the tokens file.
    Bearer,
}

impl Principal {
    /// The user name, or `token:<line>`: what policies name in `"Principal": {"Proxy": [...]}`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> CredentialKind {
        self.kind
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A credentials file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: line {line}: {message}")]
    Line {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    File { file: String, message: String },
}

/// Why a request was not authenticated.  The pipeline answers 401 with
/// [`Authenticator::challenges`] as `WWW-Authenticate` headers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required")]
    Missing,
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    #[error("the {0} authorization scheme is not accepted here")]
    SchemeNotAccepted(String),
    #[error("wrong user name, password or token")]
    BadCredentials,
}

fn new_key() -> hmac::Key {
    hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
        .expect("the system random number generator failed")
}

fn digest(key: &hmac::Key, parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = hmac::Context::with_key(key);
    for p in parts {
        // length-prefixed, so ("ab","c") and ("a","bc") differ
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

fn read(path: &Path) -> Result<String, AuthConfigError> {
    std::fs::read_to_string(path).map_err(|source| AuthConfigError::Io {
        path: path.to_path_buf(),
        source,
    })
}

// ---------------------------------------------------------------------------
// htpasswd
// ---------------------------------------------------------------------------

/// Users and bcrypt hashes from an Apache htpasswd file.
pub struct Htpasswd {
    users: HashMap<String, String>,
    /// Cost of the first entry, for the decoy verification of unknown users.
    cost: u32,
    decoy: OnceLock<String>,
    key: hmac::Key,
    cache: Mutex<HashMap<String, [u8; 32]>>,
    capacity: usize,
}

impl fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Htpasswd")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl Htpasswd {
    pub fn from_file(path: impl AsRef<Path>) -> Result<Htpasswd, AuthConfigError> {
        let path = path.as_ref();
        Self::parse_named(&read(path)?, &path.display().to_string())
    }

    /// Parses htpasswd text (`user:hash` lines; blank lines and `#` comments are skipped).
    pub fn parse(text: &str) -> Result<Htpasswd, AuthConfigError> {
        Self::parse_named(text, "htpasswd")
    }

    fn parse_named(text: &str, file: &str) -> Result<Htpasswd, AuthConfigError> {
        let err = |line: usize, message: String| AuthConfigError::Line {
            file: file.to_string(),
            line,
            message,
        };
        let mut users = HashMap::new();
        let mut cost = None;
        for (n, line) in lines(text) {
            let Some((user, hash)) = line.split_once(':') else {
                return Err(err(n, "expected user:hash".into()));
            };
            // (A user name cannot contain ':', so it never clashes with `token:N`.)
            if user.is_empty() {
                return Err(err(n, "empty user name".into()));
            }
            let c = bcrypt_cost(hash).map_err(|kind| {
                err(
                    n,
                    format!(
                        "user {user:?}: {kind} hashes are not accepted; use bcrypt (htpasswd -B)"
                    ),
                )
            })?;
            cost.get_or_insert(c);
            if users.insert(user.to_string(), hash.to_string()).is_some() {
                return Err(err(n, format!("user {user:?} appears twice")));
            }
        }
        let Some(cost) = cost else {
            return Err(AuthConfigError::File {
                file: file.to_string(),
                message: "no users".into(),
            });
        };
        Ok(Htpasswd {
            users,
            cost,
            decoy: OnceLock::new(),
            key: new_key(),
            cache: Mutex::new(HashMap::new()),
            capacity: DEFAULT_CACHE_CAPACITY,
        })
    }

    /// Changes how many successful verifications are remembered (0 disables the cache).
    pub fn with_cache_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Checks a password (blocking: may run bcrypt).
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        let d = digest(&self.key, &[user.as_bytes(), password]);
        let Some(hash) = self.users.get(user) else {
            // Same work as for a known user, so timing does not reveal user names.
            let decoy = self.decoy.get_or_init(|| {
                bcrypt::hash_with_salt(b"decoy", self.cost, [7u8; 16])
                    .map(|h| h.to_string())
                    .unwrap_or_default()
            });
            let _ = bcrypt::verify(password, decoy);
            return false;
        };
        if let Some(cached) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
        {
            if bool::from(cached.ct_eq(&d)) {
                return true;
            }
        }
        if !bcrypt::verify(password, hash).unwrap_or(false) {
            return false;
        }
        if self.capacity > 0 {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= self.capacity && !cache.contains_key(user) {
                if let Some(k) = cache.keys().next().cloned() {
                    cache.remove(&k);
                }
            }
            cache.insert(user.to_string(), d);
        }
        true
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.cache.lock().unwrap().len()
    }
}

/// The cost of a well-formed `$2y$`/`$2a$`/`$2b$` hash, or what kind of hash it is instead.
fn bcrypt_cost(hash: &str) -> Result<u32, &'static str> {
    let bytes = hash.as_bytes();
    if ["$2y$", "$2a$", "$2b$"].iter().any(|p| hash.starts_with(p)) {
        // $2y$10$ + 53 chars of ./A-Za-z0-9. The length is checked first and only bytes are
        // indexed: a short or non-ASCII hash must be an error, never a panic.
        let ok = bytes.len() == 60
            && bytes[6] == b'$'
            && bytes[4..6].iter().all(u8::is_ascii_digit)
            && bytes[7..]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'/');
        if !ok {
            return Err("malformed bcrypt");
        }
        let cost = u32::from(bytes[4] - b'0') * 10 + u32::from(bytes[5] - b'0');
        return if (4..=31).contains(&cost) {
            Ok(cost)
        } else {
            Err("malformed bcrypt")
        };
    }
    Err(if hash.starts_with("$2x$") {
        "bcrypt $2x$ (the buggy variant)"
    } else if hash.starts_with("$apr1$") {
        "Apache MD5 ($apr1$)"
    } else if hash.starts_with("{SHA}") {
        "SHA-1 ({SHA})"
    } else if hash.starts_with("$1$") {
        "MD5-crypt ($1$)"
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        "SHA-crypt ($5$/$6$)"
    } else if hash.starts_with("$argon2") {
        "Argon2"
    } else if bytes.len() == 13
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'/')
    {
        "DES crypt (or plaintext)"
    } else {
        "plaintext or unknown"
    })
}

// ---------------------------------------------------------------------------
// bearer tokens
// ---------------------------------------------------------------------------

/// Bearer tokens, one a line (`#` comments and blank lines ignored).  A caller
/// with the token on line N is the principal `token:N`.
pub struct BearerTokens {
    /// (line, HMAC of the token): comparing fixed-size digests hides token lengths.
    tokens: Vec<(u64, [u8; 32])>,
    key: hmac::Key,
}

impl fmt::Debug for BearerTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerTokens")
            .field("tokens", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

impl BearerTokens {
    pub fn from_file(path: impl AsRef<Path>) -> Result<BearerTokens, AuthConfigError> {
        let path = path.as_ref();
        Self::parse_named(&read(path)?, &path.display().to_string())
    }

    pub fn parse(text: &str) -> Result<BearerTokens, AuthConfigError> {
        Self::parse_named(text, "tokens")
    }

    fn parse_named(text: &str, file: &str) -> Result<BearerTokens, AuthConfigError> {
        let key = new_key();
        let mut tokens: Vec<(u64, [u8; 32])> = Vec::new();
        for (n, tok) in lines(text) {
            let err = |message: String| AuthConfigError::Line {
                file: file.to_string(),
                line: n,
                message,
            };
            if !tok.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(err("a token must be printable ASCII without spaces".into()));
            }
            if tok.len() < MIN_TOKEN_LEN {
                return Err(err(format!(
                    "the token is shorter than {MIN_TOKEN_LEN} characters"
                )));
            }
            let d = digest(&key, &[tok.as_bytes()]);
            if let Some((first, _)) = tokens.iter().find(|(_, o)| *o == d) {
                return Err(err(format!("the same token as on line {first}")));
            }
            tokens.push((n as u64, d));
        }
        if tokens.is_empty() {
            return Err(AuthConfigError::File {
                file: file.to_string(),
                message: "no tokens".into(),
            });
        }
        Ok(BearerTokens { tokens, key })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The line of the matching token; every token is compared, in constant time.
    pub fn find(&self, token: &[u8]) -> Option<usize> {
        let d = digest(&self.key, &[token]);
        let mut found = 0u64;
        for (line, t) in &self.tokens {
            found = u64::conditional_select(&found, line, t.ct_eq(&d));
        }
        (found != 0).then_some(found as usize)
    }
}

// ---------------------------------------------------------------------------
// Authorization header
// ---------------------------------------------------------------------------

/// Inbound authentication as configured: htpasswd users, bearer tokens, or both.
#[derive(Debug, Default)]
pub struct Authenticator {
    pub htpasswd: Option<Htpasswd>,
    pub tokens: Option<BearerTokens>,
}

impl Authenticator {
    pub fn new(htpasswd: Option<Htpasswd>, tokens: Option<BearerTokens>) -> Self {
        Authenticator { htpasswd, tokens }
    }

    /// False when neither users nor tokens are configured (everyone gets in;
    /// the pipeline should then not call [`Authenticator::check`]).
    pub fn is_enabled(&self) -> bool {
        self.htpasswd.is_some() || self.tokens.is_some()
    }

    /// Checks the `Authorization` header (blocking: may run bcrypt).
    pub fn check(&self, authorization: Option<&HeaderValue>) -> Result<Principal, AuthError> {
        let value = authorization.ok_or(AuthError::Missing)?;
        let value = value
            .to_str()
            .map_err(|_| AuthError::Malformed("not ASCII"))?
            .trim();
        let (scheme, rest) = value
            .split_once(' ')
            .ok_or(AuthError::Malformed("expected \"<scheme> <credentials>\""))?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let Some(users) = &self.htpasswd else {
                return Err(AuthError::SchemeNotAccepted("Basic".into()));
            };
            let decoded = base64::engine::general_purpose::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            )
            .decode(rest)
            .map_err(|_| AuthError::Malformed("Basic credentials are not base64"))?;
            let colon = decoded
                .iter()
                .position(|&b| b == b':')
                .ok_or(AuthError::Malformed("Basic credentials have no ':'"))?;
            let user = std::str::from_utf8(&decoded[..colon])
                .map_err(|_| AuthError::Malformed("the user name is not UTF-8"))?;
            if users.verify(user, &decoded[colon + 1..]) {
                Ok(Principal {
                    name: user.to_string(),
                    kind: CredentialKind::Basic,
                })
            } else {
                Err(AuthError::BadCredentials)
            }
        } else if scheme.eq_ignore_ascii_case("bearer") {
            let Some(tokens) = &self.tokens else {
                return Err(AuthError::SchemeNotAccepted("Bearer".into()));
            };
            match tokens.find(rest.as_bytes()) {
                Some(line) => Ok(Principal {
                    name: format!("token:{line}"),
                    kind: CredentialKind::Bearer,
                }),
                None => Err(AuthError::BadCredentials),
            }
        } else {
            Err(AuthError::SchemeNotAccepted(scheme.to_string()))
        }
    }

    /// The `WWW-Authenticate` values for a 401, one per accepted scheme (send
    /// each as its own header): `Basic realm="sigv4-proxy", charset="UTF-8"`
    /// and/or `Bearer realm="sigv4-proxy"`.
    pub fn challenges(&self) -> Vec<HeaderValue> {
        let mut out = Vec::new();
        if self.htpasswd.is_some() {
            out.push(HeaderValue::from_static(
                "Basic realm=\"sigv4-proxy\", charset=\"UTF-8\"",
            ));
        }
        if self.tokens.is_some() {
            out.push(HeaderValue::from_static("Bearer realm=\"sigv4-proxy\""));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user: &str, pw: &str, v: bcrypt::Version) -> String {
        let h = bcrypt::hash_with_result(pw, 4)
            .unwrap()
            .format_for_version(v);
        format!("{user}:{h}")
    }

    fn basic(user: &str, pw: &str) -> HeaderValue {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        HeaderValue::from_str(&format!("Basic {b}")).unwrap()
    }

    fn users() -> Htpasswd {
        let text = format!(
            "# users\n{}\n\n{}\r\n{}\n",
            entry("alice", "correct horse", bcrypt::Version::TwoY),
            entry("dashboards-user", "pa:ss:wörd", bcrypt::Version::TwoA),
            entry("carol", "x", bcrypt::Version::TwoB),
        );
        Htpasswd::parse(&text).unwrap()
    }

    const TOKENS: &str = "# service tokens\n\nAAAAAAAAAAAAAAAAAAAA\n  BBBBBBBBBBBBBBBBBBBBBBBB  \n";

    #[test]
    fn htpasswd_bcrypt_entries() {
        let h = users();
        assert_eq!(h.len(), 3);
        assert!(h.verify("alice", b"correct horse"));
        assert!(!h.verify("alice", b"correct horse "));
        assert!(h.verify("dashboards-user", "pa:ss:wörd".as_bytes()));
        assert!(h.verify("carol", b"x"));
        assert!(!h.verify("nobody", b"x"));
    }

    #[test]
    fn successful_verifications_are_cached_and_bounded() {
        let h = users().with_cache_capacity(2);
        assert_eq!(h.cached(), 0);
        assert!(!h.verify("alice", b"wrong"));
        assert_eq!(h.cached(), 0, "failures are not cached");
        assert!(h.verify("alice", b"correct horse"));
        assert_eq!(h.cached(), 1);
        assert!(h.verify("alice", b"correct horse"));
        assert!(
            !h.verify("alice", b"wrong"),
            "a cached user still needs the right password"
        );
        assert!(h.verify("carol", b"x"));
        assert!(h.verify("dashboards-user", "pa:ss:wörd".as_bytes()));
        assert_eq!(h.cached(), 2, "bounded");
        let h = users().with_cache_capacity(0);
        assert!(h.verify("alice", b"correct horse"));
        assert_eq!(h.cached(), 0);
    }

    #[test]
    fn htpasswd_rejects_other_hash_kinds_by_line_and_user() {
        let good = entry("alice", "pw", bcrypt::Version::TwoY);
        for (bad, kind) in [
            ("bob:$apr1$abc$defghijklmnopqrstuvwx", "Apache MD5"),
            ("bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
            ("bob:$1$salt$hash", "MD5-crypt"),
            ("bob:$6$salt$hash", "SHA-crypt"),
            ("bob:abJnggxhB/yWI", "DES crypt"),
            ("bob:hunter2", "plaintext"),
            ("bob:", "plaintext"),
            ("bob:$2y$10$tooshort", "malformed bcrypt"),
            // Shorter than the cost field, cut inside it, or with non-ASCII where it would be:
            // each is a load error, never a panic.
            ("bob:$2y$", "malformed bcrypt"),
            ("bob:$2a$1", "malformed bcrypt"),
            ("bob:$2b$10", "malformed bcrypt"),
            ("bob:$2y$é", "malformed bcrypt"),
            ("bob:$2y$1é$", "malformed bcrypt"),
            (
                // 60 bytes, multi-byte characters in the cost field.
                "bob:$2y$éé$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz012",
                "malformed bcrypt",
            ),
            (
                // 60 bytes, multi-byte character in the salt.
                "bob:$2y$04$abcdéfghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz0123",
                "malformed bcrypt",
            ),
            (
                "bob:$2y$99$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234",
                "malformed bcrypt",
            ),
            (
                "bob:$2x$04$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234",
                "$2x$",
            ),
        ] {
            let e = Htpasswd::parse(&format!("{good}\n#c\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("line 3") && e.contains("\"bob\"") && e.contains(kind),
                "{e}"
            );
        }
        let e = Htpasswd::parse(&format!("{good}\n{good}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("twice"), "{e}");
        let e = Htpasswd::parse("just-a-name\n").unwrap_err().to_string();
        assert!(e.contains("user:hash"), "{e}");
        let e = Htpasswd::parse("# nothing\n\n").unwrap_err().to_string();
        assert!(e.contains("no users"), "{e}");
    }

    #[test]
    fn tokens_file() {
        let t = BearerTokens::parse(TOKENS).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.find(b"AAAAAAAAAAAAAAAAAAAA"), Some(3));
        assert_eq!(t.find(b"BBBBBBBBBBBBBBBBBBBBBBBB"), Some(4));
        assert_eq!(t.find(b"AAAAAAAAAAAAAAAAAAA"), None);
        assert_eq!(t.find(b""), None);
        for (text, msg) in [
            ("", "no tokens"),
            ("# only a comment\n\n", "no tokens"),
            ("short\n", "shorter than 16"),
            (
                "AAAAAAAAAAAAAAAAAAAA\nAAAAAAAAAAAAAAAAAAAA\n",
                "line 2: the same token as on line 1",
            ),
            ("AAAAAAAAAA AAAAAAAAAA\n", "printable ASCII"),
        ] {
            let e = BearerTokens::parse(text).unwrap_err().to_string();
            assert!(e.contains(msg), "{e}");
        }
    }

    #[test]
    fn files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens");
        std::fs::write(&p, TOKENS).unwrap();
        assert_eq!(BearerTokens::from_file(&p).unwrap().len(), 2);
        std::fs::write(&p, "").unwrap();
        let e = BearerTokens::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("tokens: no tokens"), "{e}");
        let p = dir.path().join("htpasswd");
        std::fs::write(&p, "bob:$apr1$x$y\n").unwrap();
        let e = Htpasswd::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("htpasswd: line 1"), "{e}");
        let e = Htpasswd::from_file(dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read") && e.contains("missing"), "{e}");
    }

    #[test]
    fn authenticator_check() {
        let both = Authenticator::new(Some(users()), Some(BearerTokens::parse(TOKENS).unwrap()));
        assert!(both.is_enabled());
        let p = both.check(Some(&basic("alice", "correct horse"))).unwrap();
        assert_eq!((p.name(), p.kind()), ("alice", CredentialKind::Basic));
        let p = both
            .check(Some(&basic("dashboards-user", "pa:ss:wörd")))
            .unwrap();
        assert_eq!(p.name(), "dashboards-user");
        assert_eq!(
            both.check(Some(&basic("alice", "nope"))),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            both.check(Some(&basic("mallory", "nope"))),
            Err(AuthError::BadCredentials)
        );
        let p = both
            .check(Some(&HeaderValue::from_static(
                "bearer  BBBBBBBBBBBBBBBBBBBBBBBB ",
            )))
            .unwrap();
        assert_eq!((p.name(), p.kind()), ("token:4", CredentialKind::Bearer));
        assert_eq!(p.to_string(), "token:4");
        assert_eq!(
            both.check(Some(&HeaderValue::from_static("Bearer AAAA"))),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(both.check(None), Err(AuthError::Missing));
        assert!(matches!(
            both.check(Some(&HeaderValue::from_static("Basic !!!"))),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            both.check(Some(&HeaderValue::from_static("Basic YWxpY2U="))),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            both.check(Some(&HeaderValue::from_static("Basic"))),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            both.check(Some(&HeaderValue::from_bytes(b"Basic \xff").unwrap())),
            Err(AuthError::Malformed(_))
        ));
        assert_eq!(
            both.check(Some(&HeaderValue::from_static("Digest x"))),
            Err(AuthError::SchemeNotAccepted("Digest".into()))
        );
        // Unpadded base64 is accepted.
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode("carol:x");
        assert!(both
            .check(Some(
                &HeaderValue::from_str(&format!("Basic {unpadded}")).unwrap()
            ))
            .is_ok());
        assert_eq!(both.challenges().len(), 2);

        let tokens_only = Authenticator::new(None, Some(BearerTokens::parse(TOKENS).unwrap()));
        assert_eq!(
            tokens_only.check(Some(&basic("alice", "correct horse"))),
            Err(AuthError::SchemeNotAccepted("Basic".into()))
        );
        assert_eq!(
            tokens_only.challenges(),
            [HeaderValue::from_static("Bearer realm=\"sigv4-proxy\"")]
        );
        let users_only = Authenticator::new(Some(users()), None);
        assert_eq!(
            users_only.check(Some(&HeaderValue::from_static(
                "Bearer AAAAAAAAAAAAAAAAAAAA"
            ))),
            Err(AuthError::SchemeNotAccepted("Bearer".into()))
        );
        assert!(users_only.challenges()[0]
            .to_str()
            .unwrap()
            .starts_with("Basic realm=\"sigv4-proxy\""));
        assert!(!Authenticator::default().is_enabled());
    }
}
