//! Secrets at rest: API key generation and hashing, and AES-256-GCM sealing of platform tokens.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
// The operating system's generator, through the RNG traits of the AEAD crate's rand_core.
use aes_gcm::aead::rand_core::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How many characters of a key (including `sk_`) are stored and shown again.
pub const KEY_PREFIX_LEN: usize = 11;

/// Format version byte at the front of every sealed value, so a future format can coexist.
const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// A freshly generated API key: the secret (shown once) and what is stored of it.
pub struct NewApiKey {
    /// The full key, `sk_` followed by 48 hex digits. Shown to the user once, never stored.
    pub secret: SecretString,
    /// The first characters, stored and shown in listings.
    pub prefix: String,
    /// SHA-256 of the full key, hex-encoded: what the store keeps.
    pub hash: String,
}

/// Generates a new random API key.
pub fn generate_api_key() -> NewApiKey {
    let mut bytes = [0u8; 24];
    OsRng.fill_bytes(&mut bytes);
    let key = format!("sk_{}", hex::encode(bytes));
    NewApiKey {
        prefix: key[..KEY_PREFIX_LEN].to_owned(),
        hash: hash_api_key(&key),
        secret: SecretString::from(key),
    }
}

/// A new share token of a status page: `st_` and 48 hex digits (192 bits), stored hashed
/// as API keys are.
pub fn generate_share_token() -> NewApiKey {
    let mut bytes = [0u8; 24];
    OsRng.fill_bytes(&mut bytes);
    let token = format!("st_{}", hex::encode(bytes));
    NewApiKey {
        prefix: token[..KEY_PREFIX_LEN].to_owned(),
        hash: hash_api_key(&token),
        secret: SecretString::from(token),
    }
}

/// Whether `token` has the shape of a share token (so garbage never reaches the store).
pub fn looks_like_share_token(token: &str) -> bool {
    token.len() == 3 + 48 && token.starts_with("st_") && token[3..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The stored form of an API key: hex SHA-256. Keys have 192 bits of entropy, so a fast hash
/// is enough; a slow password hash would only slow every request.
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether `key` has the shape of an API key (so garbage never reaches the store).
pub fn looks_like_api_key(key: &str) -> bool {
    key.len() == 3 + 48 && key.starts_with("sk_") && key[3..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Compares two hashes in constant time.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Errors of sealing and opening tokens.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key file could not be read or created.
    #[error("token key file {path}: {reason}")]
    KeyFile {
        /// The file concerned.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A sealed value failed authentication: wrong key, or the data was tampered with.
    #[error("a sealed token could not be opened (wrong token key, or the data was altered)")]
    Open,
}

/// Seals and opens platform tokens with AES-256-GCM. The associated data binds each sealed
/// value to its account, so a ciphertext copied onto another row does not open.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
    fingerprint: String,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

impl Sealer {
    /// A sealer from 32 raw key bytes.
    pub fn from_key(key: &[u8; 32]) -> Self {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(b"socialsyncer token key fingerprint v1");
        Sealer {
            cipher: Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key)),
            fingerprint: hex::encode(&mac.finalize().into_bytes()[..16]),
        }
    }

    /// Names the key without revealing it (an HMAC of a fixed label under the key): what the
    /// database records of the key its tokens are sealed with.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Reads the key file: 32 raw bytes, or 64 hex digits (surrounding white space ignored).
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let err = |reason: String| CryptoError::KeyFile {
            path: path.to_owned(),
            reason,
        };
        private_enough(path).map_err(err)?;
        let data = fs::read(path).map_err(|e| err(e.to_string()))?;
        let key = parse_key(&data).ok_or_else(|| {
            err("expected 32 raw bytes or 64 hex digits (create one with `head -c 32 /dev/urandom`)".into())
        })?;
        Ok(Sealer::from_key(&key))
    }

    /// Loads the key file, creating it (mode 0600, 64 hex digits) if it does not exist.
    /// Returns the sealer and whether the file was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), CryptoError> {
        if path.exists() {
            return Ok((Sealer::load(path)?, false));
        }
        let err = |reason: String| CryptoError::KeyFile {
            path: path.to_owned(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| err(format!("cannot create its folder: {e}")))?;
        }
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts.open(path).map_err(|e| err(e.to_string()))?;
        file.write_all(format!("{}\n", hex::encode(key)).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| err(e.to_string()))?;
        Ok((Sealer::from_key(&key), true))
    }

    /// Seals `plaintext`, bound to `context` (the account it belongs to).
    pub fn seal(&self, context: &str, plaintext: &SecretString) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.expose_secret().as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption cannot fail for in-memory buffers");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Opens a value sealed by [`Sealer::seal`] with the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<SecretString, CryptoError> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != SEAL_VERSION {
            return Err(CryptoError::Open);
        }
        let nonce_bytes: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN].try_into().map_err(|_| CryptoError::Open)?;
        let nonce = Nonce::from(nonce_bytes);
        let plain = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Open)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Open)
    }
}

/// A key file must be readable by its owner alone (mode 0600 or 0400), unless systemd
/// handed it over (`$CREDENTIALS_DIRECTORY`, which only the service can read).
fn private_enough(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let under_systemd = std::env::var_os("CREDENTIALS_DIRECTORY")
            .is_some_and(|d| !d.is_empty() && path.starts_with(std::path::Path::new(&d)));
        let mode = fs::metadata(path).map_err(|e| e.to_string())?.permissions().mode();
        if !under_systemd && mode & 0o077 != 0 {
            return Err(format!(
                "is readable or writable by group or others (mode {:o}); make it the owner's alone: chmod 600 {}",
                mode & 0o777,
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn parse_key(data: &[u8]) -> Option<[u8; 32]> {
    if data.len() == 32 {
        return data.try_into().ok();
    }
    let text = std::str::from_utf8(data).ok()?.trim();
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

/// Installs ring as the process's TLS crypto provider (once; later calls do nothing). Every
/// outbound HTTPS client needs one: call it before building any.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What binds a sealed token to its account (the AEAD associated data).
pub fn seal_context(
    workspace_id: crate::domain::WorkspaceId,
    platform: crate::domain::Platform,
    account_id: &str,
) -> String {
    format!("{workspace_id}/{platform}/{account_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_have_shape_prefix_and_hash() {
        let k = generate_api_key();
        let s = k.secret.expose_secret();
        assert!(looks_like_api_key(s));
        assert!(s.starts_with(&k.prefix));
        assert_eq!(k.hash, hash_api_key(s));
        assert!(hashes_equal(&k.hash, &hash_api_key(s)));
        assert!(!hashes_equal(&k.hash, &hash_api_key("sk_other")));
        assert!(!looks_like_api_key("sk_short"));
    }

    #[test]
    fn seal_round_trip_and_binding() {
        let s = Sealer::from_key(&[7u8; 32]);
        let secret = SecretString::from("EAAB-token".to_owned());
        let sealed = s.seal("instagram/1", &secret);
        assert!(!sealed.windows(10).any(|w| w == b"EAAB-token"));
        assert_eq!(s.open("instagram/1", &sealed).unwrap().expose_secret(), "EAAB-token");
        assert!(s.open("instagram/2", &sealed).is_err());
        assert!(Sealer::from_key(&[8u8; 32]).open("instagram/1", &sealed).is_err());
        assert!(s.open("instagram/1", &sealed[..5]).is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/token.key");
        let (a, created) = Sealer::load_or_create(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let (b, created) = Sealer::load_or_create(&path).unwrap();
        assert!(!created);
        let sealed = a.seal("x", &SecretString::from("t".to_owned()));
        assert_eq!(b.open("x", &sealed).unwrap().expose_secret(), "t");
        fs::write(&path, "not a key").unwrap();
        assert!(Sealer::load(&path).is_err());
    }
}
