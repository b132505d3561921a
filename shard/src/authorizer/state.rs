//! The authorizer's in-memory state, without I/O: each card's open-to-buy
//! (the ledger's available limit minus authorizations the ledger has not booked
//! yet), customer epochs, decisions by network reference, and the log offsets
//! the state includes. Built only from the cell's log, so replicas converge.
//!
//! Memory is bounded by time, not by traffic alone: decisions are kept for
//! repeats of a network reference for a window ([`DEFAULT_DEDUPE_WINDOW`]) after
//! the newest decision, and so are the ids of booked authorizations.

use std::collections::{BTreeMap, HashMap};

use cellbank_shared::contract::{AuthorizationDecision, AuthorizationRequest, Decision};
use cellbank_shared::ids::CustomerId;
use cellbank_shared::money::Currency;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ledger::facts::{Fact, FactRecord};
use crate::placement::CustomerState;

/// A decision as the authorizer logs it on Topic::Authorizations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRecord {
    pub authorization_id: Uuid,
    pub network_reference: String,
    pub customer_id: CustomerId,
    pub epoch: cellbank_shared::ids::Epoch,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_id: Option<Uuid>,
    pub amount: i64,
    pub currency: Currency,
    pub decision: Decision,
    pub reason: String,
    pub decided_at: DateTime<Utc>,
    /// The card's PAN hash as the request named it (a keyed hash, never the
    /// PAN): with the reference, what a repeat is recognised by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pan_hash: Option<String>,
    /// Carried over from another cell by a move: kept so a repeat of the
    /// network reference gets its first answer; it holds nothing here and
    /// the ledger books nothing for it (the move copied the booking).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub carried: bool,
}

/// A network reference is scoped by card: the key of a decision.
pub fn reference_key(pan_hash: &str, network_reference: &str) -> String {
    format!("{pan_hash}/{network_reference}")
}

impl AuthorizationRecord {
    pub fn reference_key(&self) -> String {
        reference_key(
            self.pan_hash.as_deref().unwrap_or_default(),
            &self.network_reference,
        )
    }

    /// Whether `req` asks for what this decision decided (a true repeat).
    pub fn same_request(&self, req: &AuthorizationRequest) -> bool {
        self.customer_id == req.customer_id
            && self.amount == req.amount
            && self.currency == req.currency
    }

    pub fn answer(&self) -> AuthorizationDecision {
        AuthorizationDecision {
            decision: self.decision,
            reason: self.reason.clone(),
            authorization_id: self.authorization_id,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardState {
    pub card_id: Uuid,
    pub customer_id: CustomerId,
    pub currency: Currency,
    pub blocked: bool,
    pub credit_limit: i64,
    /// The ledger's available limit as of fact `fact_seq`.
    pub available: i64,
    pub fact_seq: i64,
    /// Approved authorizations the ledger has not booked yet.
    pub pending: Pending,
    /// Authorizations the ledger has booked (within the dedupe window).
    /// Persistent collections here and in [`Pending`] and [`Decisions`]: a
    /// snapshot clones the state under the lock in O(cards), not O(traffic).
    pub booked: imbl::OrdSet<Uuid>,
}

impl CardState {
    pub fn open_to_buy(&self) -> i64 {
        self.available - self.pending.total()
    }
}

/// Approved, not yet booked authorizations of one card, with their running
/// total: a decision reads the total in O(1) however far the ledger lags.
/// Snapshots store only the amounts by id; the total is rebuilt on load.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "imbl::OrdMap<Uuid, i64>", into = "imbl::OrdMap<Uuid, i64>")]
pub struct Pending {
    by_id: imbl::OrdMap<Uuid, i64>,
    total: i64,
}

impl From<imbl::OrdMap<Uuid, i64>> for Pending {
    fn from(by_id: imbl::OrdMap<Uuid, i64>) -> Self {
        let total = by_id.values().sum();
        Self { by_id, total }
    }
}

impl From<Pending> for imbl::OrdMap<Uuid, i64> {
    fn from(p: Pending) -> Self {
        p.by_id
    }
}

impl Pending {
    pub fn insert(&mut self, id: Uuid, amount: i64) {
        if let Some(old) = self.by_id.insert(id, amount) {
            self.total -= old;
        }
        self.total += amount;
    }

    pub fn remove(&mut self, id: &Uuid) {
        if let Some(old) = self.by_id.remove(id) {
            self.total -= old;
        }
    }

    pub fn total(&self) -> i64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Drops the holds decided before `first_kept` (ids are UUIDv7, ordered
    /// by decision time): they expired unsettled.
    pub fn expire_before(&mut self, first_kept: Uuid) {
        if self.by_id.get_min().is_some_and(|(id, _)| *id < first_kept) {
            let kept = std::mem::take(&mut self.by_id).split(&first_kept).1;
            *self = Pending::from(kept);
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizerState {
    /// By PAN hash.
    pub cards: HashMap<String, CardState>,
    pub epochs: HashMap<CustomerId, i64>,
    /// Customers fenced or moved out: nothing is approved for them here.
    #[serde(default)]
    pub not_here: std::collections::HashSet<CustomerId>,
    /// Customers a move's cutover fenced, told to the deciding replica
    /// directly (by epoch) so it stops approving at once, before the fence's
    /// fact reaches it through the log. Not snapshotted: a replica that takes
    /// the lease over learns the fence from the log.
    #[serde(skip)]
    pub moving: HashMap<CustomerId, i64>,
    /// First decision per network reference, within the dedupe window.
    pub decisions: Decisions,
    /// PAN hash by card id.
    pub hashes: HashMap<Uuid, String>,
    /// Approved decisions read before their card's first fact: (card, amount).
    pub unmatched: BTreeMap<Uuid, (Uuid, i64)>,
    /// Next offset to read per `topic/partition`: what the state includes.
    pub offsets: BTreeMap<String, i64>,
    /// A fingerprint of the last record read per `topic/partition` (at offset
    /// `offsets[k] - 1`): what identifies the log this state was built from.
    #[serde(default)]
    pub fingerprints: BTreeMap<String, u64>,
    /// How long an unsettled approval holds the limit (from settings;
    /// `None` never expires one). Not part of a snapshot or of equality.
    #[serde(skip)]
    pub hold_expiry: Option<chrono::TimeDelta>,
}

/// How long a network reference is remembered after the newest decision:
/// networks repeat a request within seconds or minutes, never hours.
pub const DEFAULT_DEDUPE_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Decisions by network reference, oldest first in `order`, pruned once they
/// fall out of the window behind the newest decision. Snapshots store only
/// the map; `order` is rebuilt on load and ignored by equality.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(
    from = "imbl::HashMap<String, AuthorizationRecord>",
    into = "imbl::HashMap<String, AuthorizationRecord>"
)]
pub struct Decisions {
    by_reference: imbl::HashMap<String, AuthorizationRecord>,
    order: imbl::Vector<(DateTime<Utc>, String)>,
    newest: Option<DateTime<Utc>>,
    window: chrono::TimeDelta,
}

impl Default for Decisions {
    fn default() -> Self {
        imbl::HashMap::new().into()
    }
}

impl PartialEq for Decisions {
    fn eq(&self, other: &Self) -> bool {
        self.by_reference == other.by_reference
    }
}
impl Eq for Decisions {}

impl From<imbl::HashMap<String, AuthorizationRecord>> for Decisions {
    fn from(by_reference: imbl::HashMap<String, AuthorizationRecord>) -> Self {
        let mut order: Vec<(DateTime<Utc>, String)> = by_reference
            .iter()
            .map(|(k, r)| (r.decided_at, k.clone()))
            .collect();
        order.sort();
        Self {
            newest: order.last().map(|(t, _)| *t),
            order: order.into_iter().collect(),
            by_reference,
            window: DEFAULT_DEDUPE_WINDOW,
        }
    }
}

impl From<Decisions> for imbl::HashMap<String, AuthorizationRecord> {
    fn from(d: Decisions) -> Self {
        d.by_reference
    }
}

impl Decisions {
    /// The decision for a card's reference (see [`reference_key`]).
    pub fn get(&self, key: &str) -> Option<&AuthorizationRecord> {
        self.by_reference.get(key)
    }

    pub fn len(&self) -> usize {
        self.by_reference.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_reference.is_empty()
    }

    pub fn set_window(&mut self, window: chrono::TimeDelta) {
        self.window = window;
    }

    /// Decisions before this instant are forgotten (and booked ids with them).
    pub fn cutoff(&self) -> Option<DateTime<Utc>> {
        self.newest.map(|n| n - self.window)
    }

    /// Keeps the first decision of a reference, then forgets what fell out
    /// of the window.
    fn of_customer(&self, customer: CustomerId) -> Vec<AuthorizationRecord> {
        self.by_reference
            .values()
            .filter(|r| r.customer_id == customer)
            .cloned()
            .collect()
    }

    fn insert_first(&mut self, rec: &AuthorizationRecord) {
        let key = rec.reference_key();
        if self.by_reference.contains_key(&key) {
            return;
        }
        self.by_reference.insert(key.clone(), rec.clone());
        self.order.push_back((rec.decided_at, key));
        if self.newest.is_none_or(|n| rec.decided_at > n) {
            self.newest = Some(rec.decided_at);
        }
        let Some(cutoff) = self.cutoff() else { return };
        while let Some((at, _)) = self.order.front() {
            if *at >= cutoff {
                break;
            }
            if let Some((at, reference)) = self.order.pop_front() {
                if self
                    .by_reference
                    .get(&reference)
                    .is_some_and(|r| r.decided_at == at)
                {
                    self.by_reference.remove(&reference);
                }
            }
        }
    }

    fn remove(&mut self, key: &str) {
        self.by_reference.remove(key);
    }
}

/// The smallest UUIDv7 of an instant (all random bits zero).
/// Ids are UUIDv7, ordered by time: what is older than the dedupe window
/// goes in one split.
fn forget_booked_before(booked: &mut imbl::OrdSet<Uuid>, first_kept: Option<Uuid>) {
    if let Some(first_kept) = first_kept {
        if booked.get_min().is_some_and(|f| *f < first_kept) {
            *booked = std::mem::take(booked).split(&first_kept).1;
        }
    }
}

fn uuid_v7_floor(at: DateTime<Utc>) -> Option<Uuid> {
    let ms = u64::try_from(at.timestamp_millis()).ok()?;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    bytes[8] = 0x80;
    Some(Uuid::from_bytes(bytes))
}

/// A stable fingerprint (FNV-1a, 64 bits) of a record's key and payload.
pub fn fingerprint(key: &[u8], payload: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.iter().chain([0xffu8].iter()).chain(payload) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

pub fn offset_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

impl AuthorizerState {
    /// Decides a request. `None` record means a repeated network reference:
    /// the first decision is answered again and nothing new is logged.
    pub fn decide(
        &mut self,
        req: &AuthorizationRequest,
        now: DateTime<Utc>,
    ) -> (AuthorizationDecision, Option<AuthorizationRecord>) {
        let key = reference_key(&req.pan_hash, &req.network_reference);
        if let Some(first) = self.decisions.get(&key) {
            if first.same_request(req) {
                return (first.answer(), None);
            }
            // The card's reference was used for another purchase: refused,
            // nothing held, nothing logged.
            return (
                AuthorizationDecision {
                    decision: Decision::Declined,
                    reason: "reference_reused".into(),
                    authorization_id: Uuid::nil(),
                },
                None,
            );
        }
        self.expire_holds(&req.pan_hash, now);
        let card = self
            .cards
            .get(&req.pan_hash)
            .filter(|c| c.customer_id == req.customer_id);
        let reason = self.reason(req, card);
        let approved = reason == "approved";
        let rec = AuthorizationRecord {
            // UUIDv7 of the decision time: booked ids sort by it (pruning).
            authorization_id: Uuid::new_v7(uuid::Timestamp::from_unix(
                uuid::NoContext,
                u64::try_from(now.timestamp()).unwrap_or(0),
                now.timestamp_subsec_nanos(),
            )),
            network_reference: req.network_reference.clone(),
            customer_id: req.customer_id,
            epoch: req.epoch,
            card_id: card.map(|c| c.card_id),
            amount: req.amount,
            currency: req.currency,
            decision: if approved {
                Decision::Approved
            } else {
                Decision::Declined
            },
            reason: reason.to_owned(),
            decided_at: now,
            pan_hash: Some(req.pan_hash.clone()),
            carried: false,
        };
        self.record(&rec, &req.pan_hash);
        (rec.answer(), Some(rec))
    }

    /// Takes a decision back (its publication failed).
    pub fn forget(&mut self, rec: &AuthorizationRecord, pan_hash: &str) {
        self.decisions.remove(&rec.reference_key());
        if let Some(c) = self.cards.get_mut(pan_hash) {
            c.pending.remove(&rec.authorization_id);
        }
    }

    fn record(&mut self, rec: &AuthorizationRecord, pan_hash: &str) {
        self.decisions.insert_first(rec);
        if rec.decision == Decision::Approved {
            if let Some(c) = self.cards.get_mut(pan_hash) {
                if !c.booked.contains(&rec.authorization_id) {
                    c.pending.insert(rec.authorization_id, rec.amount);
                }
            }
        }
    }

    /// Whether a log position is already included; marks it included otherwise.
    /// Why a request is approved or declined, for its card (if known).
    fn reason(&self, req: &AuthorizationRequest, card: Option<&CardState>) -> &'static str {
        match card {
            _ if self
                .epochs
                .get(&req.customer_id)
                .is_some_and(|e| *e > req.epoch.0) =>
            {
                "stale_epoch"
            }
            None => "unknown_card",
            _ if self.not_here.contains(&req.customer_id)
                || self.moving.contains_key(&req.customer_id) =>
            {
                "customer_not_here"
            }
            Some(c) if c.blocked => "card_blocked",
            Some(c) if c.currency != req.currency => "currency_mismatch",
            Some(c) if c.open_to_buy() < req.amount => "insufficient_limit",
            Some(_) => "approved",
        }
    }

    /// Drops the card's approvals that held its limit longer than the hold
    /// expiry, at business time `now` (a decision's time: replicas that
    /// apply the same log drop the same holds).
    fn expire_holds(&mut self, pan_hash: &str, now: DateTime<Utc>) {
        let Some(expiry) = self.hold_expiry else {
            return;
        };
        let Some(first_kept) = uuid_v7_floor(now - expiry) else {
            return;
        };
        if let Some(c) = self.cards.get_mut(pan_hash) {
            c.pending.expire_before(first_kept);
        }
    }

    /// Notes the fingerprint of the record at `offset`, if it is the last one
    /// the state includes.
    pub fn note_fingerprint(&mut self, topic: &str, partition: i32, offset: i64, fingerprint: u64) {
        let k = offset_key(topic, partition);
        if self.offsets.get(&k) == Some(&(offset + 1)) {
            self.fingerprints.insert(k, fingerprint);
        }
    }

    /// Moves past a record that changes nothing (a lease marker).
    pub fn skip(&mut self, topic: &str, partition: i32, offset: i64) {
        self.advance(topic, partition, offset);
    }

    /// Whether the state includes the record at `offset` of the partition.
    pub fn includes(&self, topic: &str, partition: i32, offset: i64) -> bool {
        self.offsets
            .get(&offset_key(topic, partition))
            .is_some_and(|next| *next > offset)
    }

    fn advance(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        let next = self
            .offsets
            .entry(offset_key(topic, partition))
            .or_insert(0);
        if offset < *next {
            return false;
        }
        *next = offset + 1;
        true
    }

    /// Applies a decision read from the log (its own or another replica's).
    pub fn apply_decision(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        rec: &AuthorizationRecord,
    ) {
        if !self.advance(topic, partition, offset) {
            return;
        }
        if rec.carried {
            self.decisions.insert_first(rec);
            return;
        }
        let pan_hash = rec.card_id.and_then(|c| self.hashes.get(&c)).cloned();
        // Decisions logged before records named their card's hash.
        let filled;
        let rec = match (&rec.pan_hash, &pan_hash) {
            (None, Some(h)) => {
                filled = AuthorizationRecord {
                    pan_hash: Some(h.clone()),
                    ..rec.clone()
                };
                &filled
            }
            _ => rec,
        };
        if let Some(h) = &pan_hash {
            self.expire_holds(h, rec.decided_at);
        }
        match (pan_hash, rec.card_id) {
            (Some(h), _) => self.record(rec, &h),
            (None, card) => {
                self.decisions.insert_first(rec);
                if let (Some(card), Decision::Approved) = (card, rec.decision) {
                    self.unmatched
                        .insert(rec.authorization_id, (card, rec.amount));
                }
            }
        }
    }

    /// Applies a ledger fact read from the log.
    pub fn apply_fact(&mut self, topic: &str, partition: i32, offset: i64, rec: &FactRecord) {
        if !self.advance(topic, partition, offset) {
            return;
        }
        match &rec.fact {
            Fact::Customer {
                customer_id,
                epoch,
                state,
            } => {
                if self.moving.get(customer_id).is_some_and(|m| epoch.0 > *m) {
                    self.moving.remove(customer_id);
                }
                let e = self.epochs.entry(*customer_id).or_insert(epoch.0);
                if epoch.0 >= *e {
                    *e = epoch.0;
                    let state = state.unwrap_or(CustomerState::Active);
                    if state == CustomerState::Active {
                        self.not_here.remove(customer_id);
                    } else {
                        self.not_here.insert(*customer_id);
                    }
                }
            }
            Fact::Card { .. } => self.apply_card_fact(rec.seq, &rec.fact),
        }
    }

    /// A card's state after a ledger movement: the card is known from now on
    /// (with any decisions that arrived before it), the authorization the
    /// movement booked leaves the pending holds, and a newer fact replaces
    /// the card's limit, availability and block.
    fn apply_card_fact(&mut self, seq: i64, fact: &Fact) {
        let Fact::Card {
            customer_id,
            card_id,
            pan_hash,
            currency,
            credit_limit,
            blocked,
            available,
            authorization_id,
        } = fact
        else {
            return;
        };
        if !self.hashes.contains_key(card_id) {
            self.hashes.insert(*card_id, pan_hash.clone());
        }
        let unmatched: Vec<(Uuid, i64)> = self
            .unmatched
            .iter()
            .filter(|(_, (c, _))| c == card_id)
            .map(|(a, (_, amount))| (*a, *amount))
            .collect();
        let cutoff = self.decisions.cutoff().and_then(uuid_v7_floor);
        let c = self
            .cards
            .entry(pan_hash.clone())
            .or_insert_with(|| CardState {
                card_id: *card_id,
                customer_id: *customer_id,
                currency: *currency,
                blocked: *blocked,
                credit_limit: *credit_limit,
                available: 0,
                fact_seq: 0,
                pending: Pending::default(),
                booked: imbl::OrdSet::new(),
            });
        for (auth, amount) in unmatched {
            self.unmatched.remove(&auth);
            if !c.booked.contains(&auth) {
                c.pending.insert(auth, amount);
            }
        }
        if let Some(id) = authorization_id {
            c.pending.remove(id);
            c.booked.insert(*id);
            forget_booked_before(&mut c.booked, cutoff);
        }
        if seq > c.fact_seq {
            c.fact_seq = seq;
            c.available = *available;
            c.blocked = *blocked;
            c.credit_limit = *credit_limit;
        }
    }

    pub fn card(&self, pan_hash: &str) -> Option<&CardState> {
        self.cards.get(pan_hash)
    }

    /// The customer's decisions within the dedupe window (a move carries
    /// them to the customer's new cell).
    pub fn decisions_of(&self, customer: CustomerId) -> Vec<AuthorizationRecord> {
        self.decisions.of_customer(customer)
    }

    /// A move's cutover fenced the customer at `epoch` (`true`), or released
    /// that fence (`false`): told directly, ahead of the fact.
    pub fn fence_for_move(&mut self, customer: CustomerId, epoch: i64, fenced: bool) {
        if fenced {
            self.moving.insert(customer, epoch);
        } else {
            self.moving.remove(&customer);
        }
    }

    /// A move activated the customer here at `epoch`: told directly, ahead
    /// of the fact (an older fact arriving later changes nothing).
    pub fn activate(&mut self, customer: CustomerId, epoch: i64) {
        let e = self.epochs.entry(customer).or_insert(epoch);
        if epoch >= *e {
            *e = epoch;
            self.not_here.remove(&customer);
            self.moving.remove(&customer);
        }
    }

    /// Keeps decisions another cell made, as carried (no hold).
    pub fn carry(&mut self, recs: &[AuthorizationRecord]) {
        for r in recs {
            self.decisions.insert_first(&AuthorizationRecord {
                carried: true,
                ..r.clone()
            });
        }
    }

    /// Where the customer stands with this authorizer: whether it approves
    /// nothing more for them, and their approvals the ledger has not booked.
    pub fn customer_status(&self, customer: CustomerId) -> CustomerStatus {
        let mut pending_holds = 0;
        for c in self.cards.values().filter(|c| c.customer_id == customer) {
            pending_holds += c.pending.len();
        }
        pending_holds += self
            .unmatched
            .values()
            .filter(|(card, _)| {
                self.cards
                    .values()
                    .any(|c| c.card_id == *card && c.customer_id == customer)
            })
            .count();
        CustomerStatus {
            not_here: self.not_here.contains(&customer) || self.moving.contains_key(&customer),
            epoch: self.epochs.get(&customer).copied(),
            pending_holds,
        }
    }
}

/// What [`AuthorizerState::customer_status`] answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerStatus {
    pub not_here: bool,
    pub epoch: Option<i64>,
    pub pending_holds: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbank_shared::contract::Merchant;
    use cellbank_shared::ids::Epoch;

    #[test]
    fn pending_keeps_its_total_through_repeats_removals_and_snapshots() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut p = Pending::default();
        p.insert(a, 300);
        p.insert(a, 300); // a replayed decision is not counted twice
        p.insert(b, 50);
        assert_eq!((p.total(), p.len()), (350, 2));
        p.remove(&a);
        p.remove(&a);
        assert_eq!(p.total(), 50);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            format!("{{\"{b}\":50}}"),
            "snapshots keep the old shape"
        );
        let back: Pending = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }

    fn card_fact(
        customer: CustomerId,
        card: Uuid,
        available: i64,
        seq: i64,
        auth: Option<Uuid>,
    ) -> FactRecord {
        FactRecord {
            seq,
            fact: Fact::Card {
                customer_id: customer,
                card_id: card,
                pan_hash: "h1".into(),
                currency: Currency::Brl,
                credit_limit: 1000,
                blocked: false,
                available,
                authorization_id: auth,
            },
        }
    }

    fn req(customer: CustomerId, amount: i64, nr: &str) -> AuthorizationRequest {
        AuthorizationRequest {
            customer_id: customer,
            epoch: Epoch(1),
            pan_hash: "h1".into(),
            amount,
            currency: Currency::Brl,
            merchant: Merchant {
                name: "m".into(),
                mcc: "5411".into(),
                country: "BR".into(),
            },
            network_reference: nr.into(),
        }
    }

    #[test]
    fn decisions_and_booked_ids_are_forgotten_after_the_window_also_after_a_snapshot() {
        let cust = CustomerId::new();
        let card = Uuid::new_v4();
        let t0 = Utc::now();
        let mut s = AuthorizerState::default();
        s.apply_fact("f", 0, 0, &card_fact(cust, card, 1000, 1, None));
        let (first, rec) = s.decide(&req(cust, 100, "n1"), t0);
        let id = rec.unwrap().authorization_id;
        s.apply_fact("f", 0, 1, &card_fact(cust, card, 900, 2, Some(id)));
        assert!(s.card("h1").unwrap().booked.contains(&id));
        s.decide(&req(cust, 1, "n2"), t0 + chrono::TimeDelta::minutes(5));
        // a repeat within the window gets the first answer again
        assert_eq!(s.decide(&req(cust, 100, "n1"), t0).0, first);

        // a snapshot keeps the window's memory (order rebuilt on load)
        let json = serde_json::to_string(&s).unwrap();
        let mut s: AuthorizerState = serde_json::from_str(&json).unwrap();
        assert_eq!(s.decisions.len(), 2);

        let later = t0 + DEFAULT_DEDUPE_WINDOW + chrono::TimeDelta::minutes(1);
        s.decide(&req(cust, 1, "n3"), later);
        assert!(
            s.decisions.get("h1/n1").is_none(),
            "n1 fell out of the window"
        );
        assert!(s.decisions.get("h1/n2").is_some(), "n2 is still inside it");
        let (again, rec) = s.decide(&req(cust, 1, "n1"), later);
        assert!(
            rec.is_some(),
            "a reference older than the window is decided anew"
        );
        assert_ne!(again.authorization_id, first.authorization_id);
        // booking a newer authorization drops the booked ids behind the window
        let newer = rec.unwrap().authorization_id;
        s.apply_fact("f", 0, 2, &card_fact(cust, card, 899, 3, Some(newer)));
        let booked = &s.card("h1").unwrap().booked;
        assert!(
            !booked.contains(&id) && booked.contains(&newer),
            "{booked:?}"
        );
    }

    #[test]
    fn open_to_buy_counts_pending_until_booked() {
        let cust = CustomerId::new();
        let card = Uuid::new_v4();
        let mut s = AuthorizerState::default();
        s.apply_fact("f", 0, 0, &card_fact(cust, card, 1000, 1, None));
        let (d, rec) = s.decide(&req(cust, 600, "n1"), Utc::now());
        assert_eq!(d.decision, Decision::Approved);
        let (d2, _) = s.decide(&req(cust, 600, "n2"), Utc::now());
        assert_eq!(d2.reason, "insufficient_limit");
        let (again, none) = s.decide(&req(cust, 600, "n1"), Utc::now());
        assert_eq!((again, none), (d.clone(), None));
        // the same reference for another amount is refused, holding nothing
        let (reused, none) = s.decide(&req(cust, 1, "n1"), Utc::now());
        assert_eq!((reused.reason.as_str(), none), ("reference_reused", None));
        assert_eq!(s.card("h1").unwrap().open_to_buy(), 400);
        // the ledger books it: available drops, pending goes
        let rec = rec.unwrap();
        s.apply_fact(
            "f",
            0,
            1,
            &card_fact(cust, card, 400, 2, Some(rec.authorization_id)),
        );
        assert_eq!(s.card("h1").unwrap().open_to_buy(), 400);
        // the decision read back from the log later changes nothing
        s.apply_decision("a", 0, 0, &rec);
        assert_eq!(s.card("h1").unwrap().open_to_buy(), 400);
        let (d3, _) = s.decide(&req(CustomerId::new(), 1, "n3"), Utc::now());
        assert_eq!(d3.reason, "unknown_card");
    }
}
