//! Property tests of transfers between customers in the pure ledger, over two
//! cells: every transfer leaves the sender as pending, then is either
//! delivered (the recipient's cell receives it, the sender's cell delivers it
//! to the clearing) or returned. Steps of different transfers interleave at
//! random and any step may be redelivered. After every step each cell's books
//! balance; once every transfer has ended, nothing is pending, the clearing
//! nets to zero over the cells, no money was made or lost, and every account
//! holds what a model computed from the transfers alone says.

use cellbank_shard::ledger::memory::{MemEvent, MemoryLedger};
use cellbank_shard::ledger::rulebook::Book;
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use uuid::Uuid;

/// Accounts 0 and 1 live in cell 0, accounts 2 and 3 in cell 1.
const ACCOUNTS: usize = 4;
const OPENING: i64 = 100_000;

fn cell_of(account: usize) -> usize {
    account / 2
}

fn account_id(account: usize) -> Uuid {
    Uuid::from_u128(1 + account as u128)
}

#[derive(Clone, Debug)]
struct Transfer {
    from: usize,
    to: usize,
    amount: i64,
    delivered: bool,
}

fn transfer() -> impl Strategy<Value = Transfer> {
    (0..ACCOUNTS, 0..ACCOUNTS, 1i64..60_000, any::<bool>())
        .prop_filter("to another account", |(f, t, _, _)| f != t)
        .prop_map(|(from, to, amount, delivered)| Transfer {
            from,
            to,
            amount,
            delivered,
        })
}

/// One step of one transfer's saga: (cell, event id, event).
type Step = (usize, String, MemEvent);

/// The steps of transfer `n` in the order its saga takes them: sent, then
/// received and delivered, or returned.
fn steps(n: usize, t: &Transfer) -> Vec<Step> {
    let (src, dst) = (cell_of(t.from), cell_of(t.to));
    let from = account_id(t.from);
    let sent = (
        src,
        format!("t{n}:sent"),
        MemEvent::TransferSent {
            from,
            amount: t.amount,
        },
    );
    if !t.delivered {
        let back = MemEvent::TransferReturned {
            from,
            amount: t.amount,
        };
        return vec![sent, (src, format!("t{n}:returned"), back)];
    }
    let to = account_id(t.to);
    vec![
        sent,
        (
            dst,
            format!("t{n}:received"),
            MemEvent::TransferReceived {
                to,
                amount: t.amount,
            },
        ),
        (
            src,
            format!("t{n}:delivered"),
            MemEvent::TransferDelivered { amount: t.amount },
        ),
    ]
}

/// What an account holds (the ledger keeps liabilities credit-normal).
fn held(cells: &[MemoryLedger; 2], account: usize) -> i64 {
    -cells[cell_of(account)]
        .balances
        .get(&Book::Account(account_id(account)))
        .copied()
        .unwrap_or(0)
}

fn book(cells: &[MemoryLedger; 2], cell: usize, b: Book) -> i64 {
    cells[cell].balances.get(&b).copied().unwrap_or(0)
}

fn open(at: DateTime<Utc>) -> [MemoryLedger; 2] {
    let mut cells = [MemoryLedger::new(), MemoryLedger::new()];
    for a in 0..ACCOUNTS {
        let ev = MemEvent::Credit {
            account: account_id(a),
            amount: OPENING,
        };
        cells[cell_of(a)].apply(&format!("open:{a}"), at, &ev);
    }
    cells
}

/// Runs the sagas with their steps interleaved by `picks` and redelivered by
/// `repeats`; a transfer the sender cannot cover when it is sent is refused
/// (the cell checks the balance in the same transaction). Returns the
/// transfers that were accepted.
fn run(
    cells: &mut [MemoryLedger; 2],
    transfers: &[Transfer],
    picks: &[usize],
    repeats: &[bool],
    at: DateTime<Utc>,
) -> Result<Vec<usize>, TestCaseError> {
    let mut queues: Vec<Vec<Step>> = transfers
        .iter()
        .enumerate()
        .map(|(n, t)| steps(n, t))
        .collect();
    for q in &mut queues {
        q.reverse();
    }
    let mut accepted = Vec::new();
    let mut i = 0;
    while queues.iter().any(|q| !q.is_empty()) {
        let live: Vec<usize> = (0..queues.len())
            .filter(|n| !queues[*n].is_empty())
            .collect();
        let n = live[picks[i % picks.len()] % live.len()];
        let (cell, id, ev) = queues[n].pop().expect("live");
        if let MemEvent::TransferSent { amount, .. } = ev {
            if held(cells, transfers[n].from) < amount {
                queues[n].clear();
                i += 1;
                continue;
            }
            accepted.push(n);
        }
        let first = cells[cell].apply(&id, at, &ev);
        prop_assert!(first.is_some(), "{id} applied for the first time");
        if repeats[i % repeats.len()] {
            prop_assert!(
                cells[cell].apply(&id, at, &ev).is_none(),
                "{id} redelivered is a no-op"
            );
        }
        for c in cells.iter() {
            prop_assert_eq!(c.trial_balance(), 0, "a cell's books balance after {}", id);
        }
        i += 1;
    }
    Ok(accepted)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn money_is_conserved_and_every_transfer_ends_once(
        transfers in proptest::collection::vec(transfer(), 1..40),
        picks in proptest::collection::vec(any::<usize>(), 1..64),
        repeats in proptest::collection::vec(any::<bool>(), 1..16),
    ) {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut cells = open(at);
        let accepted = run(&mut cells, &transfers, &picks, &repeats, at)?;

        let mut expect = [OPENING; ACCOUNTS];
        for n in &accepted {
            let t = &transfers[*n];
            if t.delivered {
                expect[t.from] -= t.amount;
                expect[t.to] += t.amount;
            }
        }
        for (a, want) in expect.iter().enumerate() {
            prop_assert_eq!(held(&cells, a), *want, "account {}", a);
        }
        let total: i64 = (0..ACCOUNTS).map(|a| held(&cells, a)).sum();
        prop_assert_eq!(total, OPENING * ACCOUNTS as i64, "no money made or lost");
        for c in 0..2 {
            prop_assert_eq!(book(&cells, c, Book::TransfersPending), 0, "cell {} has nothing pending", c);
            prop_assert_eq!(cells[c].trial_balance(), 0);
        }
        let clearing = book(&cells, 0, Book::TransferClearing) + book(&cells, 1, Book::TransferClearing);
        prop_assert_eq!(clearing, 0, "the clearing nets to zero over the cells");
    }
}

/// A sent transfer that is neither delivered nor returned stays visible as
/// pending, and the sender no longer holds it: the state a crash between
/// steps leaves, which the saga's resumption must end.
#[test]
fn a_transfer_in_flight_is_pending_and_out_of_the_senders_account() {
    let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let mut cells = open(at);
    let ev = MemEvent::TransferSent {
        from: account_id(0),
        amount: 700,
    };
    cells[0].apply("t:sent", at, &ev).expect("applied");
    assert_eq!(held(&cells, 0), OPENING - 700);
    assert_eq!(
        book(&cells, 0, Book::TransfersPending),
        -700,
        "pending, credit-normal"
    );
    assert_eq!(cells[0].trial_balance(), 0);
}
