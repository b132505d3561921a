//! A batch of ledger events decided in memory: what the batch's customers
//! hold (accounts, cards, purchases, book balances), loaded once, is moved
//! event by event through the rulebook, and what changed comes out as the
//! rows to write, one statement per table. No I/O: `store` loads and writes.

use std::collections::{BTreeMap, HashMap};

use cellbank_shared::ids::CustomerId;
use cellbank_shared::money::Currency;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::event::{Body, CardRef, InvalidEvent, LedgerEvent};
use super::facts::Fact;
use super::rulebook::{self, Action, Book, LimitInForce, Purchase};

/// A book account by what names it: a code names one per currency.
pub type BookKey = (CustomerId, Book, Currency);

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AccountRow {
    pub account_id: Uuid,
    pub customer_id: Uuid,
    pub number: String,
    pub kind: String,
    pub currency: String,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CardRow {
    pub card_id: Uuid,
    pub customer_id: Uuid,
    pub pan_hash: String,
    pub credit_limit: i64,
    pub limit_set_at: DateTime<Utc>,
    pub limit_event: String,
    pub currency: String,
    pub blocked: bool,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PurchaseRow {
    pub customer_id: Uuid,
    pub network_reference: String,
    pub card_id: Uuid,
    pub authorization_id: Option<Uuid>,
    pub authorized_amount: Option<i64>,
    pub settled_amount: i64,
    pub status: String,
    pub released: bool,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct BookRow {
    pub id: i64,
    pub customer_id: Uuid,
    pub code: String,
    pub currency: String,
    pub balance: i64,
}

/// A book account as the batch sees it: its id once it exists.
#[derive(Clone, Copy, Debug, Default)]
struct Balance {
    id: Option<i64>,
    balance: i64,
}

/// What the batch's customers hold, as loaded under their row locks (their
/// accounts in creation order).
#[derive(Default)]
pub struct Holdings {
    accounts: HashMap<CustomerId, Vec<AccountRow>>,
    cards: HashMap<CustomerId, Vec<CardRow>>,
    /// By (customer, network reference), then card.
    purchases: HashMap<(CustomerId, String), BTreeMap<Uuid, Purchase>>,
    books: HashMap<BookKey, Balance>,
}

impl Holdings {
    pub fn new(
        accounts: Vec<AccountRow>,
        cards: Vec<CardRow>,
        purchases: Vec<PurchaseRow>,
        books: Vec<BookRow>,
    ) -> Self {
        let mut h = Holdings::default();
        for a in accounts {
            let c = CustomerId::from_uuid(a.customer_id);
            h.accounts.entry(c).or_default().push(a);
        }
        for c in cards {
            let id = CustomerId::from_uuid(c.customer_id);
            h.cards.entry(id).or_default().push(c);
        }
        for p in purchases {
            let key = (CustomerId::from_uuid(p.customer_id), p.network_reference);
            let purchase = Purchase {
                authorization_id: p.authorization_id,
                authorized_amount: p.authorized_amount,
                settled_amount: p.settled_amount,
                settled: p.status == "settled",
                released: p.released,
            };
            h.purchases
                .entry(key)
                .or_default()
                .insert(p.card_id, purchase);
        }
        for b in books {
            // A code or currency this build cannot read is no book it posts to.
            let (Some(book), Ok(ccy)) = (Book::parse(&b.code), b.currency.parse()) else {
                continue;
            };
            let balance = Balance {
                id: Some(b.id),
                balance: b.balance,
            };
            h.books
                .insert((CustomerId::from_uuid(b.customer_id), book, ccy), balance);
        }
        h
    }
}

/// One leg to insert: `event` indexes the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posting {
    pub event: usize,
    pub entry_no: i32,
    pub book: BookKey,
    pub amount: i64,
}

/// A purchase's state at the end of the batch; `authorized_at` when an
/// authorization of the batch (re)set it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedPurchase {
    pub customer: CustomerId,
    pub purchase: Purchase,
    pub authorized_at: Option<DateTime<Utc>>,
}

/// What the batch changes, ready to write.
#[derive(Debug, Default)]
pub struct Changes {
    /// Legs in event order, then entry order.
    pub postings: Vec<Posting>,
    /// Legs written per event of the batch (0 for a duplicate).
    pub legs: Vec<usize>,
    /// Balance movements per book account (zero ones left out when written).
    pub deltas: BTreeMap<BookKey, i64>,
    /// Every book account touched, with its id when it already exists.
    pub books: BTreeMap<BookKey, Option<i64>>,
    /// By (card, network reference).
    pub purchases: BTreeMap<(Uuid, String), SavedPurchase>,
    /// Limits in force that changed, by card.
    pub limits: BTreeMap<Uuid, LimitInForce>,
    /// The outbox's card facts, in event order.
    pub facts: Vec<Fact>,
}

fn rule(msg: impl Into<String>) -> InvalidEvent {
    InvalidEvent::Rule(msg.into())
}

fn same_currency(expected: &str, got: Currency, what: &str) -> Result<(), InvalidEvent> {
    if expected == got.code() {
        Ok(())
    } else {
        Err(rule(format!(
            "currency {got} does not match the {what}'s {expected}"
        )))
    }
}

/// What resolving an event decided: the rulebook action, the card it touched
/// (whose state then goes to the outbox) and the authorization it booked.
struct Resolved {
    action: Action,
    card: Option<Uuid>,
    authorization: Option<Uuid>,
}

impl Resolved {
    fn account(action: Action) -> Self {
        Self {
            action,
            card: None,
            authorization: None,
        }
    }

    fn card(action: Action, card: Uuid) -> Self {
        Self {
            action,
            card: Some(card),
            authorization: None,
        }
    }
}

/// A reference to a card by its id.
fn by_id(card_id: Uuid) -> CardRef {
    CardRef {
        card_id: Some(card_id),
        card_hash: None,
    }
}

/// Decides `events` (the batch's new ones, by their index in the batch of
/// `len` events) in order against `held`.
pub fn decide(
    held: Holdings,
    len: usize,
    events: &[(usize, &LedgerEvent)],
) -> Result<Changes, InvalidEvent> {
    let mut d = Decider {
        held,
        changes: Changes {
            legs: vec![0; len],
            ..Default::default()
        },
    };
    for (i, ev) in events {
        d.changes.legs[*i] = d.apply(*i, ev)?;
    }
    Ok(d.changes)
}

struct Decider {
    held: Holdings,
    changes: Changes,
}

impl Decider {
    fn apply(&mut self, i: usize, ev: &LedgerEvent) -> Result<usize, InvalidEvent> {
        let currency = ev.currency();
        let resolved = self.resolve(ev, currency)?;
        let entries = rulebook::entries(&resolved.action);
        debug_assert_eq!(rulebook::movement_sum(&entries), 0);
        let legs = self.post(i, ev.customer_id, currency, &entries);
        if let Some(card) = resolved.card {
            self.card_fact(ev.customer_id, card, resolved.authorization);
        }
        Ok(legs)
    }

    /// Adds the legs of `entries` and moves the balances; returns legs added.
    fn post(
        &mut self,
        event: usize,
        customer: CustomerId,
        currency: Currency,
        entries: &[rulebook::Entry],
    ) -> usize {
        let mut n = 0;
        for (entry_no, e) in entries.iter().enumerate() {
            for leg in e.legs() {
                let book = (customer, leg.book, currency);
                let held = self.held.books.entry(book).or_default();
                held.balance += leg.amount;
                self.changes.books.insert(book, held.id);
                *self.changes.deltas.entry(book).or_default() += leg.amount;
                self.changes.postings.push(Posting {
                    event,
                    entry_no: entry_no as i32,
                    book,
                    amount: leg.amount,
                });
                n += 1;
            }
        }
        n
    }

    /// The card's state after this movement, as the outbox carries it.
    fn card_fact(&mut self, customer: CustomerId, card_id: Uuid, authorization_id: Option<Uuid>) {
        let Some(c) = self
            .held
            .cards
            .get(&customer)
            .and_then(|cs| cs.iter().find(|c| c.card_id == card_id))
        else {
            return;
        };
        let Ok(currency) = c.currency.parse::<Currency>() else {
            return;
        };
        let available = self
            .held
            .books
            .get(&(customer, Book::CardAvailable(card_id), currency))
            .map_or(0, |b| b.balance);
        self.changes.facts.push(Fact::Card {
            customer_id: customer,
            card_id,
            pan_hash: c.pan_hash.clone(),
            currency,
            credit_limit: c.credit_limit,
            blocked: c.blocked,
            available,
            authorization_id,
        });
    }

    fn account(
        &self,
        customer: CustomerId,
        number: Option<&str>,
        currency: Currency,
    ) -> Result<Uuid, InvalidEvent> {
        let accounts = self
            .held
            .accounts
            .get(&customer)
            .map_or(&[][..], Vec::as_slice);
        let found = match number {
            Some(n) => accounts.iter().find(|a| a.number == n),
            None => accounts
                .iter()
                .find(|a| a.kind == "checking" && a.currency == currency.code()),
        };
        let a = found.ok_or_else(|| rule("unknown account for this customer"))?;
        same_currency(&a.currency, currency, "account")?;
        Ok(a.account_id)
    }

    /// The card `r` names: by id, by PAN hash, or the customer's only card.
    fn card(
        &self,
        customer: CustomerId,
        r: &CardRef,
        currency: Currency,
    ) -> Result<CardRow, InvalidEvent> {
        let cards = self
            .held
            .cards
            .get(&customer)
            .map_or(&[][..], Vec::as_slice);
        let mut named = cards.iter().filter(|c| match (&r.card_id, &r.card_hash) {
            (Some(id), _) => c.card_id == *id,
            (None, Some(h)) => c.pan_hash == *h,
            (None, None) => true,
        });
        let (Some(c), None) = (named.next(), named.next()) else {
            return Err(rule(
                "unknown card for this customer (give card_hash or card_id)",
            ));
        };
        same_currency(&c.currency, currency, "card")?;
        Ok(c.clone())
    }

    /// The customer's purchase with this reference: on `card` when given,
    /// else the only card of the customer that has one.
    fn purchase(
        &self,
        customer: CustomerId,
        card: Option<Uuid>,
        network_reference: &str,
    ) -> Option<(Uuid, Purchase)> {
        let by_card = self
            .held
            .purchases
            .get(&(customer, network_reference.to_owned()))?;
        let mut found = by_card
            .iter()
            .filter(|(c, _)| card.is_none_or(|want| **c == want));
        match (found.next(), found.next()) {
            (Some((c, p)), None) => Some((*c, p.clone())),
            _ => None,
        }
    }

    fn save_purchase(
        &mut self,
        network_reference: &str,
        customer: CustomerId,
        card: Uuid,
        p: &Purchase,
        authorized_at: Option<DateTime<Utc>>,
    ) {
        let key = (customer, network_reference.to_owned());
        self.held
            .purchases
            .entry(key)
            .or_default()
            .insert(card, p.clone());
        let saved = self
            .changes
            .purchases
            .entry((card, network_reference.to_owned()))
            .or_insert_with(|| SavedPurchase {
                customer,
                purchase: p.clone(),
                authorized_at: None,
            });
        saved.purchase = p.clone();
        saved.authorized_at = authorized_at.or(saved.authorized_at);
    }

    /// Resolves the event's targets and makes its stateful decisions, one
    /// small function per kind of event.
    // Longer than our usual limit: a dispatch table with one short arm per
    // kind of event.
    fn resolve(&mut self, ev: &LedgerEvent, currency: Currency) -> Result<Resolved, InvalidEvent> {
        let customer = ev.customer_id;
        let on_card = |d: &Self, r: &CardRef| d.card(customer, r, currency).map(|c| c.card_id);
        Ok(match &ev.body {
            Body::Account {
                credit,
                account_number,
                amount,
            } => {
                let account = self.account(customer, account_number.as_deref(), currency)?;
                let amount = amount.minor;
                Resolved::account(if *credit {
                    Action::Credit { account, amount }
                } else {
                    Action::Debit { account, amount }
                })
            }
            Body::OwnTransfer { from, to, amount } => Resolved::account(Action::OwnTransfer {
                from: *from,
                to: *to,
                amount: amount.minor,
            }),
            Body::TransferSent { from, amount, .. } => Resolved::account(Action::TransferSent {
                from: *from,
                amount: amount.minor,
            }),
            Body::TransferDelivered { amount, .. } => {
                Resolved::account(Action::TransferDelivered {
                    amount: amount.minor,
                })
            }
            Body::TransferReceived { to, amount, .. } => {
                Resolved::account(Action::TransferReceived {
                    to: *to,
                    amount: amount.minor,
                })
            }
            Body::TransferReturned { from, amount, .. } => {
                Resolved::account(Action::TransferReturned {
                    from: *from,
                    amount: amount.minor,
                })
            }
            Body::PurchaseAuthorized { .. } => self.authorized(ev, currency)?,
            Body::PurchaseSettled { .. } => self.settled(ev, currency)?,
            Body::HoldReleased { .. } => self.hold_released(ev, currency)?,
            Body::Refund { card, amount } => {
                let card = on_card(self, card)?;
                let amount = amount.minor;
                Resolved::card(Action::Refund { card, amount }, card)
            }
            Body::BillPayment { card, amount } => {
                let card = on_card(self, card)?;
                let amount = amount.minor;
                Resolved::card(Action::BillPayment { card, amount }, card)
            }
            Body::LateFee { card, amount } => {
                let card = on_card(self, card)?;
                let amount = amount.minor;
                Resolved::card(Action::LateFee { card, amount }, card)
            }
            Body::CardIssued { card_id, limit } => {
                let (card, delta) = (*card_id, limit.minor);
                Resolved::card(Action::CreditLimit { card, delta }, card)
            }
            Body::CreditLimit { .. } => self.limit_changed(ev, currency)?,
        })
    }

    /// An approved authorization: holds the amount unless its settlement came first.
    fn authorized(
        &mut self,
        ev: &LedgerEvent,
        currency: Currency,
    ) -> Result<Resolved, InvalidEvent> {
        let Body::PurchaseAuthorized {
            card_id,
            authorization_id,
            network_reference,
            amount,
        } = &ev.body
        else {
            unreachable!("resolve dispatches by kind");
        };
        let customer = ev.customer_id;
        let card = self.card(customer, &by_id(*card_id), currency)?.card_id;
        let current = self.purchase(customer, Some(card), network_reference);
        let a = rulebook::authorize(
            current.as_ref().map(|(_, p)| p),
            *authorization_id,
            amount.minor,
        );
        let at = (a.purchase.authorization_id == Some(*authorization_id)).then_some(ev.occurred_at);
        self.save_purchase(network_reference, customer, card, &a.purchase, at);
        Ok(Resolved {
            action: Action::PurchaseAuthorized {
                card,
                amount: amount.minor,
                post: a.post,
                release: a.release,
            },
            card: Some(card),
            authorization: Some(*authorization_id),
        })
    }

    /// The purchase a settlement or a release names by reference: on the
    /// card it names, else the customer's only purchase with that reference,
    /// whose card then wins (the reference names the card; trust it over a
    /// missing or other card reference).
    fn referenced(
        &self,
        customer: CustomerId,
        named: CardRow,
        network_reference: &str,
        currency: Currency,
    ) -> Result<(CardRow, Option<Purchase>), InvalidEvent> {
        let current = self
            .purchase(customer, Some(named.card_id), network_reference)
            .or_else(|| self.purchase(customer, None, network_reference));
        match current {
            Some((card_id, p)) if card_id != named.card_id => {
                Ok((self.card(customer, &by_id(card_id), currency)?, Some(p)))
            }
            other => Ok((named, other.map(|(_, p)| p))),
        }
    }

    /// A settlement: books the purchase and releases the hold it replaces.
    fn settled(&mut self, ev: &LedgerEvent, currency: Currency) -> Result<Resolved, InvalidEvent> {
        let Body::PurchaseSettled {
            card: r,
            network_reference,
            amount,
        } = &ev.body
        else {
            unreachable!("resolve dispatches by kind");
        };
        let customer = ev.customer_id;
        let mut c = self.card(customer, r, currency)?;
        let (mut release, mut authorization) = (0, None);
        if let Some(nr) = network_reference {
            let current;
            (c, current) = self.referenced(customer, c, nr, currency)?;
            let (rel, next) = rulebook::settle(current.as_ref(), amount.minor);
            (release, authorization) = (rel, next.authorization_id);
            self.save_purchase(nr, customer, c.card_id, &next, None);
        }
        let card = c.card_id;
        Ok(Resolved {
            action: Action::PurchaseSettled {
                card,
                amount: amount.minor,
                release,
            },
            card: Some(card),
            authorization,
        })
    }

    /// A reversal or an expiry: releases what the purchase still holds.
    fn hold_released(
        &mut self,
        ev: &LedgerEvent,
        currency: Currency,
    ) -> Result<Resolved, InvalidEvent> {
        let Body::HoldReleased {
            card: r,
            network_reference,
            ..
        } = &ev.body
        else {
            unreachable!("resolve dispatches by kind");
        };
        let customer = ev.customer_id;
        let c = self.card(customer, r, currency)?;
        let (c, current) = self.referenced(customer, c, network_reference, currency)?;
        let (amount, next) = rulebook::release(current.as_ref());
        self.save_purchase(network_reference, customer, c.card_id, &next, None);
        let card = c.card_id;
        Ok(Resolved {
            action: Action::HoldReleased { card, amount },
            card: Some(card),
            authorization: next.authorization_id,
        })
    }

    /// A new absolute limit: moves the available limit by the change from the
    /// limit in force (nothing when an older change arrives late).
    fn limit_changed(
        &mut self,
        ev: &LedgerEvent,
        currency: Currency,
    ) -> Result<Resolved, InvalidEvent> {
        let Body::CreditLimit { card: r, limit } = &ev.body else {
            unreachable!("resolve dispatches by kind");
        };
        let c = self.card(ev.customer_id, r, currency)?;
        let current = LimitInForce {
            limit: c.credit_limit,
            set_at: c.limit_set_at,
            event_id: c.limit_event.clone(),
        };
        let asked = LimitInForce {
            limit: limit.minor,
            set_at: ev.occurred_at,
            event_id: ev.event_id.clone(),
        };
        let (delta, next) = rulebook::change_limit(&current, asked);
        if next != current {
            self.set_limit(ev.customer_id, c.card_id, &next);
        }
        let card = c.card_id;
        Ok(Resolved::card(Action::CreditLimit { card, delta }, card))
    }

    fn set_limit(&mut self, customer: CustomerId, card_id: Uuid, next: &LimitInForce) {
        if let Some(c) = self
            .held
            .cards
            .get_mut(&customer)
            .and_then(|cs| cs.iter_mut().find(|c| c.card_id == card_id))
        {
            c.credit_limit = next.limit;
            c.limit_set_at = next.set_at;
            c.limit_event = next.event_id.clone();
        }
        self.changes.limits.insert(card_id, next.clone());
    }
}
