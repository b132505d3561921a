// Async routing: partners send events to global, which looks up the owner
// and produces each to the owning shard's broker. Single events and batches,
// to customers of every shard, at fixed open-loop rates.
//
//   k6 run load-tests/k6/events.js
//   EVENTS_RATE=2000 BATCH_RATE=50 BATCH_SIZE=200 DURATION=60s k6 run load-tests/k6/events.js
//
// Environment (besides lib.js's): EVENTS_RATE (single events/s, 1000),
// BATCH_RATE (batch requests/s, 20), BATCH_SIZE (events per batch, 200),
// P99_SINGLE_MS (40), P99_BATCH_MS (200): the thresholds that fail the run
// (regression guards at about twice what BENCHMARKS.md's run measured).
// Requests carry the partner key (PARTNER_KEY, see lib.js); the partner needs
// scope events and a rate limit above the offered rate (seed.py registers one).
import http from 'k6/http';
import { check } from 'k6';
import { GLOBAL_URL, PARTNER_HEADERS, PARTNER_KEY, TREND_STATS, arrival, depositEvent, num, pick, summary } from './lib.js';

const EVENTS_RATE = num('EVENTS_RATE', 1000);
const BATCH_RATE = num('BATCH_RATE', 20);
const BATCH_SIZE = num('BATCH_SIZE', 200);
if (!PARTNER_KEY) throw new Error('no partner key: set PARTNER_KEY or seed with load-tests/seed.py');

export const options = {
  summaryTrendStats: TREND_STATS,
  scenarios: {
    events_single: arrival('singleEvent', EVENTS_RATE),
    events_batch: arrival('batchEvents', BATCH_RATE),
  },
  thresholds: {
    'http_req_failed{scenario:events_single}': ['rate<0.001'],
    'http_req_failed{scenario:events_batch}': ['rate<0.001'],
    'checks{scenario:events_single}': ['rate>0.999'],
    'checks{scenario:events_batch}': ['rate>0.999'],
    'http_req_duration{scenario:events_single}': [`p(99)<${num('P99_SINGLE_MS', 40)}`],
    'http_req_duration{scenario:events_batch}': [`p(99)<${num('P99_BATCH_MS', 200)}`],
    dropped_iterations: [`count<${Math.max(10, Math.ceil((EVENTS_RATE + BATCH_RATE) * 0.5))}`],
  },
};

export function singleEvent() {
  const res = http.post(`${GLOBAL_URL}/v1/events`, JSON.stringify(depositEvent(pick())), {
    headers: PARTNER_HEADERS,
    tags: { name: 'POST /v1/events' },
  });
  check(res, { 'event accepted (202)': (r) => r.status === 202 });
}

export function batchEvents() {
  const events = [];
  for (let i = 0; i < BATCH_SIZE; i++) events.push(depositEvent(pick()));
  const res = http.post(`${GLOBAL_URL}/v1/events/batch`, JSON.stringify({ events }), {
    headers: PARTNER_HEADERS,
    tags: { name: 'POST /v1/events/batch' },
  });
  check(res, {
    'batch answered (200)': (r) => r.status === 200,
    'every event of the batch accepted': (r) => r.status === 200 && r.json('accepted') === BATCH_SIZE,
  });
}

export default singleEvent;
export const handleSummary = summary;
