//! Money in integer minor units with an ISO-4217 currency; never floats.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Currencies the bank books. Minor units are cents for all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Currency {
    Brl,
    Usd,
    Eur,
    Mxn,
    Cop,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    #[error("unknown currency `{0}`; expected one of BRL, USD, EUR, MXN, COP")]
    UnknownCurrency(String),
    #[error("amount must be positive, got {0}")]
    NotPositive(i64),
    #[error("amount {0} exceeds the maximum of {max}", max = Money::MAX_MINOR)]
    TooLarge(i64),
    #[error("currencies differ: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("arithmetic overflow")]
    Overflow,
}

impl Currency {
    pub fn code(self) -> &'static str {
        match self {
            Currency::Brl => "BRL",
            Currency::Usd => "USD",
            Currency::Eur => "EUR",
            Currency::Mxn => "MXN",
            Currency::Cop => "COP",
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "BRL" => Ok(Currency::Brl),
            "USD" => Ok(Currency::Usd),
            "EUR" => Ok(Currency::Eur),
            "MXN" => Ok(Currency::Mxn),
            "COP" => Ok(Currency::Cop),
            other => Err(MoneyError::UnknownCurrency(other.to_owned())),
        }
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Currency> for &'static str {
    fn from(c: Currency) -> Self {
        c.code()
    }
}

/// A strictly positive amount, as external events and requests carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Integer minor units (cents).
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    /// Upper bound for one amount: 10^15 minor units. Sums of many such amounts
    /// still fit in i64, so balance arithmetic cannot overflow in practice.
    pub const MAX_MINOR: i64 = 1_000_000_000_000_000;

    /// A positive amount no larger than [`Money::MAX_MINOR`].
    pub fn positive(minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if minor <= 0 {
            return Err(MoneyError::NotPositive(minor));
        }
        if minor > Self::MAX_MINOR {
            return Err(MoneyError::TooLarge(minor));
        }
        Ok(Self { minor, currency })
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let minor = self
            .minor
            .checked_add(other.minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money {
            minor,
            currency: self.currency,
        })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        write!(f, "{sign}{}.{:02} {}", abs / 100, abs % 100, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positive_amounts_only() {
        assert!(Money::positive(1, Currency::Brl).is_ok());
        assert_eq!(
            Money::positive(0, Currency::Brl),
            Err(MoneyError::NotPositive(0))
        );
        assert!(Money::positive(-5, Currency::Brl).is_err());
        assert!(Money::positive(Money::MAX_MINOR + 1, Currency::Brl).is_err());
    }

    #[test]
    fn currency_parse_and_display() {
        assert_eq!("USD".parse::<Currency>().unwrap(), Currency::Usd);
        assert!("usd".parse::<Currency>().is_err());
        assert_eq!(
            Money::positive(12345, Currency::Brl).unwrap().to_string(),
            "123.45 BRL"
        );
    }

    #[test]
    fn mismatched_currencies_do_not_add() {
        let a = Money::positive(1, Currency::Brl).unwrap();
        let b = Money::positive(1, Currency::Usd).unwrap();
        assert!(a.checked_add(b).is_err());
    }
}
