//! Tokens the key signs, from arbitrary claims: what global issues at login
//! and a shard verifies.
//!
//! Properties: a signed token names the key's id and verifies to the very
//! claims signed while it is live and issued by global; from its expiry on
//! it is refused as expired, and with another issuer as such; changing any
//! one character of it, or verifying it against another key, refuses it.
#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;

use cellbank_shared::ids::{CustomerId, Epoch, ShardId};
use cellbank_shared::token::{kid_of, Claims, TokenError, TokenSigner, TokenVerifier, ISSUER};

#[derive(Debug, Arbitrary)]
struct Input {
    sub: u128,
    shard: u32,
    epoch: i64,
    iat: i64,
    exp: i64,
    /// Global's issuer unless set.
    iss: Option<String>,
    now: i64,
    /// Which character to change, and to what.
    tamper_at: usize,
    tamper_to: u8,
}

static SIGNER: LazyLock<TokenSigner> =
    LazyLock::new(|| TokenSigner::from_seed_b64(&B64.encode([7u8; 32])).unwrap());
static OTHER: LazyLock<TokenVerifier> = LazyLock::new(|| {
    TokenSigner::from_seed_b64(&B64.encode([8u8; 32]))
        .unwrap()
        .verifier()
});

fuzz_target!(|input: Input| {
    let claims = Claims {
        sub: CustomerId::from_uuid(uuid::Uuid::from_u128(input.sub)),
        shard: ShardId::parse(&format!("shard-{}", input.shard.max(1))).unwrap(),
        epoch: Epoch(input.epoch),
        iat: input.iat,
        exp: input.exp,
        iss: input.iss.clone().unwrap_or_else(|| ISSUER.to_owned()),
    };
    let token = SIGNER.sign(&claims);
    assert_eq!(kid_of(&token).as_deref(), Ok(SIGNER.kid()));
    let v = TokenVerifier::from_jwks(&SIGNER.jwks()).unwrap();
    let expected = if claims.iss != ISSUER {
        Err(TokenError::WrongIssuer)
    } else if claims.exp <= input.now {
        Err(TokenError::Expired)
    } else {
        Ok(claims.clone())
    };
    assert_eq!(v.verify(&token, input.now), expected);
    assert_eq!(OTHER.verify(&token, input.now), Err(TokenError::UnknownKey));
    tampered(&token, &v, &input);
});

/// One character of the token changed (to another printable one): refused.
fn tampered(token: &str, v: &TokenVerifier, input: &Input) {
    let at = input.tamper_at % token.len();
    let to = b'!' + input.tamper_to % 94;
    if token.as_bytes()[at] == to {
        return;
    }
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = to;
    let forged = String::from_utf8(bytes).unwrap();
    assert!(
        v.verify(&forged, i64::MIN).is_err(),
        "a changed token verifies: {forged}"
    );
}
