// Transfers between customers, as the app makes them: POST to the
// `transfers` link the login handed out, then follow the transfer's `self`
// link until it is settled. Same-shard transfers settle in the POST (201);
// cross-shard ones are pending (202) until global's transfer service has
// credited the recipient's shard and settled back in the sender's. The
// end-to-end latency is from the POST to the first read that shows the
// transfer completed (polled every POLL_MS, so it is at most that late).
//
//   k6 run load-tests/k6/transfers.js
//
// Four phases, one after the other, in one run (same cells, same customers):
//   same_max / cross_max     closed loop, TRANSFER_VUS apps each sending one
//                            transfer after the other: the throughput
//   same_rate / cross_rate   open loop at TRANSFER_RATE/s: the latency
// Each phase lasts DURATION (default 15s here).
//
// Environment (besides lib.js's): TRANSFER_VUS (8), TRANSFER_RATE (40),
// TRANSFER_CUSTOMERS (40 customers logged in and funded by setup),
// POLL_MS (5), P99_SAME_MS (250), P99_CROSS_MS (1000).
import http from 'k6/http';
import { check, fail, sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { GLOBAL_URL, JSON_HEADERS, PARTNER_HEADERS, TREND_STATS, customers, num, uid, summary } from './lib.js';

const VUS = num('TRANSFER_VUS', 8);
const RATE = num('TRANSFER_RATE', 40);
const HOW_MANY = num('TRANSFER_CUSTOMERS', 40);
const POLL_MS = num('POLL_MS', 5);
const PHASE = __ENV.DURATION || '15s';
const PHASE_S = parseInt(PHASE, 10);
const FUNDS = 100000000;

const e2e = new Trend('transfer_e2e_ms', true);
const settled = new Counter('transfers_completed');
const notSettled = new Counter('transfers_not_completed');

function at(i) {
  return `${i * (PHASE_S + 3)}s`;
}

export const options = {
  summaryTrendStats: TREND_STATS,
  setupTimeout: '120s',
  scenarios: {
    same_max: { executor: 'constant-vus', vus: VUS, duration: PHASE, exec: 'sameShard', startTime: at(0), tags: { route: 'same' } },
    cross_max: { executor: 'constant-vus', vus: VUS, duration: PHASE, exec: 'crossShard', startTime: at(1), tags: { route: 'cross' } },
    same_rate: {
      executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s', duration: PHASE, exec: 'sameShard',
      preAllocatedVUs: Math.max(10, RATE), maxVUs: Math.max(50, RATE * 4), startTime: at(2), tags: { route: 'same' },
    },
    cross_rate: {
      executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s', duration: PHASE, exec: 'crossShard',
      preAllocatedVUs: Math.max(10, RATE), maxVUs: Math.max(50, RATE * 4), startTime: at(3), tags: { route: 'cross' },
    },
  },
  thresholds: {
    transfers_not_completed: ['count<1'],
    'transfer_e2e_ms{scenario:same_rate}': [`p(99)<${num('P99_SAME_MS', 250)}`],
    'transfer_e2e_ms{scenario:cross_rate}': [`p(99)<${num('P99_CROSS_MS', 1000)}`],
    // Listed so the summary shows each phase on its own.
    'transfer_e2e_ms{scenario:same_max}': ['max>0'],
    'transfer_e2e_ms{scenario:cross_max}': ['max>0'],
    'transfers_completed{scenario:same_max}': ['count>0'],
    'transfers_completed{scenario:cross_max}': ['count>0'],
  },
};

function uuid4() {
  const h = [];
  for (let i = 0; i < 32; i++) h.push(Math.floor(Math.random() * 16).toString(16));
  h[12] = '4';
  h[16] = ((parseInt(h[16], 16) & 3) | 8).toString(16);
  const s = h.join('');
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
}

function auth(token) {
  return Object.assign({}, JSON_HEADERS, { authorization: `Bearer ${token}`, accept: 'application/hal+json' });
}

// Logs the app in and reads its account by following its links.
function session(c) {
  const login = http.post(`${GLOBAL_URL}/v1/login`, JSON.stringify({ login: c.login, password: c.password }), { headers: JSON_HEADERS });
  if (login.status !== 200) fail(`login ${c.login}: ${login.status}`);
  const doc = login.json();
  const accounts = http.get(doc._links.accounts.href, { headers: auth(doc.access_token) });
  if (accounts.status !== 200) fail(`accounts: ${accounts.status}`);
  const account = accounts.json()._embedded.accounts[0];
  return {
    shard: c.shard, token: doc.access_token, transfers: doc._links.transfers.href,
    accounts: doc._links.accounts.href, account_id: account.account_id, account_number: c.account_number,
  };
}

// Logs TRANSFER_CUSTOMERS customers in (half on each of two shards at
// least) and funds each through a partner deposit; waits until the
// deposits are booked.
export function setup() {
  const all = customers();
  const byShard = {};
  for (const c of all) (byShard[c.shard] = byShard[c.shard] || []).push(c);
  const shards = Object.keys(byShard).sort();
  if (shards.length < 2) fail('transfers.js needs customers on at least two shards');
  const chosen = [];
  for (let i = 0; chosen.length < HOW_MANY && i < all.length; i++) {
    const c = byShard[shards[i % shards.length]][Math.floor(i / shards.length)];
    if (c) chosen.push(c);
  }
  const sessions = chosen.map(session);
  for (const s of sessions) {
    const ev = { event_id: uid('fund'), type: 'deposit', account_number: s.account_number, amount: FUNDS, currency: 'BRL', occurred_at: new Date().toISOString() };
    const r = http.post(`${GLOBAL_URL}/v1/events`, JSON.stringify(ev), { headers: PARTNER_HEADERS });
    if (r.status !== 202) fail(`fund: ${r.status} ${r.body}`);
  }
  for (const s of sessions) {
    for (let i = 0; ; i++) {
      const a = http.get(s.accounts, { headers: auth(s.token) }).json()._embedded.accounts[0];
      if (a.balance >= FUNDS) break;
      if (i > 600) fail('the funding deposits were not booked within 60 s (ledger consumers held?)');
      sleep(0.1);
    }
  }
  return { sessions };
}

function pickPair(sessions, sameShard) {
  const from = sessions[Math.floor(Math.random() * sessions.length)];
  const candidates = sessions.filter((s) => s.account_number !== from.account_number && (s.shard === from.shard) === sameShard);
  return [from, candidates[Math.floor(Math.random() * candidates.length)]];
}

let refusalsShown = 0;

function transfer(data, sameShard) {
  const [from, to] = pickPair(data.sessions, sameShard);
  const body = { transfer_id: uuid4(), from_account_id: from.account_id, to_account_number: to.account_number, amount: 1, currency: 'BRL' };
  const t0 = Date.now();
  const r = http.post(from.transfers, JSON.stringify(body), { headers: auth(from.token), tags: { name: 'POST transfers' } });
  if (!check(r, { 'transfer accepted (201/202)': (x) => x.status === 201 || x.status === 202 })) {
    notSettled.add(1, { status: String(r.status) });
    if (refusalsShown++ < 3) console.warn(`transfer refused: ${r.status} ${r.body}`);
    return;
  }
  let doc = r.json();
  while (doc.state === 'pending' && Date.now() - t0 < 30000) {
    sleep(POLL_MS / 1000);
    const g = http.get(doc._links.self.href, { headers: auth(from.token), tags: { name: 'GET transfer' } });
    if (g.status === 200) doc = g.json();
  }
  if (check(doc, { 'transfer completed': (d) => d.state === 'completed' })) {
    e2e.add(Date.now() - t0);
    settled.add(1);
  } else {
    notSettled.add(1);
  }
}

export function sameShard(data) {
  transfer(data, true);
}

export function crossShard(data) {
  transfer(data, false);
}

export function handleSummary(data) {
  const lines = [];
  for (const [name, m] of Object.entries(data.metrics)) {
    if (name.startsWith('transfer_e2e_ms{') || name.startsWith('transfers_completed{')) {
      const v = m.values;
      lines.push(m.type === 'counter'
        ? `${name}: ${v.count} (${(v.count / PHASE_S).toFixed(1)}/s over its ${PHASE_S} s phase)`
        : `${name}: n=${v.count} med=${v.med.toFixed(1)}ms p99=${v['p(99)'].toFixed(1)}ms max=${v.max.toFixed(1)}ms`);
    }
  }
  const out = summary(data);
  out.stdout = `${lines.sort().join('\n')}\n${out.stdout || ''}`;
  return out;
}
