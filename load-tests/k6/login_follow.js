// What the app does: log in at global, then follow the HAL links straight to
// the customer's shard -- customer, accounts, an account's entries (and the
// next page when there is one) -- never building a URL by hand.
//
//   k6 run load-tests/k6/login_follow.js
//   LOGIN_RATE=10 k6 run load-tests/k6/login_follow.js
//
// Environment (besides lib.js's): LOGIN_RATE (flows/s, 5), P99_LOGIN_MS (500:
// a login verifies an argon2id hash, tens of ms of CPU by design),
// P99_SHARD_MS (50: the reads on the shard).
import http from 'k6/http';
import { check, fail } from 'k6';
import { GLOBAL_URL, JSON_HEADERS, TREND_STATS, arrival, num, pick, summary } from './lib.js';

const LOGIN_RATE = num('LOGIN_RATE', 5);

export const options = {
  summaryTrendStats: TREND_STATS,
  scenarios: {
    login_follow: arrival('loginFollow', LOGIN_RATE),
  },
  thresholds: {
    'http_req_failed{scenario:login_follow}': ['rate<0.001'],
    'checks{scenario:login_follow}': ['rate>0.999'],
    'http_req_duration{scenario:login_follow,name:POST /v1/login}': [`p(99)<${num('P99_LOGIN_MS', 500)}`],
    'http_req_duration{scenario:login_follow,hop:shard}': [`p(99)<${num('P99_SHARD_MS', 50)}`],
    dropped_iterations: [`count<${Math.max(5, Math.ceil(LOGIN_RATE * 0.5))}`],
  },
};

function link(doc, rel) {
  const l = doc && doc._links && doc._links[rel];
  return l && l.href;
}

function follow(href, token, name) {
  return http.get(href, {
    headers: { authorization: `Bearer ${token}`, accept: 'application/hal+json' },
    tags: { name, hop: 'shard' },
  });
}

export function loginFollow() {
  const c = pick();
  const login = http.post(`${GLOBAL_URL}/v1/login`, JSON.stringify({ login: c.login, password: c.password }), {
    headers: JSON_HEADERS,
    tags: { name: 'POST /v1/login' },
  });
  if (!check(login, { 'logged in (200)': (r) => r.status === 200 })) return;
  const doc = login.json();
  const token = doc.access_token;
  const customerHref = link(doc, 'customer');
  const accountsHref = link(doc, 'accounts');
  if (!check(doc, { 'login gives a token and links': () => !!token && !!customerHref && !!accountsHref })) return;

  const customer = follow(customerHref, token, 'GET customer');
  check(customer, { 'customer (200)': (r) => r.status === 200 });

  const accounts = follow(accountsHref, token, 'GET accounts');
  if (!check(accounts, { 'accounts (200)': (r) => r.status === 200 })) return;
  const embedded = accounts.json('_embedded.accounts') || [];
  const entriesHref = embedded.length > 0 ? link(embedded[0], 'entries') : undefined;
  if (!check(entriesHref, { 'an account links its entries': (h) => !!h })) return;

  const entries = follow(entriesHref, token, 'GET entries');
  if (!check(entries, { 'entries (200)': (r) => r.status === 200 })) return;
  const next = link(entries.json(), 'next');
  if (next) {
    const page = follow(next, token, 'GET entries (next)');
    check(page, { 'next page of entries (200)': (r) => r.status === 200 });
  }
}

// Fails early with a clear message when the seed file is missing logins.
export function setup() {
  const c = pick();
  if (!c.login || !c.password) fail('the seed file has no logins; run load-tests/seed.py');
}

export default loginFollow;
export const handleSummary = summary;
