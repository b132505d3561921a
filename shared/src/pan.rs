//! Primary account numbers: validated, masked, and keyed-hashed so a PAN is
//! never stored or logged in clear.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A validated card number. Its `Debug`/`Display` show only the last four digits.
#[derive(Clone, PartialEq, Eq)]
pub struct Pan(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PanError {
    #[error("pan must be 12 to 19 digits")]
    Length,
    #[error("pan fails the luhn check")]
    Luhn,
}

impl Pan {
    pub fn parse(s: &str) -> Result<Self, PanError> {
        let digits: String = s.chars().filter(|c| *c != ' ' && *c != '-').collect();
        if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PanError::Length);
        }
        if !luhn_valid(&digits) {
            return Err(PanError::Luhn);
        }
        Ok(Self(digits))
    }

    /// Builds a luhn-valid PAN from a prefix of digits by appending the check digit.
    pub fn with_check_digit(body: &str) -> Result<Self, PanError> {
        let check = luhn_check_digit(body);
        Self::parse(&format!("{body}{check}"))
    }

    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }

    /// The clear digits. Only for the one response that hands a new card out.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan(****{})", self.last4())
    }
}

impl fmt::Display for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "****{}", self.last4())
    }
}

fn luhn_sum(digits: &str, double_first: bool) -> u32 {
    digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            let double = (i % 2 == 1) != double_first;
            if double {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum()
}

fn luhn_valid(digits: &str) -> bool {
    luhn_sum(digits, false).is_multiple_of(10)
}

fn luhn_check_digit(body: &str) -> u32 {
    (10 - luhn_sum(body, true) % 10) % 10
}

/// Keyed hash of PANs (HMAC-SHA256 with a server secret), the only form stored.
#[derive(Clone)]
pub struct PanHasher {
    key: Vec<u8>,
}

impl fmt::Debug for PanHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PanHasher([redacted])")
    }
}

impl PanHasher {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    /// Hex of HMAC-SHA256(key, pan).
    pub fn hash(&self, pan: &Pan) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("hmac takes any key size");
        mac.update(pan.0.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn() {
        assert!(Pan::parse("4111111111111111").is_ok());
        assert!(Pan::parse("4111 1111 1111 1111").is_ok());
        assert_eq!(Pan::parse("4111111111111112"), Err(PanError::Luhn));
        assert_eq!(Pan::parse("41111"), Err(PanError::Length));
        let p = Pan::with_check_digit("411111111111111").unwrap();
        assert_eq!(p.expose(), "4111111111111111");
    }

    #[test]
    fn never_prints_in_clear() {
        let p = Pan::parse("4111111111111111").unwrap();
        assert_eq!(format!("{p} {p:?}"), "****1111 Pan(****1111)");
    }

    #[test]
    fn keyed_hash_depends_on_key() {
        let p = Pan::parse("4111111111111111").unwrap();
        let a = PanHasher::new(b"k1").hash(&p);
        let b = PanHasher::new(b"k2").hash(&p);
        assert_ne!(a, b);
        assert_eq!(a, PanHasher::new(b"k1").hash(&p));
        assert!(!a.contains("4111"));
    }
}
