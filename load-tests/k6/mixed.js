// The three together at realistic proportions: in a card bank the network's
// authorizations are the hot synchronous path, partner events arrive at a
// similar rate (mostly one by one, some in batches), and app logins are rare
// but each fans out into several reads on the shard.
//
//   k6 run load-tests/k6/mixed.js
//   MIX_RATE=2000 k6 run load-tests/k6/mixed.js
//
// MIX_RATE (requests/s to global, 1000) is split: 55% authorizations, 40%
// single events, 0.5% batches of BATCH_SIZE events (200), and LOGIN_SHARE
// (0.5%) login flows (login + 3-4 shard reads each).
// Thresholds (regression guards at about twice BENCHMARKS.md's figures):
// P99_AUTH_MS (100), P99_SINGLE_MS (100), P99_BATCH_MS (200),
// P99_LOGIN_MS (500), P99_SHARD_MS (50).
import { TREND_STATS, arrival, num, summary } from './lib.js';
import { authorize } from './authorizations.js';
import { batchEvents, singleEvent } from './events.js';
import { loginFollow } from './login_follow.js';

export { authorize, batchEvents, singleEvent, loginFollow };

const MIX_RATE = num('MIX_RATE', 1000);
const LOGIN_SHARE = num('LOGIN_SHARE', 0.005);

export const options = {
  summaryTrendStats: TREND_STATS,
  scenarios: {
    authorizations: arrival('authorize', MIX_RATE * 0.55),
    events_single: arrival('singleEvent', MIX_RATE * 0.4),
    events_batch: arrival('batchEvents', MIX_RATE * 0.005),
    login_follow: arrival('loginFollow', MIX_RATE * LOGIN_SHARE),
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    checks: ['rate>0.999'],
    'http_req_duration{scenario:authorizations}': [`p(99)<${num('P99_AUTH_MS', 100)}`],
    'http_req_duration{scenario:events_single}': [`p(99)<${num('P99_SINGLE_MS', 100)}`],
    'http_req_duration{scenario:events_batch}': [`p(99)<${num('P99_BATCH_MS', 200)}`],
    'http_req_duration{scenario:login_follow,name:POST /v1/login}': [`p(99)<${num('P99_LOGIN_MS', 500)}`],
    'http_req_duration{scenario:login_follow,hop:shard}': [`p(99)<${num('P99_SHARD_MS', 50)}`],
    dropped_iterations: [`count<${Math.max(10, Math.ceil(MIX_RATE * 0.5))}`],
  },
};

export default authorize;
export const handleSummary = summary;
