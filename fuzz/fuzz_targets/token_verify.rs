//! Token verification on outside bytes: a bearer token as an app presents it
//! to a shard, checked against a fixed key, as the shard checks it (through
//! the key set global publishes); and that key set itself, as a shard
//! fetches it from global.
//!
//! Properties: nothing panics; the verifier built from the published JWKS
//! answers exactly as the signer's own; a token whose signature checks out
//! (it verifies, or fails only on its expiry or issuer) is byte for byte
//! the token the key issues for its claims, so no other spelling of a token
//! is accepted; a key set decoded from outside bytes that does not name the
//! fixed key's id never lets one of its tokens through.
#![no_main]

use std::sync::LazyLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;

use cellbank_shared::ids::{CustomerId, Epoch, ShardId};
use cellbank_shared::token::{kid_of, Claims, TokenError, TokenSigner, TokenVerifier, ISSUER};

/// When the fuzzer's tokens are checked (unix seconds).
const NOW: i64 = 1_800_000_000;

struct Keys {
    signer: TokenSigner,
    published: TokenVerifier,
    valid: String,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let signer = TokenSigner::from_seed_b64(&B64.encode([7u8; 32])).unwrap();
    let published = TokenVerifier::from_jwks(&signer.jwks()).unwrap();
    let valid = signer.sign(&Claims {
        sub: CustomerId::from_uuid(uuid::Uuid::from_u128(
            0x0190_0000_0000_7000_8000_0000_0000_0001,
        )),
        shard: ShardId::parse("shard-1").unwrap(),
        epoch: Epoch(1),
        iat: NOW - 60,
        exp: NOW + 900,
        iss: ISSUER.into(),
    });
    Keys {
        signer,
        published,
        valid,
    }
});

fuzz_target!(|data: &[u8]| {
    let keys = &*KEYS;
    if data.first() == Some(&b'{') {
        return key_set(data, keys);
    }
    // Header values reach the extractor as text.
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let _ = kid_of(token);
    let own = keys.signer.verifier().verify(token, NOW);
    let published = keys.published.verify(token, NOW);
    assert_eq!(own, published, "the published key set answers otherwise");
    match own {
        Ok(claims) => {
            assert_eq!(
                keys.signer.sign(&claims),
                token,
                "another spelling verifies"
            );
            assert_eq!(kid_of(token).as_deref(), Ok(keys.signer.kid()));
            assert!(claims.exp > NOW && claims.iss == ISSUER);
        }
        Err(TokenError::Expired | TokenError::WrongIssuer) => {
            let claims = token.split('.').nth(1).unwrap();
            let claims: Claims = serde_json::from_slice(&B64.decode(claims).unwrap()).unwrap();
            assert_eq!(
                keys.signer.sign(&claims),
                token,
                "another spelling checks out"
            );
        }
        Err(_) => {}
    }
});

/// A key set from outside: decoding it never panics, and unless it names
/// the fixed key's id it does not accept that key's tokens.
fn key_set(data: &[u8], keys: &Keys) {
    let Ok(jwks) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(verifier) = TokenVerifier::from_jwks(&jwks) else {
        return;
    };
    assert!(!verifier.is_empty());
    let r = verifier.verify(&keys.valid, NOW);
    if !verifier.knows(keys.signer.kid()) {
        assert_eq!(r, Err(TokenError::UnknownKey));
    } else if let Ok(claims) = r {
        assert_eq!(keys.signer.sign(&claims), keys.valid);
    }
}
