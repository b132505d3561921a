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

/// Signs tokens with an Ed25519 key.
#[derive(Clone)]
pub struct TokenSigner {
    key: SigningKey,
    kid: String,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenSigner(kid={})", self.kid)
    }
}

impl TokenSigner {
    /// From a 32-byte seed in url-safe base64 (no padding), as configured.
    pub fn from_seed_b64(seed: &str) -> Result<Self, TokenError> {
        let bytes = B64
            .decode(seed.trim().trim_end_matches('='))
            .map_err(|_| TokenError::BadKey)?;
        let seed: [u8; 32] = bytes.try_into().map_err(|_| TokenError::BadKey)?;
        Ok(Self::from_key(SigningKey::from_bytes(&seed)))
    }

    /// A fresh random key, as base64 seed (for `cellctl keygen` and tests).
    pub fn generate_seed_b64() -> String {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        B64.encode(key.to_bytes())
    }

    fn from_key(key: SigningKey) -> Self {
        let digest = Sha256::digest(key.verifying_key().as_bytes());
        let kid = B64.encode(&digest[..12]);
        Self { key, kid }
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

    /// The public half as a JWKS document (RFC 8037 OKP key).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "use": "sig",
                "alg": "EdDSA",
                "kid": self.kid,
                "x": B64.encode(self.key.verifying_key().as_bytes()),
            }]
        })
    }

    pub fn verifier(&self) -> TokenVerifier {
        let mut keys = HashMap::new();
        keys.insert(self.kid.clone(), self.key.verifying_key());
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

    /// Checks signature, issuer and expiry (`now` in unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
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
}
