//! The authorizer's in-memory state, without I/O: each card's open-to-buy
//! (the ledger's available limit minus authorizations the ledger has not booked
//! yet), customer epochs, decisions by network reference, and the log offsets
//! the state includes. Built only from the cell's log, so replicas converge.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cellbank_shared::contract::{AuthorizationDecision, AuthorizationRequest, Decision};
use cellbank_shared::ids::CustomerId;
use cellbank_shared::money::Currency;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ledger::facts::{Fact, FactRecord};

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
}

impl AuthorizationRecord {
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
    pub pending: BTreeMap<Uuid, i64>,
    /// Authorizations the ledger has booked.
    pub booked: BTreeSet<Uuid>,
}

impl CardState {
    pub fn open_to_buy(&self) -> i64 {
        self.available - self.pending.values().sum::<i64>()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizerState {
    /// By PAN hash.
    pub cards: HashMap<String, CardState>,
    pub epochs: HashMap<CustomerId, i64>,
    /// First decision per network reference.
    pub decisions: HashMap<String, AuthorizationRecord>,
    /// PAN hash by card id.
    pub hashes: HashMap<Uuid, String>,
    /// Approved decisions read before their card's first fact: (card, amount).
    pub unmatched: BTreeMap<Uuid, (Uuid, i64)>,
    /// Next offset to read per `topic/partition`: what the state includes.
    pub offsets: BTreeMap<String, i64>,
}

fn offset_key(topic: &str, partition: i32) -> String {
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
        if let Some(first) = self.decisions.get(&req.network_reference) {
            return (first.answer(), None);
        }
        let card = self
            .cards
            .get(&req.pan_hash)
            .filter(|c| c.customer_id == req.customer_id);
        let reason = match card {
            _ if self
                .epochs
                .get(&req.customer_id)
                .is_some_and(|e| *e > req.epoch.0) =>
            {
                "stale_epoch"
            }
            None => "unknown_card",
            Some(c) if c.blocked => "card_blocked",
            Some(c) if c.currency != req.currency => "currency_mismatch",
            Some(c) if c.open_to_buy() < req.amount => "insufficient_limit",
            Some(_) => "approved",
        };
        let approved = reason == "approved";
        let rec = AuthorizationRecord {
            authorization_id: Uuid::now_v7(),
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
        };
        self.record(&rec, &req.pan_hash);
        (rec.answer(), Some(rec))
    }

    /// Takes a decision back (its publication failed).
    pub fn forget(&mut self, rec: &AuthorizationRecord, pan_hash: &str) {
        self.decisions.remove(&rec.network_reference);
        if let Some(c) = self.cards.get_mut(pan_hash) {
            c.pending.remove(&rec.authorization_id);
        }
    }

    fn record(&mut self, rec: &AuthorizationRecord, pan_hash: &str) {
        self.decisions
            .entry(rec.network_reference.clone())
            .or_insert_with(|| rec.clone());
        if rec.decision == Decision::Approved {
            if let Some(c) = self.cards.get_mut(pan_hash) {
                if !c.booked.contains(&rec.authorization_id) {
                    c.pending.insert(rec.authorization_id, rec.amount);
                }
            }
        }
    }

    /// Whether a log position is already included; marks it included otherwise.
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
        let pan_hash = rec.card_id.and_then(|c| self.hashes.get(&c)).cloned();
        match (pan_hash, rec.card_id) {
            (Some(h), _) => self.record(rec, &h),
            (None, card) => {
                self.decisions
                    .entry(rec.network_reference.clone())
                    .or_insert_with(|| rec.clone());
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
            Fact::Customer { customer_id, epoch } => {
                let e = self.epochs.entry(*customer_id).or_insert(epoch.0);
                *e = (*e).max(epoch.0);
            }
            Fact::Card {
                customer_id,
                card_id,
                pan_hash,
                currency,
                credit_limit,
                blocked,
                available,
                authorization_id,
            } => {
                if !self.hashes.contains_key(card_id) {
                    self.hashes.insert(*card_id, pan_hash.clone());
                }
                let unmatched: Vec<(Uuid, i64)> = self
                    .unmatched
                    .iter()
                    .filter(|(_, (c, _))| c == card_id)
                    .map(|(a, (_, amount))| (*a, *amount))
                    .collect();
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
                        pending: BTreeMap::new(),
                        booked: BTreeSet::new(),
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
                }
                if rec.seq > c.fact_seq {
                    c.fact_seq = rec.seq;
                    c.available = *available;
                    c.blocked = *blocked;
                    c.credit_limit = *credit_limit;
                }
            }
        }
    }

    pub fn card(&self, pan_hash: &str) -> Option<&CardState> {
        self.cards.get(pan_hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbank_shared::contract::Merchant;
    use cellbank_shared::ids::Epoch;

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
    fn open_to_buy_counts_pending_until_booked() {
        let cust = CustomerId::new();
        let card = Uuid::new_v4();
        let mut s = AuthorizerState::default();
        s.apply_fact("f", 0, 0, &card_fact(cust, card, 1000, 1, None));
        let (d, rec) = s.decide(&req(cust, 600, "n1"), Utc::now());
        assert_eq!(d.decision, Decision::Approved);
        let (d2, _) = s.decide(&req(cust, 600, "n2"), Utc::now());
        assert_eq!(d2.reason, "insufficient_limit");
        let (again, none) = s.decide(&req(cust, 1, "n1"), Utc::now());
        assert_eq!((again, none), (d.clone(), None));
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
