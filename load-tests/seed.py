#!/usr/bin/env python3
"""Seeds the local cells for a load run, through global's public and ops APIs only.

On the ops API (its own port, global's admin token from .local/secrets.env):
lists the shards, sets the BRL credit policy to --credit-limit (so that
authorizations are approved all run long; a card's limit comes from the
policy, never from the request) and registers a partner for the run with
scopes events and authorizations and a rate limit high enough not to
throttle the load (--partner-rate). On the public API: onboards customers
(POST /v1/customers: global places each on a shard), logs each in and issues
it a credit card with its own token (POST /v1/customers/{id}/cards).

Writes what the load tests need -- shards, the partner key, customers, logins,
passwords, PANs and their keyed hashes -- to a JSON file. That file holds
clear test PANs, passwords and a partner key: keep it under .local/
(git-ignored); never commit it.

    python3 load-tests/seed.py --customers 400 --out .local/loadtest/seed.json

Nothing is written to any database directly. Standard library only.
"""

import argparse
import concurrent.futures
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request


def read_env(path):
    values = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                values[k] = v
    return values


def call(method, url, body=None, token=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("accept", "application/json, application/hal+json")
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        raise RuntimeError(f"{method} {url} answered {e.code}: {text[:500]}") from None


def onboard(args, run_id, i, pan_key):
    login = f"lt-{run_id}-{i}@load.test"
    password = secrets.token_urlsafe(12)
    for attempt in range(5):
        try:
            _, c = call("POST", f"{args.global_url}/v1/customers",
                        {"name": f"Load Test {i}", "login": login,
                         "password": password, "currency": "BRL"})
            break
        except RuntimeError as e:
            if " 503" not in str(e) or attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
    # A customer issues its own cards: log in, use the access token.
    _, session = call("POST", f"{args.global_url}/v1/login", {"login": login, "password": password})
    cards = []
    for _ in range(args.cards):
        _, card = call("POST", f"{args.global_url}/v1/customers/{c['customer_id']}/cards",
                       {"currency": "BRL"}, token=session["access_token"])
        pan = card["pan"]
        pan_hash = hmac.new(pan_key, pan.encode(), hashlib.sha256).hexdigest()
        cards.append({"card_id": card["card_id"], "pan": pan, "pan_hash": pan_hash})
    return {
        "customer_id": c["customer_id"],
        "shard": c["shard"],
        "epoch": int(c.get("epoch", 1)),
        "login": login,
        "password": password,
        "account_number": c["account_number"],
        "cards": cards,
    }


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--global-url", default=os.environ.get("GLOBAL_URL", "http://127.0.0.1:8080"))
    p.add_argument("--ops-url", default=os.environ.get("CELLBANK_OPS_URL", os.environ.get("OPS_URL", "http://127.0.0.1:8090")),
                   help="global's ops API (its own port)")
    p.add_argument("--customers", type=int, default=400)
    p.add_argument("--cards", type=int, default=1, help="cards per customer")
    p.add_argument("--credit-limit", type=int, default=10**12,
                   help="the BRL credit policy's default limit (minor units) set before issuing cards; "
                        "large, so authorizations are approved all run long; 0 leaves the policy alone")
    p.add_argument("--partner-rate", type=int, default=1_000_000,
                   help="rate limit (requests/s) of the run's partner: high, so the load is not throttled")
    p.add_argument("--partner-key", default=None,
                   help="use this partner key instead of registering a partner for the run")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--secrets", default=os.path.join(root, ".local", "secrets.env"))
    p.add_argument("--out", default=os.path.join(root, ".local", "loadtest", "seed.json"))
    args = p.parse_args()

    env = read_env(args.secrets)
    admin = env["ADMIN_TOKEN"]
    pan_key = env["PAN_HMAC_KEY"].encode()
    ops = args.ops_url.rstrip("/")
    _, listed = call("GET", f"{ops}/ops/v1/shards", token=admin)
    shards = [{"id": s["id"], "internal_url": s["internal_url"], "public_url": s["public_url"],
               "broker_bootstrap": s["broker_bootstrap"], "state": s.get("state")}
              for s in listed["items"]]
    if not shards:
        sys.exit("no shard is registered in global; run infra/local/cells.sh up first")

    run_id = time.strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(2)
    if args.credit_limit > 0:
        call("PUT", f"{ops}/ops/v1/credit-policy/BRL", {"default_credit_limit": args.credit_limit}, token=admin)
    partner_key = args.partner_key
    if not partner_key:
        _, partner = call("POST", f"{ops}/ops/v1/partners",
                          {"name": f"load-test-{run_id}", "scopes": ["events", "authorizations"],
                           "rate_per_sec": args.partner_rate}, token=admin)
        partner_key = partner["key"]
    started = time.time()
    customers = []
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        futures = [pool.submit(onboard, args, run_id, i, pan_key) for i in range(args.customers)]
        for f in concurrent.futures.as_completed(futures):
            customers.append(f.result())
    customers.sort(key=lambda c: c["login"])
    per_shard = {}
    for c in customers:
        per_shard[c["shard"]] = per_shard.get(c["shard"], 0) + 1

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"global_url": args.global_url, "ops_url": ops, "run_id": run_id,
                   "partner_key": partner_key, "shards": shards, "customers": customers}, f)
    os.replace(tmp, args.out)
    took = time.time() - started
    print(f"[seed] {len(customers)} customers, {sum(len(c['cards']) for c in customers)} cards "
          f"in {took:.1f}s; per shard {json.dumps(per_shard, sort_keys=True)}; wrote {args.out}")


if __name__ == "__main__":
    main()
