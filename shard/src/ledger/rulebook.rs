//! The ledger's pure rules, without I/O: book accounts, the rulebook that maps
//! a business event to the entries of its movement, the decisions that link
//! authorizations to settlements and pick the credit limit in force, and
//! balances as cumulative sums of postings at a business time.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A book account of one customer. Codes are stable strings stored in the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Book {
    /// A customer account (checking or savings): a liability of the bank.
    Account(Uuid),
    /// The bank's cash clearing with the outside world.
    Cash,
    /// What the bank owes card networks for purchases.
    MerchantPayable,
    FeeIncome,
    /// Authorized card purchases not settled yet.
    CardUnsettled(Uuid),
    /// Settled purchases, fees and payments: what the customer owes on the bill.
    CardBill(Uuid),
    /// Available limit (memo, debit-normal) and its counter-account.
    CardAvailable(Uuid),
    CardLimitReserve(Uuid),
    /// Money a customer sent to another customer, out of its account and not
    /// delivered yet: a liability of the bank to the sender until then.
    TransfersPending,
    /// Transfers between customers on their way between books: credited when
    /// a sender's transfer is delivered, debited when a recipient is paid.
    /// Zero over the whole bank once every transfer has landed (each cell's
    /// share is non-zero when its customers send to or receive from others).
    TransferClearing,
}

impl Book {
    pub fn code(&self) -> String {
        match self {
            Book::Account(id) => format!("account:{id}"),
            Book::Cash => "cash".into(),
            Book::MerchantPayable => "merchant_payable".into(),
            Book::FeeIncome => "fee_income".into(),
            Book::CardUnsettled(id) => format!("card:{id}:unsettled"),
            Book::CardBill(id) => format!("card:{id}:bill"),
            Book::CardAvailable(id) => format!("card:{id}:available"),
            Book::CardLimitReserve(id) => format!("card:{id}:limit_reserve"),
            Book::TransfersPending => "transfers_pending".into(),
            Book::TransferClearing => "transfer_clearing".into(),
        }
    }

    pub fn parse(code: &str) -> Option<Book> {
        match code {
            "cash" => return Some(Book::Cash),
            "merchant_payable" => return Some(Book::MerchantPayable),
            "fee_income" => return Some(Book::FeeIncome),
            "transfers_pending" => return Some(Book::TransfersPending),
            "transfer_clearing" => return Some(Book::TransferClearing),
            _ => {}
        }
        if let Some(id) = code.strip_prefix("account:") {
            return Uuid::parse_str(id).ok().map(Book::Account);
        }
        let rest = code.strip_prefix("card:")?;
        let (id, kind) = rest.split_once(':')?;
        let id = Uuid::parse_str(id).ok()?;
        match kind {
            "unsettled" => Some(Book::CardUnsettled(id)),
            "bill" => Some(Book::CardBill(id)),
            "available" => Some(Book::CardAvailable(id)),
            "limit_reserve" => Some(Book::CardLimitReserve(id)),
            _ => None,
        }
    }

    /// The book accounts a customer account needs.
    pub fn for_customer() -> [Book; 3] {
        [Book::Cash, Book::MerchantPayable, Book::FeeIncome]
    }

    /// The book accounts a card needs.
    pub fn for_card(card: Uuid) -> [Book; 4] {
        [
            Book::CardUnsettled(card),
            Book::CardBill(card),
            Book::CardAvailable(card),
            Book::CardLimitReserve(card),
        ]
    }

    /// The card whose exposure (unsettled + bill) this book account measures.
    fn exposure_of(&self) -> Option<Uuid> {
        match self {
            Book::CardUnsettled(c) | Book::CardBill(c) => Some(*c),
            _ => None,
        }
    }
}

/// Moves `amount` (> 0, minor units) from the credit book account to the debit one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub debit: Book,
    pub credit: Book,
    pub amount: i64,
}

/// One leg of an entry: `amount` is positive for the debit, negative for the credit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leg {
    pub book: Book,
    pub amount: i64,
}

impl Entry {
    pub fn legs(&self) -> [Leg; 2] {
        [
            Leg {
                book: self.debit,
                amount: self.amount,
            },
            Leg {
                book: self.credit,
                amount: -self.amount,
            },
        ]
    }
}

/// A business event with its targets resolved, ready for the rulebook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Deposit or transfer in: cash comes in to the account.
    Credit {
        account: Uuid,
        amount: i64,
    },
    /// Withdrawal or transfer out: cash leaves the account.
    Debit {
        account: Uuid,
        amount: i64,
    },
    /// Between two of the customer's own accounts.
    OwnTransfer {
        from: Uuid,
        to: Uuid,
        amount: i64,
    },
    /// A transfer to another customer leaves the sender's account and waits
    /// as pending until it is delivered ([`Action::TransferDelivered`]) or
    /// returned ([`Action::TransferReturned`]).
    TransferSent {
        from: Uuid,
        amount: i64,
    },
    /// The sender's pending transfer reached the recipient: it leaves for
    /// the clearing.
    TransferDelivered {
        amount: i64,
    },
    /// A transfer from another customer arrives from the clearing.
    TransferReceived {
        to: Uuid,
        amount: i64,
    },
    /// The transfer could not be delivered: the pending amount goes back to
    /// the sender's account (the compensation).
    TransferReturned {
        from: Uuid,
        amount: i64,
    },
    /// An approved card purchase, not settled yet (`post` is false when the
    /// settlement already arrived or an earlier authorization of the same
    /// reference holds; `release` is the later one it replaces: see
    /// [`authorize`]).
    PurchaseAuthorized {
        card: Uuid,
        amount: i64,
        post: bool,
        release: i64,
    },
    /// An authorization's hold ended unsettled (reversed or expired).
    HoldReleased {
        card: Uuid,
        amount: i64,
    },
    /// A settled purchase; `release` is the pending authorization it replaces.
    PurchaseSettled {
        card: Uuid,
        amount: i64,
        release: i64,
    },
    /// Refund or chargeback: the merchant gives the money back.
    Refund {
        card: Uuid,
        amount: i64,
    },
    BillPayment {
        card: Uuid,
        amount: i64,
    },
    LateFee {
        card: Uuid,
        amount: i64,
    },
    /// Change of the limit in force, signed (0 when an older change arrives late).
    CreditLimit {
        card: Uuid,
        delta: i64,
    },
}

/// The rulebook: the entries of the movement an action produces. Card actions
/// also move the available limit by the change of the card's exposure, so that
/// available = limit − unsettled − bill holds after every movement.
// Longer than our usual limit: one arm per kind of movement, a table that
// reads best whole (each arm is one or two entries).
pub fn entries(action: &Action) -> Vec<Entry> {
    let e = |debit, credit, amount| Entry {
        debit,
        credit,
        amount,
    };
    let mut out = match *action {
        Action::Credit { account, amount } => vec![e(Book::Cash, Book::Account(account), amount)],
        Action::Debit { account, amount } => vec![e(Book::Account(account), Book::Cash, amount)],
        Action::OwnTransfer { from, to, amount } => {
            vec![e(Book::Account(from), Book::Account(to), amount)]
        }
        Action::TransferSent { from, amount } => {
            vec![e(Book::Account(from), Book::TransfersPending, amount)]
        }
        Action::TransferDelivered { amount } => {
            vec![e(Book::TransfersPending, Book::TransferClearing, amount)]
        }
        Action::TransferReceived { to, amount } => {
            vec![e(Book::TransferClearing, Book::Account(to), amount)]
        }
        Action::TransferReturned { from, amount } => {
            vec![e(Book::TransfersPending, Book::Account(from), amount)]
        }
        Action::PurchaseAuthorized {
            card,
            amount,
            post,
            release,
        } => {
            let mut v = Vec::new();
            if release > 0 {
                v.push(e(Book::MerchantPayable, Book::CardUnsettled(card), release));
            }
            if post {
                v.push(e(Book::CardUnsettled(card), Book::MerchantPayable, amount));
            }
            v
        }
        Action::PurchaseSettled {
            card,
            amount,
            release,
        } => {
            let mut v = Vec::new();
            if release > 0 {
                v.push(e(Book::MerchantPayable, Book::CardUnsettled(card), release));
            }
            v.push(e(Book::CardBill(card), Book::MerchantPayable, amount));
            v
        }
        Action::HoldReleased { card, amount } => {
            if amount > 0 {
                vec![e(Book::MerchantPayable, Book::CardUnsettled(card), amount)]
            } else {
                Vec::new()
            }
        }
        Action::Refund { card, amount } => {
            vec![e(Book::MerchantPayable, Book::CardBill(card), amount)]
        }
        Action::BillPayment { card, amount } => vec![e(Book::Cash, Book::CardBill(card), amount)],
        Action::LateFee { card, amount } => vec![e(Book::CardBill(card), Book::FeeIncome, amount)],
        Action::CreditLimit { card, delta } => {
            return limit_entry(card, delta).into_iter().collect();
        }
    };
    let limits = limit_entries(&out);
    out.extend(limits);
    out
}

/// The available-limit entries that mirror the exposure (unsettled + bill)
/// each card's entries changed.
fn limit_entries(entries: &[Entry]) -> Vec<Entry> {
    let mut exposure: BTreeMap<Uuid, i64> = BTreeMap::new();
    for entry in entries {
        for leg in entry.legs() {
            if let Some(card) = leg.book.exposure_of() {
                *exposure.entry(card).or_default() += leg.amount;
            }
        }
    }
    exposure
        .into_iter()
        .filter_map(|(card, delta)| limit_entry(card, -delta))
        .collect()
}

/// Available limit up by `delta` (down when negative); nothing when zero.
fn limit_entry(card: Uuid, delta: i64) -> Option<Entry> {
    match delta {
        0 => None,
        d if d > 0 => Some(Entry {
            debit: Book::CardAvailable(card),
            credit: Book::CardLimitReserve(card),
            amount: d,
        }),
        d => Some(Entry {
            debit: Book::CardLimitReserve(card),
            credit: Book::CardAvailable(card),
            amount: -d,
        }),
    }
}

/// What the ledger knows about one card purchase (by network reference).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purchase {
    pub authorization_id: Option<Uuid>,
    pub authorized_amount: Option<i64>,
    pub settled_amount: i64,
    pub settled: bool,
    /// The hold ended without a settlement (reversed, or expired): nothing
    /// of this reference is held any more, whatever arrives later.
    pub released: bool,
}

/// What an arriving authorization does to its purchase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorized {
    /// Hold the amount as unsettled.
    pub post: bool,
    /// Release this much held for the authorization it replaces.
    pub release: i64,
    pub purchase: Purchase,
}

/// An authorization arrives: post it as unsettled unless its settlement came
/// first. Several authorizations of one reference (a repeat decided after the
/// authorizer's dedupe window) keep the earliest decided (the smallest
/// UUIDv7), whatever order they arrive in: a later-arriving earlier one
/// replaces the held one, so the balances do not depend on arrival order.
pub fn authorize(current: Option<&Purchase>, authorization_id: Uuid, amount: i64) -> Authorized {
    let fresh = Purchase {
        authorization_id: Some(authorization_id),
        authorized_amount: Some(amount),
        settled_amount: 0,
        settled: false,
        released: false,
    };
    let Some(p) = current else {
        return Authorized {
            post: true,
            release: 0,
            purchase: fresh,
        };
    };
    let earlier = p
        .authorization_id
        .is_none_or(|held| authorization_id < held);
    if !earlier {
        return Authorized {
            post: false,
            release: 0,
            purchase: p.clone(),
        };
    }
    let purchase = Purchase {
        authorization_id: Some(authorization_id),
        authorized_amount: Some(amount),
        ..p.clone()
    };
    if p.settled || p.released {
        // settled or released already: nothing of it is held any more
        return Authorized {
            post: false,
            release: 0,
            purchase,
        };
    }
    Authorized {
        post: true,
        release: p.authorized_amount.unwrap_or(0),
        purchase,
    }
}

/// The hold of a purchase ends without a settlement (the network reversed
/// the authorization, or it expired): what was held is released once; a
/// settlement or an authorization arriving later holds nothing more.
pub fn release(current: Option<&Purchase>) -> (i64, Purchase) {
    match current {
        Some(p) if !p.settled && !p.released => (
            p.authorized_amount.unwrap_or(0),
            Purchase {
                released: true,
                ..p.clone()
            },
        ),
        Some(p) => (
            0,
            Purchase {
                released: true,
                ..p.clone()
            },
        ),
        None => (
            0,
            Purchase {
                authorization_id: None,
                authorized_amount: None,
                settled_amount: 0,
                settled: false,
                released: true,
            },
        ),
    }
}

/// A settlement arrives: it releases the pending authorization once, if there is one.
pub fn settle(current: Option<&Purchase>, amount: i64) -> (i64, Purchase) {
    match current {
        Some(p) if !p.settled => (
            if p.released {
                0
            } else {
                p.authorized_amount.unwrap_or(0)
            },
            Purchase {
                settled_amount: p.settled_amount + amount,
                settled: true,
                ..p.clone()
            },
        ),
        Some(p) => (
            0,
            Purchase {
                settled_amount: p.settled_amount + amount,
                ..p.clone()
            },
        ),
        None => (
            0,
            Purchase {
                authorization_id: None,
                authorized_amount: None,
                settled_amount: amount,
                settled: true,
                released: false,
            },
        ),
    }
}

/// The limit in force and which change set it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitInForce {
    pub limit: i64,
    pub set_at: DateTime<Utc>,
    pub event_id: String,
}

/// A limit change arrives: the latest by business time wins (ties by event id),
/// so the final limit does not depend on arrival order. Returns the delta to book.
pub fn change_limit(current: &LimitInForce, new: LimitInForce) -> (i64, LimitInForce) {
    if (new.set_at, &new.event_id) > (current.set_at, &current.event_id) {
        (new.limit - current.limit, new)
    } else {
        (0, current.clone())
    }
}

/// Balances (debits minus credits) of every book account, from postings at or
/// before `as_of` (all of them when `None`).
pub fn balances<'a>(
    postings: impl IntoIterator<Item = &'a (DateTime<Utc>, Leg)>,
    as_of: Option<DateTime<Utc>>,
) -> BTreeMap<Book, i64> {
    let mut out = BTreeMap::new();
    for (t, leg) in postings {
        if as_of.is_none_or(|a| *t <= a) {
            *out.entry(leg.book).or_insert(0) += leg.amount;
        }
    }
    out
}

/// The sum of a movement's legs: zero for every valid movement.
pub fn movement_sum(entries: &[Entry]) -> i64 {
    entries.iter().flat_map(Entry::legs).map(|l| l.amount).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        let id = Uuid::new_v4();
        for b in [
            Book::Account(id),
            Book::Cash,
            Book::MerchantPayable,
            Book::FeeIncome,
            Book::CardUnsettled(id),
            Book::CardBill(id),
            Book::CardAvailable(id),
            Book::CardLimitReserve(id),
        ] {
            assert_eq!(Book::parse(&b.code()), Some(b));
        }
        assert_eq!(Book::parse("card:x:bill"), None);
    }

    #[test]
    fn settlement_releases_the_authorization_and_moves_the_limit() {
        let card = Uuid::new_v4();
        let auth = entries(&Action::PurchaseAuthorized {
            card,
            amount: 100,
            post: true,
            release: 0,
        });
        let settle = entries(&Action::PurchaseSettled {
            card,
            amount: 90,
            release: 100,
        });
        let all: Vec<_> = auth.iter().chain(&settle).flat_map(Entry::legs).collect();
        let bal = |b: Book| {
            all.iter()
                .filter(|l| l.book == b)
                .map(|l| l.amount)
                .sum::<i64>()
        };
        assert_eq!(bal(Book::CardUnsettled(card)), 0);
        assert_eq!(bal(Book::CardBill(card)), 90);
        assert_eq!(bal(Book::CardAvailable(card)), -90);
        assert_eq!(movement_sum(&auth), 0);
        assert_eq!(movement_sum(&settle), 0);
    }

    #[test]
    fn settlement_before_authorization_is_not_counted_twice() {
        let id = Uuid::new_v4();
        let (release, p) = settle(None, 50);
        assert_eq!(release, 0);
        assert!(!authorize(Some(&p), id, 50).post);
        let a = authorize(None, id, 50);
        assert!(a.post);
        assert_eq!(settle(Some(&a.purchase), 50).0, 50);
    }

    #[test]
    fn the_earliest_authorization_of_a_reference_holds_whatever_the_order() {
        let (early, late) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let first = authorize(None, late, 900);
        let replaced = authorize(Some(&first.purchase), early, 100);
        assert_eq!((replaced.post, replaced.release), (true, 900));
        assert_eq!(replaced.purchase.authorized_amount, Some(100));
        let kept = authorize(Some(&authorize(None, early, 100).purchase), late, 900);
        assert_eq!((kept.post, kept.release), (false, 0));
        assert_eq!(kept.purchase, replaced.purchase);
    }

    #[test]
    fn latest_limit_wins_whatever_the_arrival_order() {
        let t = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        let l = |limit, s, id: &str| LimitInForce {
            limit,
            set_at: t(s),
            event_id: id.into(),
        };
        let start = l(1000, 0, "a");
        let (d1, s1) = change_limit(&start, l(3000, 20, "c"));
        let (d2, s2) = change_limit(&s1, l(2000, 10, "b"));
        assert_eq!((d1, d2, s2.limit), (2000, 0, 3000));
    }
}
