//! An in-memory ledger with the same decisions as the Postgres apply path,
//! without I/O: what property tests and the pure benchmark drive.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::rulebook::{self, Action, Book, Entry, Leg, LimitInForce, Purchase};

/// A business event with targets already resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemEvent {
    Credit {
        account: Uuid,
        amount: i64,
    },
    Debit {
        account: Uuid,
        amount: i64,
    },
    OwnTransfer {
        from: Uuid,
        to: Uuid,
        amount: i64,
    },
    TransferSent {
        from: Uuid,
        amount: i64,
    },
    TransferDelivered {
        amount: i64,
    },
    TransferReceived {
        to: Uuid,
        amount: i64,
    },
    TransferReturned {
        from: Uuid,
        amount: i64,
    },
    Authorized {
        card: Uuid,
        authorization_id: Uuid,
        network_reference: String,
        amount: i64,
    },
    Settled {
        card: Uuid,
        network_reference: Option<String>,
        amount: i64,
    },
    /// The authorization of a reference is reversed or expired.
    Released {
        card: Uuid,
        network_reference: String,
    },
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
    LimitChanged {
        card: Uuid,
        limit: i64,
    },
}

#[derive(Clone, Debug, Default)]
pub struct MemoryLedger {
    applied: HashSet<String>,
    purchases: HashMap<String, Purchase>,
    limits: HashMap<Uuid, LimitInForce>,
    /// Every leg with its business time, in application order.
    pub postings: Vec<(DateTime<Utc>, Leg)>,
    /// Balances kept incrementally, as the database keeps `book_accounts.balance`.
    pub balances: BTreeMap<Book, i64>,
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// The card's limit in force.
    pub fn limit(&self, card: Uuid) -> Option<i64> {
        self.limits.get(&card).map(|l| l.limit)
    }

    /// Issues a card with its first limit (the card's own movement).
    pub fn issue_card(&mut self, card: Uuid, limit: i64, at: DateTime<Utc>) -> Vec<Entry> {
        let id = format!("card:{card}");
        self.limits.insert(
            card,
            LimitInForce {
                limit,
                set_at: at,
                event_id: id.clone(),
            },
        );
        self.applied.insert(id);
        let entries = rulebook::entries(&Action::CreditLimit { card, delta: limit });
        self.book(at, &entries);
        entries
    }

    /// Applies an event once: `None` when its id was applied before.
    pub fn apply(
        &mut self,
        event_id: &str,
        at: DateTime<Utc>,
        ev: &MemEvent,
    ) -> Option<Vec<Entry>> {
        if !self.applied.insert(event_id.to_owned()) {
            return None;
        }
        let action = match ev.clone() {
            MemEvent::Credit { account, amount } => Action::Credit { account, amount },
            MemEvent::Debit { account, amount } => Action::Debit { account, amount },
            MemEvent::OwnTransfer { from, to, amount } => Action::OwnTransfer { from, to, amount },
            MemEvent::TransferSent { from, amount } => Action::TransferSent { from, amount },
            MemEvent::TransferDelivered { amount } => Action::TransferDelivered { amount },
            MemEvent::TransferReceived { to, amount } => Action::TransferReceived { to, amount },
            MemEvent::TransferReturned { from, amount } => {
                Action::TransferReturned { from, amount }
            }
            MemEvent::Authorized {
                card,
                authorization_id,
                network_reference,
                amount,
            } => {
                let a = rulebook::authorize(
                    self.purchases.get(&network_reference),
                    authorization_id,
                    amount,
                );
                self.purchases.insert(network_reference, a.purchase);
                Action::PurchaseAuthorized {
                    card,
                    amount,
                    post: a.post,
                    release: a.release,
                }
            }
            MemEvent::Settled {
                card,
                network_reference,
                amount,
            } => self.settle(card, network_reference, amount),
            MemEvent::Released {
                card,
                network_reference,
            } => {
                let (amount, next) = rulebook::release(self.purchases.get(&network_reference));
                self.purchases.insert(network_reference, next);
                Action::HoldReleased { card, amount }
            }
            MemEvent::Refund { card, amount } => Action::Refund { card, amount },
            MemEvent::BillPayment { card, amount } => Action::BillPayment { card, amount },
            MemEvent::LateFee { card, amount } => Action::LateFee { card, amount },
            MemEvent::LimitChanged { card, limit } => self.change_limit(card, limit, at, event_id),
        };
        let entries = rulebook::entries(&action);
        self.book(at, &entries);
        Some(entries)
    }

    fn settle(&mut self, card: Uuid, network_reference: Option<String>, amount: i64) -> Action {
        let mut release = 0;
        if let Some(nr) = network_reference {
            let (r, next) = rulebook::settle(self.purchases.get(&nr), amount);
            release = r;
            self.purchases.insert(nr, next);
        }
        Action::PurchaseSettled {
            card,
            amount,
            release,
        }
    }

    fn change_limit(
        &mut self,
        card: Uuid,
        limit: i64,
        at: DateTime<Utc>,
        event_id: &str,
    ) -> Action {
        let current = self.limits.get(&card).cloned().unwrap_or(LimitInForce {
            limit: 0,
            set_at: DateTime::<Utc>::MIN_UTC,
            event_id: String::new(),
        });
        let asked = LimitInForce {
            limit,
            set_at: at,
            event_id: event_id.to_owned(),
        };
        let (delta, next) = rulebook::change_limit(&current, asked);
        self.limits.insert(card, next);
        Action::CreditLimit { card, delta }
    }

    fn book(&mut self, at: DateTime<Utc>, entries: &[Entry]) {
        for e in entries {
            for leg in e.legs() {
                self.postings.push((at, leg));
                *self.balances.entry(leg.book).or_insert(0) += leg.amount;
            }
        }
    }

    pub fn applied(&self) -> usize {
        self.applied.len()
    }

    /// Balances replayed from the postings, at business time `as_of` (all when `None`).
    pub fn replayed(&self, as_of: Option<DateTime<Utc>>) -> BTreeMap<Book, i64> {
        rulebook::balances(&self.postings, as_of)
    }

    /// Sum of every balance: zero when the books balance.
    pub fn trial_balance(&self) -> i64 {
        self.balances.values().sum()
    }
}
