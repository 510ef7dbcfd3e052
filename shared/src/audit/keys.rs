//! HMAC keys under key ids. Secrets never appear in `Debug`, `Display` or any
//! error: an error names the key id (and the environment variable), never the
//! value.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::fmt;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// The shortest secret accepted, in bytes. HMAC-SHA256 accepts any length,
/// but a short secret is a guessable one.
pub const MIN_SECRET_BYTES: usize = 16;

/// Why a key was refused. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key id {0:?} is invalid: use 1 to 64 characters of [A-Za-z0-9._-]")]
    InvalidId(String),
    #[error("key {id:?} is too short: {len} bytes, need at least {MIN_SECRET_BYTES}")]
    TooShort { id: String, len: usize },
    #[error("key id {0:?} is given twice")]
    Duplicate(String),
    #[error("key {id:?}: environment variable {var} is not set (or empty)")]
    MissingEnv { id: String, var: String },
}

/// A key's secret bytes. Prints as `Secret(<redacted>)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; this cannot fail.
        match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable_mac(),
        }
    }
}

#[cold]
fn unreachable_mac() -> HmacSha256 {
    // `new_from_slice` only fails for MACs with a fixed key size; HMAC has none.
    // A zero key keeps this total without a panic path.
    <HmacSha256 as Mac>::new(&Default::default())
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Checks a key id: 1 to 64 characters of `[A-Za-z0-9._-]`.
pub(crate) fn validate_key_id(id: &str) -> Result<(), KeyError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(KeyError::InvalidId(id.to_string()))
    }
}

fn checked_secret(id: &str, secret: &[u8]) -> Result<Secret, KeyError> {
    validate_key_id(id)?;
    if secret.len() < MIN_SECRET_BYTES {
        return Err(KeyError::TooShort {
            id: id.to_string(),
            len: secret.len(),
        });
    }
    Ok(Secret::new(secret))
}

/// The environment variable a key id's secret is read from by default:
/// `MESHWARD_AUDIT_KEY_<ID>`, upper-cased, `.` and `-` turned into `_`.
///
/// ```
/// assert_eq!(meshward_shared::audit::env_var_for_key("k-2026.1"), "MESHWARD_AUDIT_KEY_K_2026_1");
/// ```
pub fn env_var_for_key(id: &str) -> String {
    let mut var = String::from("MESHWARD_AUDIT_KEY_");
    var.extend(id.chars().map(|c| match c {
        '.' | '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    var
}

/// The key a signer signs with: its id and a prepared HMAC state.
#[derive(Clone)]
pub struct SigningKey {
    id: String,
    mac: HmacSha256,
}

impl SigningKey {
    pub fn new(id: &str, secret: &[u8]) -> Result<Self, KeyError> {
        let secret = checked_secret(id, secret)?;
        Ok(SigningKey {
            id: id.to_string(),
            mac: secret.mac(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// HMAC-SHA256 over the concatenation of `parts`.
    pub(crate) fn sign(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The keys a verifier accepts, by key id. Holding old and new keys side by
/// side is how keys rotate: sign with the new one, verify with both.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: BTreeMap<String, SigningKey>,
}

impl Keyring {
    pub fn new() -> Self {
        Keyring::default()
    }

    /// Adds a key; a second key under the same id is an error.
    pub fn insert(&mut self, id: &str, secret: &[u8]) -> Result<(), KeyError> {
        if self.keys.contains_key(id) {
            return Err(KeyError::Duplicate(id.to_string()));
        }
        let key = SigningKey::new(id, secret)?;
        self.keys.insert(id.to_string(), key);
        Ok(())
    }

    /// Reads each key id's secret from an environment variable
    /// (`(id, None)` means [`env_var_for_key`]`(id)`).
    ///
    /// ```no_run
    /// let keys = meshward_shared::audit::Keyring::from_env(&[("k1", None), ("k2", Some("AUDIT_K2"))])?;
    /// # Ok::<(), meshward_shared::audit::KeyError>(())
    /// ```
    pub fn from_env(ids: &[(&str, Option<&str>)]) -> Result<Self, KeyError> {
        Self::from_lookup(ids, |var| std::env::var_os(var).map(os_bytes))
    }

    /// Like [`Keyring::from_env`] with a custom lookup (tests, secret stores).
    pub fn from_lookup(
        ids: &[(&str, Option<&str>)],
        lookup: impl Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<Self, KeyError> {
        let mut ring = Keyring::new();
        for (id, var) in ids {
            validate_key_id(id)?;
            let var = var.map_or_else(|| env_var_for_key(id), str::to_string);
            let secret =
                lookup(&var)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| KeyError::MissingEnv {
                        id: id.to_string(),
                        var: var.clone(),
                    })?;
            ring.insert(id, &secret)?;
        }
        Ok(ring)
    }

    pub fn get(&self, id: &str) -> Option<&SigningKey> {
        self.keys.get(id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks `mac` against HMAC-SHA256 of `parts` under key `id`, in
    /// constant time. `None` when the key id is unknown.
    pub(crate) fn verify(&self, id: &str, parts: &[&[u8]], mac: &[u8]) -> Option<bool> {
        let key = self.keys.get(id)?;
        let mut state = key.mac.clone();
        for part in parts {
            state.update(part);
        }
        Some(state.verify_slice(mac).is_ok())
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn os_bytes(value: std::ffi::OsString) -> Vec<u8> {
    value.to_string_lossy().into_owned().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"super-secret-value-1234";

    #[test]
    fn secrets_never_print() {
        let key = SigningKey::new("k1", SECRET).unwrap();
        let mut ring = Keyring::new();
        ring.insert("k1", SECRET).unwrap();
        for text in [
            format!("{key:?}"),
            format!("{ring:?}"),
            format!("{:?}", Secret::new(SECRET)),
        ] {
            assert!(!text.contains("super-secret"), "{text}");
        }
    }

    #[test]
    fn errors_name_the_key_and_variable_but_not_the_secret() {
        let err = Keyring::from_lookup(&[("k1", None)], |_| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "key \"k1\": environment variable MESHWARD_AUDIT_KEY_K1 is not set (or empty)"
        );
        let err =
            Keyring::from_lookup(&[("k1", None)], |_| Some(b"short-secret".to_vec())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "key \"k1\" is too short: 12 bytes, need at least 16"
        );
        assert!(!err.to_string().contains("short-secret"));
    }

    #[test]
    fn key_ids_are_restricted() {
        for bad in ["", "k 1", "k;1", "ключ", &"k".repeat(65)] {
            assert!(SigningKey::new(bad, SECRET).is_err(), "{bad:?}");
        }
        for good in ["k1", "2026-01.a_b", &"k".repeat(64)] {
            assert!(SigningKey::new(good, SECRET).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let mut ring = Keyring::new();
        ring.insert("k1", SECRET).unwrap();
        assert_eq!(
            ring.insert("k1", SECRET),
            Err(KeyError::Duplicate("k1".into()))
        );
    }

    #[test]
    fn explicit_variable_names_are_used() {
        let ring = Keyring::from_lookup(&[("k1", Some("MY_VAR"))], |var| {
            (var == "MY_VAR").then(|| SECRET.to_vec())
        })
        .unwrap();
        assert!(ring.contains("k1"));
    }
}
