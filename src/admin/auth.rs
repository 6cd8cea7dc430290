//! Bearer tokens of the admin API: who may look, who may act.
//!
//! A token is 32 random bytes, shown once as 64 hex digits when it is
//! created. The token file keeps only its SHA-256, a name and a role:
//!
//! ```toml
//! [[token]]
//! name = "alice"
//! role = "operator"
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! ```
//!
//! A request presents it as `Authorization: Bearer TOKEN`; the scheme name
//! is case-insensitive (RFC 7235 §2.1: `bearer`, `BEARER` are the same),
//! see [`bearer`]. A presented token is hashed and looked up by its hash. Tokens carry 256
//! bits of entropy, so a fast unsalted hash is enough (nothing to brute
//! force); and the comparison is on hashes, so its timing says nothing
//! about the token.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only: every `GET`.
    Viewer,
    /// Everything, including the actions (`POST`).
    Operator,
}

impl Role {
    /// Name as in the token file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

/// Who presented a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// Why a request that needs a token has no valid one. A closed set: it
/// labels the `admin_auth_failures_total` metric and the audit log's
/// summary lines, which are all a client without a token can cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFailure {
    /// No `Authorization` header.
    #[error("no Authorization header")]
    Missing,
    /// An `Authorization` header that is not `Bearer TOKEN` (another
    /// scheme, no token, or bytes that are not visible ASCII).
    #[error("not a Bearer credential")]
    Scheme,
    /// A well-formed bearer token that is not in the token file.
    #[error("unknown token")]
    UnknownToken,
}

impl AuthFailure {
    /// Every reason, in the order of [`AuthFailure::index`].
    pub const ALL: [AuthFailure; 3] = [
        AuthFailure::Missing,
        AuthFailure::Scheme,
        AuthFailure::UnknownToken,
    ];

    /// The label: `missing`, `scheme` or `unknown_token`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Scheme => "scheme",
            AuthFailure::UnknownToken => "unknown_token",
        }
    }

    /// Position in [`AuthFailure::ALL`].
    pub fn index(self) -> usize {
        match self {
            AuthFailure::Missing => 0,
            AuthFailure::Scheme => 1,
            AuthFailure::UnknownToken => 2,
        }
    }
}

/// The token of an `Authorization` header value (`None`: no header):
/// `Bearer`, in any case, then one or more spaces, then the token (one
/// word of visible ASCII). Spaces around the token are ignored.
pub fn bearer(header: Option<&[u8]>) -> Result<&str, AuthFailure> {
    let value = header.ok_or(AuthFailure::Missing)?;
    let value = std::str::from_utf8(value).map_err(|_| AuthFailure::Scheme)?;
    if !value
        .bytes()
        .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
    {
        return Err(AuthFailure::Scheme);
    }
    let (scheme, token) = value
        .trim_start_matches([' ', '\t'])
        .split_once([' ', '\t'])
        .ok_or(AuthFailure::Scheme)?;
    let token = token.trim_matches([' ', '\t']);
    // A token is one word (RFC 6750 token68): `Bearer a b` is no credential.
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains([' ', '\t']) {
        return Err(AuthFailure::Scheme);
    }
    Ok(token)
}

/// Why the token file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// It could not be read or written.
    #[error("token file {file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// It is not TOML of the token file's shape.
    #[error("token file {file}: {}", .source.to_string().trim_end())]
    Syntax {
        /// The file.
        file: String,
        /// The parser's error.
        source: toml::de::Error,
    },
    /// The tokens could not be written as TOML.
    #[error("token file {file}: {source}")]
    Serialize {
        /// The file.
        file: String,
        /// The serializer's error.
        source: toml::ser::Error,
    },
    /// No random bytes for a new token.
    #[error("token file {file}: no randomness: {cause}")]
    Randomness {
        /// The file.
        file: String,
        /// Why (getrandom's error, which is no `std` error without its
        /// `std` feature, so not a source).
        cause: getrandom::Error,
    },
    /// An entry is invalid.
    #[error("token file {file}: token[{index}]: {reason}")]
    Invalid {
        /// The file.
        file: String,
        /// Entry number, from 0.
        index: usize,
        /// Why.
        #[source]
        reason: EntryProblem,
    },
    /// A token with this name already exists, or none does.
    #[error("token file {file}: {reason}")]
    Name {
        /// The file.
        file: String,
        /// Why.
        #[source]
        reason: NameProblem,
    },
}

/// What is wrong with one entry of the token file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryProblem {
    /// The entry has an empty name.
    #[error("name: must not be empty")]
    NoName,
    /// The hash is not 64 hex digits.
    #[error("sha256: must be 64 hex digits")]
    Sha256,
    /// Two entries hold the same hash.
    #[error("sha256: the same token is listed twice")]
    Duplicate,
}

/// Why a token name cannot be added or removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameProblem {
    /// An empty name.
    #[error("a token needs a name")]
    Empty,
    /// A token with this name exists.
    #[error("a token named `{0}` exists; remove it first")]
    Exists(String),
    /// No token has this name.
    #[error("no token named `{0}`")]
    Unknown(String),
}

/// One entry of the token file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds it (shown in the audit log).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the token, hex.
    pub sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default, rename = "token")]
    tokens: Vec<TokenEntry>,
}

/// The valid tokens, by hash.
#[derive(Debug, Default)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], Principal>,
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn read_file(path: &Path) -> Result<TokenFile, TokenError> {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TokenFile::default()),
        Err(source) => return Err(TokenError::Io { file, source }),
    };
    toml::from_str(&text).map_err(|source| TokenError::Syntax { file, source })
}

impl Tokens {
    /// Loads the token file; a missing file means no tokens (every request
    /// is refused).
    pub fn load(path: &Path) -> Result<Tokens, TokenError> {
        let file = path.display().to_string();
        let mut by_hash = HashMap::new();
        for (index, entry) in read_file(path)?.tokens.into_iter().enumerate() {
            let invalid = |reason| TokenError::Invalid {
                file: file.clone(),
                index,
                reason,
            };
            if entry.name.is_empty() {
                return Err(invalid(EntryProblem::NoName));
            }
            let mut digest = [0u8; 32];
            hex::decode_to_slice(&entry.sha256, &mut digest)
                .map_err(|_| invalid(EntryProblem::Sha256))?;
            let principal = Principal {
                name: entry.name,
                role: entry.role,
            };
            if by_hash.insert(digest, principal).is_some() {
                return Err(invalid(EntryProblem::Duplicate));
            }
        }
        Ok(Tokens { by_hash })
    }

    /// Whose token this is, if any.
    pub fn authenticate(&self, token: &str) -> Option<&Principal> {
        self.by_hash.get(&hash(token))
    }

    /// Who presented the `Authorization` header `header` (its raw value,
    /// `None` when absent), or why nobody valid did.
    pub fn check(&self, header: Option<&[u8]>) -> Result<&Principal, AuthFailure> {
        self.authenticate(bearer(header)?)
            .ok_or(AuthFailure::UnknownToken)
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// Creates a token for `name` with `role`, adds its hash to the file
/// (written atomically, mode 0600) and returns the token: the only time it
/// is ever seen.
pub fn add(path: &Path, name: &str, role: Role) -> Result<String, TokenError> {
    let file = path.display().to_string();
    let mut tokens = read_file(path)?;
    if name.is_empty() {
        return Err(TokenError::Name {
            file,
            reason: NameProblem::Empty,
        });
    }
    if tokens.tokens.iter().any(|t| t.name == name) {
        return Err(TokenError::Name {
            file,
            reason: NameProblem::Exists(name.to_string()),
        });
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|cause| TokenError::Randomness {
        file: file.clone(),
        cause,
    })?;
    let token = hex::encode(secret);
    tokens.tokens.push(TokenEntry {
        name: name.to_string(),
        role,
        sha256: hex::encode(hash(&token)),
    });
    write(path, &tokens)?;
    Ok(token)
}

/// Removes the token named `name` from the file.
pub fn remove(path: &Path, name: &str) -> Result<(), TokenError> {
    let mut tokens = read_file(path)?;
    let before = tokens.tokens.len();
    tokens.tokens.retain(|t| t.name != name);
    if tokens.tokens.len() == before {
        return Err(TokenError::Name {
            file: path.display().to_string(),
            reason: NameProblem::Unknown(name.to_string()),
        });
    }
    write(path, &tokens)
}

/// The entries of the file (names and roles; hashes only).
pub fn list(path: &Path) -> Result<Vec<TokenEntry>, TokenError> {
    Ok(read_file(path)?.tokens)
}

fn write(path: &Path, tokens: &TokenFile) -> Result<(), TokenError> {
    let file = || path.display().to_string();
    let text = toml::to_string(tokens).map_err(|source| TokenError::Serialize {
        file: file(),
        source,
    })?;
    crate::files::write_private_atomically(path, text.as_bytes()).map_err(|source| TokenError::Io {
        file: file(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_tokens_authenticate_with_their_role_and_only_hashes_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let viewer = add(&path, "vera", Role::Viewer).unwrap();
        let operator = add(&path, "otto", Role::Operator).unwrap();
        assert_eq!(viewer.len(), 64);
        let stored = std::fs::read_to_string(&path).unwrap();
        assert!(!stored.contains(&viewer) && !stored.contains(&operator));
        let tokens = Tokens::load(&path).unwrap();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens.authenticate(&viewer).unwrap().role, Role::Viewer);
        assert_eq!(tokens.authenticate(&operator).unwrap().name, "otto");
        assert!(tokens.authenticate("0000").is_none());
        assert!(add(&path, "vera", Role::Operator).is_err());
        remove(&path, "vera").unwrap();
        assert!(Tokens::load(&path).unwrap().authenticate(&viewer).is_none());
        assert!(remove(&path, "vera").is_err());
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let token = add(&path, "vera", Role::Viewer).unwrap();
        let tokens = Tokens::load(&path).unwrap();
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            for gap in [" ", "  ", "\t"] {
                let header = format!("{scheme}{gap}{token} ");
                let who = tokens.check(Some(header.as_bytes()));
                assert_eq!(who.map(|p| p.name.as_str()), Ok("vera"), "{header:?}");
            }
        }
        let refused = |header: Option<&str>| tokens.check(header.map(str::as_bytes)).unwrap_err();
        assert_eq!(refused(None), AuthFailure::Missing);
        assert_eq!(refused(Some("")), AuthFailure::Scheme);
        assert_eq!(refused(Some("Bearer")), AuthFailure::Scheme);
        assert_eq!(refused(Some("Bearer   ")), AuthFailure::Scheme);
        assert_eq!(
            refused(Some(&format!("Basic {token}"))),
            AuthFailure::Scheme
        );
        assert_eq!(
            refused(Some(&format!("Bearers {token}"))),
            AuthFailure::Scheme
        );
        assert_eq!(
            refused(Some(&format!("Bearer{token}"))),
            AuthFailure::Scheme
        );
        assert_eq!(refused(Some("Bearer 0000")), AuthFailure::UnknownToken);
        assert_eq!(
            tokens.check(Some(b"Bearer \xff\xfe")).unwrap_err(),
            AuthFailure::Scheme
        );
        for (i, reason) in AuthFailure::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
    }

    #[test]
    fn bad_entries_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(
            &path,
            "[[token]]\nname = \"a\"\nrole = \"operator\"\nsha256 = \"zz\"\n",
        )
        .unwrap();
        let e = Tokens::load(&path).unwrap_err().to_string();
        assert!(e.contains("token[0]: sha256"), "{e}");
        std::fs::write(
            &path,
            "[[token]]\nname = \"a\"\nrole = \"root\"\nsha256 = \"00\"\n",
        )
        .unwrap();
        assert!(Tokens::load(&path).is_err());
    }
}
