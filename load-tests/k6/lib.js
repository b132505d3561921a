// Shared helpers for the Cellbank k6 scenarios: configuration from the
// environment, the seed file (written by load-tests/seed.py through global's
// public API), request bodies, and a compact end-of-test summary.
//
// Environment (all optional):
//   GLOBAL_URL      global's base URL               (http://127.0.0.1:8080)
//   SEED_FILE       seed file path                  (../../.local/loadtest/seed.json,
//                                                     relative to this folder)
//   DURATION        length of each scenario         (30s)
//   SUMMARY_FILE    write the full summary as JSON there
//   SHARD_FILTER    only use customers of this shard (e.g. shard-1)
//   PARTNER_KEY     the partner key sent on /v1/events, /v1/events/batch and
//                   /v1/authorizations (also CELLBANK_PARTNER_KEY; default: the
//                   key seed.py registered for the run, in the seed file)
//   INTERNAL_TOKENS each shard's internal token, JSON {"shard-1": "...", ...}, for
//                   the direct-to-shard and nginx paths (or INTERNAL_TOKEN: one for all)
import { SharedArray } from 'k6/data';
import exec from 'k6/execution';

export const GLOBAL_URL = (__ENV.GLOBAL_URL || 'http://127.0.0.1:8080').replace(/\/$/, '');
export const DURATION = __ENV.DURATION || '30s';
const SEED_FILE = __ENV.SEED_FILE || '../../.local/loadtest/seed.json';

const seed = new SharedArray('seed', function () {
  const s = JSON.parse(open(SEED_FILE));
  const only = __ENV.SHARD_FILTER;
  const urls = {};
  for (const sh of s.shards) urls[sh.id] = sh.internal_url.replace(/\/$/, '');
  return s.customers
    .filter((c) => !only || c.shard === only)
    .map((c) => Object.assign({}, c, { internal_url: urls[c.shard] }));
});

// The partner key: the environment's, or the one seed.py registered for the run.
const seedMeta = new SharedArray('seed-meta', function () {
  return [JSON.parse(open(SEED_FILE)).partner_key || ''];
});
export const PARTNER_KEY = __ENV.PARTNER_KEY || __ENV.CELLBANK_PARTNER_KEY || seedMeta[0];

export function customers() {
  if (seed.length === 0) throw new Error(`no seeded customers in ${SEED_FILE}`);
  return seed;
}

export function pick() {
  return seed[Math.floor(Math.random() * seed.length)];
}

export function num(name, dflt) {
  const v = __ENV[name];
  return v === undefined || v === '' ? dflt : Number(v);
}

// An id unique within and across runs: test start, VU, iteration.
const RUN = Date.now().toString(36);
export function uid(prefix) {
  return `${prefix}-${RUN}-${exec.vu.idInTest}-${exec.vu.iterationInInstance}-${Math.floor(Math.random() * 1e9)}`;
}

export const JSON_HEADERS = { 'content-type': 'application/json' };

// What a partner sends: its key as a bearer token (401 without, 403 without the scope).
export const PARTNER_HEADERS = Object.assign({}, JSON_HEADERS, { authorization: `Bearer ${PARTNER_KEY}` });

// Each shard has its own internal token (global presents shard-N's to shard-N only).
const INTERNAL_TOKENS = JSON.parse(__ENV.INTERNAL_TOKENS || '{}');
export function internalToken(shard) {
  return INTERNAL_TOKENS[shard] || __ENV.INTERNAL_TOKEN || '';
}
export function hasInternalTokens() {
  return Object.keys(INTERNAL_TOKENS).length > 0 || !!__ENV.INTERNAL_TOKEN;
}

// An open-loop scenario: `rate` iterations per second whatever the latency.
export function arrival(execName, rate, extra) {
  const r = Math.max(1, Math.round(rate));
  return Object.assign(
    {
      executor: 'constant-arrival-rate',
      exec: execName,
      rate: r,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.max(10, Math.ceil(r / 50)),
      maxVUs: Math.max(50, Math.ceil(r / 5)),
    },
    extra || {},
  );
}

// A deposit to the customer's checking account, as a partner sends it.
export function depositEvent(c) {
  return {
    event_id: uid('ev'),
    type: 'deposit',
    account_number: c.account_number,
    amount: 100 + Math.floor(Math.random() * 900),
    currency: 'BRL',
    occurred_at: new Date().toISOString(),
  };
}

export const MERCHANT = { name: 'Padaria Load Test', mcc: '5411', country: 'BR' };

export const TREND_STATS = ['avg', 'min', 'med', 'p(90)', 'p(99)', 'p(99.9)', 'max', 'count'];

function fmt(v) {
  return v === undefined || v === null ? '-' : Number(v).toFixed(2);
}

// Prints one line per scenario-tagged latency metric and each threshold's
// verdict; writes the whole summary to SUMMARY_FILE when set.
export function summary(data) {
  const lines = [];
  for (const [name, m] of Object.entries(data.metrics)) {
    if (m.type === 'trend' && name.startsWith('http_req_duration')) {
      const v = m.values;
      lines.push(
        `${name}: n=${v.count} med=${fmt(v.med)}ms p99=${fmt(v['p(99)'])}ms ` +
          `p99.9=${fmt(v['p(99.9)'])}ms max=${fmt(v.max)}ms`,
      );
    }
  }
  for (const name of ['http_reqs', 'iterations', 'dropped_iterations', 'checks', 'http_req_failed']) {
    const m = data.metrics[name];
    if (m) lines.push(`${name}: ${JSON.stringify(m.values)}`);
  }
  let failed = 0;
  for (const [name, m] of Object.entries(data.metrics)) {
    for (const [t, r] of Object.entries(m.thresholds || {})) {
      if (!r.ok) failed += 1;
      lines.push(`threshold ${r.ok ? 'ok  ' : 'FAIL'} ${name} ${t}`);
    }
  }
  lines.push(failed === 0 ? 'thresholds: all passed' : `thresholds: ${failed} FAILED`);
  const out = { stdout: lines.join('\n') + '\n' };
  if (__ENV.SUMMARY_FILE) out[__ENV.SUMMARY_FILE] = JSON.stringify(data, null, 1);
  return out;
}
