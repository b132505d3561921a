//! Access tokens: compact JWS (EdDSA / Ed25519) that global signs at login and
//! every shard verifies locally with global's published JWKS.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{CustomerId, Epoch, ShardId};

pub const ISSUER: &str = "cellbank-global";

/// What a token says: who, where they live, at which placement epoch, until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: CustomerId,
    pub shard: ShardId,
    pub epoch: Epoch,
    /// Unix seconds.
    pub iat: i64,
    /// Unix seconds.
    pub exp: i64,
    pub iss: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token is signed with an unknown key")]
    UnknownKey,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token has the wrong issuer")]
    WrongIssuer,
    #[error("signing key must be 32 bytes of url-safe base64")]
    BadKey,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

/// Signs tokens with an Ed25519 key, and publishes it with at most one more
/// (the next key before a rotation, the previous one after it), so that
/// verifiers know a key before any token carries it and after none does.
#[derive(Clone)]
pub struct TokenSigner {
    key: SigningKey,
    kid: String,
    other: Option<(String, VerifyingKey)>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenSigner(kid={}", self.kid)?;
        match &self.other {
            Some((kid, _)) => write!(f, ", also published={kid})"),
            None => write!(f, ")"),
        }
    }
}

impl TokenSigner {
    /// From a 32-byte seed in url-safe base64 (no padding), as configured.
    pub fn from_seed_b64(seed: &str) -> Result<Self, TokenError> {
        Self::from_seeds_b64(seed, None)
    }

    /// Signs with `current`; the JWKS also lists `other` (the next key ahead
    /// of a rotation, or the previous one while its tokens live on). A blank
    /// `other` counts as none; one equal to `current` is listed once.
    pub fn from_seeds_b64(current: &str, other: Option<&str>) -> Result<Self, TokenError> {
        let mut signer = Self::from_key(decode_seed(current)?);
        if let Some(seed) = other.filter(|s| !s.trim().is_empty()) {
            let next = Self::from_key(decode_seed(seed)?);
            if next.kid != signer.kid {
                signer.other = Some((next.kid, next.key.verifying_key()));
            }
        }
        Ok(signer)
    }

    /// A fresh random key, as base64 seed (for `cellctl keygen` and tests).
    pub fn generate_seed_b64() -> String {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        B64.encode(key.to_bytes())
    }

    fn from_key(key: SigningKey) -> Self {
        let digest = Sha256::digest(key.verifying_key().as_bytes());
        let kid = B64.encode(&digest[..12]);
        Self {
            key,
            kid,
            other: None,
        }
    }

    /// Every published key: the signing one first.
    fn published(&self) -> impl Iterator<Item = (&str, VerifyingKey)> {
        std::iter::once((self.kid.as_str(), self.key.verifying_key()))
            .chain(self.other.iter().map(|(kid, vk)| (kid.as_str(), *vk)))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let header = Header {
            alg: "EdDSA".into(),
            typ: "JWT".into(),
            kid: self.kid.clone(),
        };
        let h = B64.encode(serde_json::to_vec(&header).expect("header serializes"));
        let c = B64.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let signing_input = format!("{h}.{c}");
        let sig = self.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(sig.to_bytes()))
    }

    /// The public halves as a JWKS document (RFC 8037 OKP keys), each with
    /// its `kid`: the signing key first, then the other published one.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .published()
            .map(|(kid, vk)| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "use": "sig",
                    "alg": "EdDSA",
                    "kid": kid,
                    "x": B64.encode(vk.as_bytes()),
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    pub fn verifier(&self) -> TokenVerifier {
        let keys = self
            .published()
            .map(|(kid, vk)| (kid.to_owned(), vk))
            .collect();
        TokenVerifier { keys }
    }
}

/// Verifies tokens against a set of published keys (several during rotation).
#[derive(Clone, Debug, Default)]
pub struct TokenVerifier {
    keys: HashMap<String, VerifyingKey>,
}

impl TokenVerifier {
    /// From a JWKS document; keys that are not Ed25519 are ignored.
    pub fn from_jwks(jwks: &serde_json::Value) -> Result<Self, TokenError> {
        let mut keys = HashMap::new();
        for k in jwks["keys"].as_array().ok_or(TokenError::BadKey)? {
            if k["kty"] != "OKP" || k["crv"] != "Ed25519" {
                continue;
            }
            let kid = k["kid"].as_str().ok_or(TokenError::BadKey)?;
            let x = B64
                .decode(k["x"].as_str().ok_or(TokenError::BadKey)?)
                .map_err(|_| TokenError::BadKey)?;
            let x: [u8; 32] = x.try_into().map_err(|_| TokenError::BadKey)?;
            let vk = VerifyingKey::from_bytes(&x).map_err(|_| TokenError::BadKey)?;
            keys.insert(kid.to_owned(), vk);
        }
        if keys.is_empty() {
            return Err(TokenError::BadKey);
        }
        Ok(Self { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key with this `kid` is known.
    pub fn knows(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// Checks signature, issuer and expiry (`now` in unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header = header_of(h)?;
        if header.alg != "EdDSA" {
            return Err(TokenError::Malformed);
        }
        let key = self.keys.get(&header.kid).ok_or(TokenError::UnknownKey)?;
        let sig = B64.decode(s).map_err(|_| TokenError::Malformed)?;
        let sig: [u8; 64] = sig.try_into().map_err(|_| TokenError::Malformed)?;
        key.verify(format!("{h}.{c}").as_bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| TokenError::BadSignature)?;
        let claims: Claims = B64
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.iss != ISSUER {
            return Err(TokenError::WrongIssuer);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

fn decode_seed(seed: &str) -> Result<SigningKey, TokenError> {
    let bytes = B64
        .decode(seed.trim().trim_end_matches('='))
        .map_err(|_| TokenError::BadKey)?;
    let seed: [u8; 32] = bytes.try_into().map_err(|_| TokenError::BadKey)?;
    Ok(SigningKey::from_bytes(&seed))
}

fn header_of(h: &str) -> Result<Header, TokenError> {
    B64.decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(TokenError::Malformed)
}

/// The `kid` a token names in its header, unverified (to pick or fetch the key).
pub fn kid_of(token: &str) -> Result<String, TokenError> {
    let h = token.split('.').next().ok_or(TokenError::Malformed)?;
    Ok(header_of(h)?.kid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: CustomerId::new(),
            shard: ShardId::parse("shard-2").unwrap(),
            epoch: Epoch(3),
            iat: 0,
            exp,
            iss: ISSUER.into(),
        }
    }

    #[test]
    fn sign_then_verify_through_jwks() {
        let signer = TokenSigner::from_seed_b64(&TokenSigner::generate_seed_b64()).unwrap();
        let verifier = TokenVerifier::from_jwks(&signer.jwks()).unwrap();
        let c = claims(100);
        let t = signer.sign(&c);
        assert_eq!(verifier.verify(&t, 50).unwrap(), c);
        assert_eq!(verifier.verify(&t, 100), Err(TokenError::Expired));
    }

    #[test]
    fn rejects_tampering_and_foreign_keys() {
        let signer = TokenSigner::from_seed_b64(&TokenSigner::generate_seed_b64()).unwrap();
        let other = TokenSigner::from_seed_b64(&TokenSigner::generate_seed_b64()).unwrap();
        let t = signer.sign(&claims(100));
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = B64.encode(serde_json::to_vec(&claims(10_000)).unwrap());
        parts[1] = &forged;
        let tampered = parts.join(".");
        let v = signer.verifier();
        assert_eq!(v.verify(&tampered, 1), Err(TokenError::BadSignature));
        assert_eq!(other.verifier().verify(&t, 1), Err(TokenError::UnknownKey));
        assert_eq!(v.verify("a.b", 1), Err(TokenError::Malformed));
        assert!(TokenSigner::from_seed_b64("short").is_err());
    }

    /// Ahead of a rotation the JWKS lists the current and the next key, the
    /// verifier picks each token's key by its `kid`; after the swap the old
    /// key's tokens still verify while it stays published.
    #[test]
    fn publishes_the_next_key_and_verifies_by_kid() {
        let (old, new) = (
            TokenSigner::generate_seed_b64(),
            TokenSigner::generate_seed_b64(),
        );
        let before = TokenSigner::from_seeds_b64(&old, Some(&new)).unwrap();
        let after = TokenSigner::from_seeds_b64(&new, Some(&old)).unwrap();
        assert_eq!(
            before.kid(),
            TokenSigner::from_seed_b64(&old).unwrap().kid()
        );
        let jwks = before.jwks();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, vec![before.kid(), after.kid()]);
        let v = TokenVerifier::from_jwks(&jwks).unwrap();
        let (t_old, t_new) = (before.sign(&claims(100)), after.sign(&claims(100)));
        assert_eq!(kid_of(&t_new).unwrap(), after.kid());
        assert!(v.knows(after.kid()));
        assert!(v.verify(&t_old, 1).is_ok());
        assert!(v.verify(&t_new, 1).is_ok());
        let only_new = TokenVerifier::from_jwks(&TokenSigner::from_seed_b64(&new).unwrap().jwks());
        assert_eq!(
            only_new.unwrap().verify(&t_old, 1),
            Err(TokenError::UnknownKey)
        );
        assert!(after.verifier().verify(&t_old, 1).is_ok());
        let same = TokenSigner::from_seeds_b64(&old, Some(&old)).unwrap();
        assert_eq!(same.jwks()["keys"].as_array().unwrap().len(), 1);
        assert!(TokenSigner::from_seeds_b64(&old, Some(" ")).is_ok());
        assert!(TokenSigner::from_seeds_b64(&old, Some("short")).is_err());
    }
}
