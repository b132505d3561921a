//! Property tests of the pure ledger: random business events, late and
//! duplicated, keep every invariant after each one, and the arrival order does
//! not change the final balances. The balances are checked against a model
//! computed from the events alone (what each account, bill, hold and
//! available limit must be), not against sums of the same legs.

use cellbank_shard::ledger::memory::{MemEvent, MemoryLedger};
use cellbank_shard::ledger::rulebook::{self, Book};
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use uuid::Uuid;

#[derive(Clone, Debug)]
enum Op {
    Credit(usize, i64),
    Debit(usize, i64),
    Transfer(usize, i64),
    /// An authorization of reference n (which belongs to card n % 2).
    Auth(usize, i64),
    Settle(usize, Option<usize>, i64),
    /// The network reverses reference n (of card n % 2).
    Reverse(usize),
    Refund(usize, i64),
    Pay(usize, i64),
    Fee(usize, i64),
    Limit(usize, i64),
}

fn op() -> impl Strategy<Value = Op> {
    let amt = 1i64..100_000;
    prop_oneof![
        (0..2usize, amt.clone()).prop_map(|(a, m)| Op::Credit(a, m)),
        (0..2usize, amt.clone()).prop_map(|(a, m)| Op::Debit(a, m)),
        (0..2usize, amt.clone()).prop_map(|(a, m)| Op::Transfer(a, m)),
        (0..6usize, amt.clone()).prop_map(|(n, m)| Op::Auth(n, m)),
        (0..2usize, proptest::option::of(0..6usize), amt.clone())
            .prop_map(|(c, n, m)| Op::Settle(c, n, m)),
        (0..6usize).prop_map(Op::Reverse),
        (0..2usize, amt.clone()).prop_map(|(c, m)| Op::Refund(c, m)),
        (0..2usize, amt.clone()).prop_map(|(c, m)| Op::Pay(c, m)),
        (0..2usize, 1i64..5_000).prop_map(|(c, m)| Op::Fee(c, m)),
        (0..2usize, amt).prop_map(|(c, m)| Op::Limit(c, m)),
    ]
}

struct World {
    accounts: [Uuid; 2],
    cards: [Uuid; 2],
    start: DateTime<Utc>,
}

impl World {
    fn new() -> Self {
        Self {
            accounts: [Uuid::from_u128(1), Uuid::from_u128(2)],
            cards: [Uuid::from_u128(11), Uuid::from_u128(12)],
            start: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        }
    }

    fn ledger(&self) -> MemoryLedger {
        let mut l = MemoryLedger::new();
        for c in self.cards {
            l.issue_card(c, 50_000, self.start);
        }
        l
    }

    fn event(&self, i: usize, op: &Op) -> MemEvent {
        let nr = |n: usize| format!("nr-{n}");
        match *op {
            Op::Credit(a, amount) => MemEvent::Credit {
                account: self.accounts[a],
                amount,
            },
            Op::Debit(a, amount) => MemEvent::Debit {
                account: self.accounts[a],
                amount,
            },
            Op::Transfer(a, amount) => MemEvent::OwnTransfer {
                from: self.accounts[a],
                to: self.accounts[1 - a],
                amount,
            },
            // a network reference belongs to one card
            Op::Auth(n, amount) => MemEvent::Authorized {
                card: self.cards[n % 2],
                authorization_id: Uuid::from_u128(1000 + i as u128),
                network_reference: nr(n),
                amount,
            },
            Op::Settle(c, n, amount) => MemEvent::Settled {
                card: self.cards[n.map_or(c, |n| n % 2)],
                network_reference: n.map(nr),
                amount,
            },
            Op::Reverse(n) => MemEvent::Released {
                card: self.cards[n % 2],
                network_reference: nr(n),
            },
            Op::Refund(c, amount) => MemEvent::Refund {
                card: self.cards[c],
                amount,
            },
            Op::Pay(c, amount) => MemEvent::BillPayment {
                card: self.cards[c],
                amount,
            },
            Op::Fee(c, amount) => MemEvent::LateFee {
                card: self.cards[c],
                amount,
            },
            Op::Limit(c, limit) => MemEvent::LimitChanged {
                card: self.cards[c],
                limit,
            },
        }
    }
}

/// Events with business times (minutes after start, any order), an arrival
/// order that is a shuffle of them, and extra redeliveries.
/// (events with business minutes, arrival order A, arrival order B, redeliveries).
type Scenario = (Vec<(Op, i64)>, Vec<usize>, Vec<usize>, Vec<(usize, usize)>);

fn scenario() -> impl Strategy<Value = Scenario> {
    prop::collection::vec((op(), 1i64..20_000), 1..50).prop_flat_map(|events| {
        let n = events.len();
        let idx: Vec<usize> = (0..n).collect();
        (
            Just(events),
            Just(idx.clone()).prop_shuffle(),
            Just(idx).prop_shuffle(),
            prop::collection::vec((0..n, 0..n + 1), 0..15),
        )
    })
}

/// What the balances must be after the applied events, from the events
/// alone: the rulebook's meaning, stated independently of its entries.
#[derive(Debug, Default)]
struct Model {
    /// What each customer account holds.
    accounts: [i64; 2],
    /// Cash in minus out (deposits, withdrawals, bill payments).
    cash: i64,
    bill: [i64; 2],
    unsettled: [i64; 2],
    limit: [i64; 2],
}

impl Model {
    fn of(w: &World, events: &[(Op, i64)], applied: &std::collections::HashSet<usize>) -> Self {
        let mut m = Model {
            limit: [50_000; 2],
            ..Model::default()
        };
        let mut limit_set: [Option<(i64, String)>; 2] = [None, None];
        // per reference: the earliest-decided authorization, and whether settled
        let mut auths: std::collections::BTreeMap<usize, (u128, i64)> = Default::default();
        let mut settled: std::collections::HashSet<usize> = Default::default();
        let mut released: std::collections::HashSet<usize> = Default::default();
        for &i in applied {
            match events[i].0 {
                Op::Credit(a, x) => (m.accounts[a], m.cash) = (m.accounts[a] + x, m.cash + x),
                Op::Debit(a, x) => (m.accounts[a], m.cash) = (m.accounts[a] - x, m.cash - x),
                Op::Transfer(a, x) => {
                    m.accounts[a] -= x;
                    m.accounts[1 - a] += x;
                }
                Op::Auth(n, x) => {
                    let id = 1000 + i as u128;
                    let e = auths.entry(n).or_insert((id, x));
                    if id < e.0 {
                        *e = (id, x);
                    }
                }
                Op::Settle(c, n, x) => {
                    m.bill[n.map_or(c, |n| n % 2)] += x;
                    settled.extend(n);
                }
                Op::Reverse(n) => {
                    released.insert(n);
                }
                Op::Refund(c, x) => m.bill[c] -= x,
                Op::Pay(c, x) => (m.bill[c], m.cash) = (m.bill[c] - x, m.cash + x),
                Op::Fee(c, x) => m.bill[c] += x,
                Op::Limit(c, x) => {
                    let at = (events[i].1, format!("e-{i}"));
                    if limit_set[c].as_ref().is_none_or(|set| at > *set) {
                        (limit_set[c], m.limit[c]) = (Some(at), x);
                    }
                }
            }
        }
        for (n, (_, amount)) in auths {
            if !settled.contains(&n) && !released.contains(&n) {
                m.unsettled[n % 2] += amount;
            }
        }
        let _ = w;
        m
    }

    /// The ledger's balances against the model; the first difference found.
    fn check(&self, w: &World, l: &MemoryLedger) -> Result<(), String> {
        let b = |book| l.balances.get(&book).copied().unwrap_or(0);
        let mut diffs = Vec::new();
        let mut expect = |what: String, got: i64, want: i64| {
            if got != want {
                diffs.push(format!("{what}: {got}, model {want}"));
            }
        };
        for (k, a) in w.accounts.iter().enumerate() {
            expect(
                format!("account {k}"),
                -b(Book::Account(*a)),
                self.accounts[k],
            );
        }
        expect("cash".into(), b(Book::Cash), self.cash);
        for (k, c) in w.cards.iter().enumerate() {
            expect(format!("bill {k}"), b(Book::CardBill(*c)), self.bill[k]);
            expect(
                format!("unsettled {k}"),
                b(Book::CardUnsettled(*c)),
                self.unsettled[k],
            );
            let available = self.limit[k] - self.unsettled[k] - self.bill[k];
            expect(
                format!("available {k}"),
                b(Book::CardAvailable(*c)),
                available,
            );
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(diffs.join("; "))
        }
    }
}

fn arrival(order: &[usize], dups: &[(usize, usize)]) -> Vec<usize> {
    let mut out = order.to_vec();
    for (which, at) in dups {
        let at = (*at).min(out.len());
        out.insert(at, *which);
    }
    out
}

fn nonzero(m: std::collections::BTreeMap<Book, i64>) -> std::collections::BTreeMap<Book, i64> {
    m.into_iter().filter(|(_, v)| *v != 0).collect()
}

fn run(w: &World, events: &[(Op, i64)], arrival: &[usize], check_each: bool) -> MemoryLedger {
    let mut l = w.ledger();
    let mut seen = std::collections::HashSet::new();
    for &i in arrival {
        let (op, minutes) = &events[i];
        let at = w.start + Duration::minutes(*minutes);
        let applied = l.apply(&format!("e-{i}"), at, &w.event(i, op));
        let first = seen.insert(i);
        if check_each {
            assert_eq!(applied.is_some(), first, "an event is applied exactly once");
            if let Some(entries) = &applied {
                assert_eq!(rulebook::movement_sum(entries), 0, "movement sums to zero");
                assert!(entries.iter().all(|e| e.amount > 0));
            }
            assert_eq!(l.trial_balance(), 0, "trial balance is zero");
            assert_eq!(l.applied(), seen.len() + w.cards.len());
            let model = Model::of(w, events, &seen);
            assert_eq!(model.check(w, &l), Ok(()), "after event {i}");
        }
    }
    l
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn invariants_hold_after_every_event((events, order_a, order_b, dups) in scenario()) {
        let w = World::new();
        let a = run(&w, &events, &arrival(&order_a, &dups), true);
        let b = run(&w, &events, &order_b, true);
        // reordering by arrival does not change the final balances at business time
        let end = w.start + Duration::minutes(20_001);
        prop_assert_eq!(nonzero(a.replayed(Some(end))), nonzero(b.replayed(Some(end))));
        prop_assert_eq!(nonzero(a.balances.clone()), nonzero(b.balances.clone()));
        prop_assert_eq!(a.applied(), b.applied());
        let all: std::collections::HashSet<usize> = (0..events.len()).collect();
        prop_assert_eq!(Model::of(&w, &events, &all).check(&w, &a), Ok(()));
    }
}

#[test]
fn a_late_payment_turns_a_late_bill_into_a_prepaid_one() {
    let w = World::new();
    let card = w.cards[0];
    let mut l = w.ledger();
    let t = |h: i64| w.start + Duration::hours(h);
    l.apply(
        "p1",
        t(1),
        &MemEvent::Settled {
            card,
            network_reference: None,
            amount: 10_000,
        },
    );
    let due = t(100);
    let bill = |l: &MemoryLedger| {
        l.replayed(Some(due))
            .get(&Book::CardBill(card))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(bill(&l), 10_000, "late: owed at the due date");
    // a payment dated before the due date arrives after it
    l.apply(
        "pay",
        t(90),
        &MemEvent::BillPayment {
            card,
            amount: 12_000,
        },
    );
    assert_eq!(
        bill(&l),
        -2_000,
        "prepaid at the due date once the late payment is applied"
    );
    assert_eq!(l.trial_balance(), 0);
}
