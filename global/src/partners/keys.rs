//! Partner keys: 256 random bits behind a recognisable prefix, shown to the
//! operator once and kept only as their SHA-256.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use cellbank_shared::secret::Secret;

/// Every partner key starts with this, so a leaked one is recognisable.
pub const PREFIX: &str = "cbp_";

/// A fresh key.
pub fn generate() -> Secret {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    Secret::new(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// What the directory stores of a key.
pub fn hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Whether a presented bearer could be a partner key at all (checked before
/// any lookup, so junk never reaches the database).
pub fn well_formed(key: &str) -> bool {
    key.strip_prefix(PREFIX)
        .is_some_and(|rest| rest.len() == 43 && URL_SAFE_NO_PAD.decode(rest).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_well_formed_and_hashed() {
        let a = generate();
        let b = generate();
        assert_ne!(a.expose(), b.expose());
        assert!(well_formed(a.expose()), "{}", a.expose().len());
        assert!(!well_formed("cbp_short"));
        assert!(!well_formed("admin-token"));
        assert_eq!(hash(a.expose()).len(), 32);
        assert_ne!(hash(a.expose()), hash(b.expose()));
    }
}
