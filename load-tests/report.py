#!/usr/bin/env python3
"""Turns one harness run's raw results (load-tests/run.sh) into markdown.

    python3 load-tests/report.py .local/loadtest/run-YYYYMMDDTHHMMSSZ > results.md

Reads wrk/*.json (WRKJSON lines), produce.*.json (produce-baseline), k6/*.json
(k6 summaries) and *.rc, perf/*.txt and meta.json. Repeated runs are reduced
to their median. Standard library only.
"""

import glob
import json
import os
import statistics
import sys


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
        return json.loads(text) if text else None
    except (OSError, json.JSONDecodeError):
        return None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt_num(v, digits=0):
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}"


def fmt_ms(v):
    if v is None:
        return "n/a"
    return f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def fmt_ratio(r):
    return "n/a" if r is None else f"{r:.2f}x"


def wrk_rows(out, name):
    return [r for r in (load(p) for p in sorted(glob.glob(os.path.join(out, "wrk", f"{name}.*.json")))) if r]


def wrk_summary(out, name):
    rows = wrk_rows(out, name)
    if not rows:
        return None
    return {
        "n": len(rows),
        "rps": median([r["rps"] for r in rows]),
        "rps_all": [r["rps"] for r in rows],
        "p50": median([r["p50_ms"] for r in rows]),
        "p99": median([r["p99_ms"] for r in rows]),
        "p999": median([r["p999_ms"] for r in rows]),
        "errors": sum(r["socket_errors"] + r["non_2xx"] for r in rows),
        "unexpected": sum(r["unexpected"] for r in rows),
        "requests": sum(r["requests"] for r in rows),
    }


def k6_summary(out, name, metric="http_req_duration{scenario:authorizations}"):
    data = load(os.path.join(out, "k6", f"{name}.json"))
    rc_text = None
    try:
        with open(os.path.join(out, "k6", f"{name}.rc"), encoding="utf-8") as f:
            rc_text = f.read().strip()
    except OSError:
        pass
    if not data:
        return None
    m = data["metrics"]
    d = m.get(metric, {}).get("values", {})
    thresholds = []
    for mname, mv in m.items():
        for t, r in (mv.get("thresholds") or {}).items():
            thresholds.append((mname, t, r.get("ok")))
    return {
        "p50": d.get("med"),
        "p99": d.get("p(99)"),
        "p999": d.get("p(99.9)"),
        "count": d.get("count"),
        "reqs_rate": m.get("http_reqs", {}).get("values", {}).get("rate"),
        "iter_rate": m.get("iterations", {}).get("values", {}).get("rate"),
        "dropped": m.get("dropped_iterations", {}).get("values", {}).get("count", 0),
        "failed_rate": m.get("http_req_failed", {}).get("values", {}).get("rate"),
        "checks_rate": m.get("checks", {}).get("values", {}).get("rate"),
        "thresholds": thresholds,
        "rc": rc_text,
        "metrics": m,
    }


def oha_summary(out, name):
    """An oha JSON result as rate, latencies (ms) and success ratio."""
    d = load(os.path.join(out, "oha", f"{name}.json"))
    if not d or "latencyPercentiles" not in d:
        return None
    lat = d["latencyPercentiles"]
    ms = lambda v: None if v is None else v * 1000
    return {
        "rps": d["summary"].get("requestsPerSec") or 0,
        "success": d["summary"].get("successRate") or 0,
        "p50": ms(lat.get("p50")), "p99": ms(lat.get("p99")), "p999": ms(lat.get("p99.9")),
    }


def main():
    out = sys.argv[1]
    meta = load(os.path.join(out, "meta.json")) or {}
    batch = int(meta.get("batch_size", 200))
    lines = []
    w = lines.append

    w(f"Run of `{meta.get('command', 'bash load-tests/run.sh')}` on {meta.get('date', '?')} "
      f"(commit {meta.get('commit', '?')}): {meta.get('nproc', '?')} cores ({meta.get('cpu', '?')}), "
      f"{meta.get('memory', '?')} RAM, kernel {meta.get('kernel', '?')}; global + {meta.get('shards', '?')} "
      f"shards, {meta.get('customers', '?')} seeded customers; {meta.get('k6', 'k6')}, "
      f"{meta.get('wrk', 'wrk')}, nginx {meta.get('nginx', '?')}. Load generator and platform share the cores; "
      f"load average (1/5/15 min) {meta.get('loadavg_before', '?')} before the run, {meta.get('loadavg_after', '?')} after.")
    w("")
    if int(meta.get("ledger_held", 0)) == 1:
        w("The shards' ledger consumers were held (`cellctl consumers hold`) for the whole run: the cores "
          "measure routing (router, authorizer, brokers), not the ledger booking what was routed; "
          "the ledger's own throughput is in the Shard section.")
    else:
        w("The shards' ledger consumers ran during the measurements (HOLD_LEDGER=0).")
    w("")

    # --- max throughput -------------------------------------------------------
    shard = wrk_summary(out, "auth-shard")
    nginx = wrk_summary(out, "auth-nginx")
    glob_auth = wrk_summary(out, "auth-global")
    event = wrk_summary(out, "event-global")
    batch_s = wrk_summary(out, "batch-global")
    produce = [p for p in (load(f) for f in sorted(glob.glob(os.path.join(out, "produce.*.json")))) if p]
    produce_rate = median([p["msg_per_s"] for p in produce])
    produce_failed = sum(p.get("failed", 0) for p in produce)

    w(f"### Maximum throughput (wrk, 2 threads, {meta.get('wrk_conns', 64)} connections "
      f"({meta.get('event_conns', 64)} for single events, 16 for batches), {meta.get('wrk_seconds', 15)} s, median of {meta.get('repeat', 1)} runs)")
    w("")
    w("Closed loop: latencies here are at saturation, not at a fixed rate.")
    w("")
    w("| path | throughput | p50 | p99 | p99.9 | errors |")
    w("|---|---:|---:|---:|---:|---:|")

    def row(label, s, unit="req/s", mult=1):
        if not s:
            w(f"| {label} | n/a | n/a | n/a | n/a | n/a |")
            return
        errs = s["errors"] + s["unexpected"]
        w(f"| {label} | {fmt_num(s['rps'] * mult)} {unit} | {fmt_ms(s['p50'])} | {fmt_ms(s['p99'])} | "
          f"{fmt_ms(s['p999'])} | {errs} of {s['requests'] * mult:,} |")

    row("authorization → **shard directly** (baseline)", shard)
    row("authorization → **nginx + Lua peer** → shard", nginx)
    row("authorization → **global** → shard", glob_auth)
    row("single event → **global** → shard broker", event)
    row(f"batch of {batch} events → **global** → shard brokers", batch_s, "events/s", batch)
    w(f"| same event stream → **shard brokers directly** (rdkafka, linger 5 ms; baseline) | "
      f"{fmt_num(produce_rate)} msg/s | – | – | – | {produce_failed} of "
      f"{sum(p.get('produced', 0) for p in produce):,} |")
    w("")
    auth_vs_direct = ratio(glob_auth and glob_auth["rps"], shard and shard["rps"])
    auth_vs_nginx = ratio(glob_auth and glob_auth["rps"], nginx and nginx["rps"])
    nginx_vs_direct = ratio(nginx and nginx["rps"], shard and shard["rps"])
    batch_rate = batch_s and batch_s["rps"] * batch
    w("Ratios (throughput):")
    w(f"- authorizations, our router vs direct to the shard: **{fmt_ratio(auth_vs_direct)}** "
      f"(nginx peer vs direct: {fmt_ratio(nginx_vs_direct)})")
    w(f"- authorizations, our router vs the nginx peer: **{fmt_ratio(auth_vs_nginx)}**")
    w(f"- events through the batch endpoint vs the raw producer: **{fmt_ratio(ratio(batch_rate, produce_rate))}**; "
      f"single events vs the raw producer: {fmt_ratio(ratio(event and event['rps'], produce_rate))}")
    w("")

    # --- latency at fixed rates ---------------------------------------------------
    half = meta.get("half_rate")
    ks = k6_summary(out, "lat-shard")
    kn = k6_summary(out, "lat-nginx")
    kg = k6_summary(out, "lat-global")
    ke = k6_summary(out, "e2e-global")
    low = meta.get("low_rate")
    ls = k6_summary(out, "low-shard")
    ln = k6_summary(out, "low-nginx")
    lg = k6_summary(out, "low-global")
    w(f"### Authorization latency at fixed rates (k6 constant-arrival-rate, {meta.get('k6_duration', '30s')})")
    w("")
    w("| path | offered | achieved | p50 | p99 | p99.9 | failed | added vs direct (p50 / p99) |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")

    def krow(label, s, offered, base):
        if not s:
            w(f"| {label} | {offered}/s | n/a | n/a | n/a | n/a | n/a | n/a |")
            return
        added = "–"
        if base and s is not base and None not in (s["p50"], s["p99"], base["p50"], base["p99"]):
            added = f"{s['p50'] - base['p50']:+.2f} / {s['p99'] - base['p99']:+.2f} ms"
        failed = "n/a" if s["failed_rate"] is None else f"{s['failed_rate'] * 100:.2f}%"
        w(f"| {label} | {fmt_num(offered)}/s | {fmt_num(s['iter_rate'])}/s | {fmt_ms(s['p50'])} | "
          f"{fmt_ms(s['p99'])} | {fmt_ms(s['p999'])} | {failed} | {added} |")

    krow("shard directly (baseline)", ks, half, ks)
    krow("nginx + Lua peer → shard", kn, half, ks)
    krow("global → shard (half of global's max)", kg, half, ks)
    krow("global → shard (end to end)", ke, meta.get("e2e_auth_rate", 5000), None)
    if ls or ln or lg:
        krow("shard directly (baseline)", ls, low, ls)
        krow("nginx + Lua peer → shard", ln, low, ls)
        krow("global → shard", lg, low, ls)
    w("")
    w("A row whose achieved rate is below 95 % of the offered one did not measure its rate: "
      "k6 (about 1 ms of CPU per request) and the platform share the two cores, and the "
      "open-loop generator could not keep up; its latencies include that queueing.")
    w("")

    # --- latency with oha -------------------------------------------------------------
    oha = {}
    for rate in (2000, half):
        for path in ("shard", "nginx", "global"):
            oha[(path, rate)] = oha_summary(out, f"{path}-{rate}")
    if any(oha.values()):
        w(f"### Authorization latency at fixed rates (oha, open loop with latency correction, "
          f"{meta.get('oha_seconds', 15)} s per row)")
        w("")
        w("One request body per path, sent over and over: the shard answers a repeated network "
          "reference from its dedupe window, so the rows differ by their router only.")
        w("")
        w("| path | offered | achieved | p50 | p99 | p99.9 | success | added vs direct (p50 / p99) |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|")
        for rate in (2000, half):
            base = oha[("shard", rate)]
            for path, label in (("shard", "shard directly (baseline)"), ("nginx", "nginx + Lua peer → shard"),
                                ("global", "global → shard")):
                o = oha[(path, rate)]
                if not o:
                    w(f"| {label} | {fmt_num(rate)}/s | n/a | n/a | n/a | n/a | n/a | n/a |")
                    continue
                added = "–"
                if base and o is not base:
                    added = f"{o['p50'] - base['p50']:+.2f} / {o['p99'] - base['p99']:+.2f} ms"
                w(f"| {label} | {fmt_num(rate)}/s | {fmt_num(o['rps'])}/s | {fmt_ms(o['p50'])} | "
                  f"{fmt_ms(o['p99'])} | {fmt_ms(o['p999'])} | {o['success'] * 100:.2f}% | {added} |")
        w("")

    # --- k6 suites ---------------------------------------------------------------------
    rates = meta.get("suite_rates", {})
    w(f"### k6 suites at the documented rates ({meta.get('k6_duration', '30s')} each)")
    w("")
    w("| suite | rates | requests/s | p99 by scenario | dropped | thresholds |")
    w("|---|---|---:|---|---:|---|")
    suites = [
        ("events.js", "suite-events", f"{rates.get('events')} events/s + {rates.get('batch')} batches/s of {batch}"),
        ("authorizations.js", "suite-authorizations", f"{rates.get('auth')}/s"),
        ("login_follow.js", "suite-login_follow", f"{rates.get('login')} flows/s"),
        ("mixed.js", "suite-mixed", f"{rates.get('mix')} req/s mixed"),
    ]
    suite_ok = True
    for script, name, rate_text in suites:
        s = k6_summary(out, name)
        if not s:
            w(f"| `{script}` | {rate_text} | n/a | n/a | n/a | not run |")
            suite_ok = False
            continue
        p99s = []
        for mname, mv in s["metrics"].items():
            if mname.startswith("http_req_duration{") and "expected_response" not in mname:
                tag = mname[len("http_req_duration{"):-1]
                p99s.append(f"{tag}: {fmt_ms(mv['values'].get('p(99)'))}")
        total = len(s["thresholds"])
        failed = [f"{m} {t}" for m, t, ok in s["thresholds"] if not ok]
        verdict = f"{total - len(failed)}/{total} passed" + (f" (failed: {'; '.join(failed)})" if failed else "")
        if failed or s["rc"] not in ("0", None):
            suite_ok = False
        w(f"| `{script}` | {rate_text} | {fmt_num(s['reqs_rate'])} | {'<br>'.join(p99s)} | "
          f"{fmt_num(s['dropped'])} | {verdict} |")
    w("")

    # --- goals ------------------------------------------------------------------------
    def verdict(ok):
        return "n/a" if ok is None else ("**met**" if ok else "**not met**")

    def offered_ok(s, offered):
        return bool(s) and s["iter_rate"] is not None and offered and s["iter_rate"] >= 0.95 * float(offered)

    added_p99 = None if not (kg and ks and kg["p99"] is not None and ks["p99"] is not None) else kg["p99"] - ks["p99"]
    half_ok = offered_ok(ks, half) and offered_ok(kg, half)
    low_added = None if not (lg and ls and lg["p99"] is not None and ls["p99"] is not None) else lg["p99"] - ls["p99"]
    low_ok = offered_ok(ls, low) and offered_ok(lg, low)
    if half_ok:
        added_text, added_verdict = f"{added_p99:+.2f} ms", verdict(added_p99 <= 1.0)
    else:
        added_text = (f"not measurable here: k6 achieved {fmt_num(ks and ks['iter_rate'])}/s direct and "
                      f"{fmt_num(kg and kg['iter_rate'])}/s via global of {fmt_num(half)}/s offered")
        added_verdict = "**not measured**"
    if low_added is not None:
        added_text += (f"; at {fmt_num(low)}/s: {low_added:+.2f} ms"
                       + ("" if low_ok else " (rate not achieved)"))
    w("### Goals")
    w("")
    w("| goal | measured | verdict |")
    w("|---|---:|---|")
    w(f"| routed events ≥ 50,000/s through the batch endpoint | {fmt_num(batch_rate)} events/s | "
      f"{verdict(None if batch_rate is None else batch_rate >= 50000)} |")
    w(f"| single-event routing ≥ 20,000 req/s | {fmt_num(event and event['rps'])} req/s | "
      f"{verdict(None if not event else event['rps'] >= 20000)} |")
    w(f"| router added latency p99 ≤ 1 ms at half of its max rate ({fmt_num(half)}/s) | "
      f"{added_text} | {added_verdict} |")
    w(f"| authorization p99 ≤ 5 ms end to end at {fmt_num(meta.get('e2e_auth_rate', 5000))}/s | "
      f"{fmt_ms(ke and ke['p99'])} (achieved {fmt_num(ke and ke['iter_rate'])}/s) | "
      f"{verdict(None if not ke or ke['p99'] is None else ke['p99'] <= 5.0 and offered_ok(ke, meta.get('e2e_auth_rate', 5000)))} |")
    w(f"| authorization throughput ≥ the nginx peer's | {fmt_ratio(auth_vs_nginx)} of nginx | "
      f"{verdict(None if auth_vs_nginx is None else auth_vs_nginx >= 1.0)} |")
    w(f"| k6 suites' thresholds pass at the documented rates | | {verdict(suite_ok)} |")
    for rate in (2000, half):
        o, base = oha.get(("global", rate)), oha.get(("shard", rate))
        if o and base:
            achieved = o["rps"] >= 0.95 * float(rate) and base["rps"] >= 0.95 * float(rate)
            added = o["p99"] - base["p99"]
            w(f"| router added p99 ≤ 1 ms at {fmt_num(rate)}/s (oha) | {added:+.2f} ms"
              f"{'' if achieved else ' (rate not achieved)'} | "
              f"{verdict(added <= 1.0) if achieved else '**not measured**'} |")
    w(f"| batches ≥ 0.6x the raw producer | {fmt_ratio(ratio(batch_rate, produce_rate))} | "
      f"{verdict(None if ratio(batch_rate, produce_rate) is None else ratio(batch_rate, produce_rate) >= 0.6)} |")
    w("")

    # --- where the time goes ----------------------------------------------------------------
    for name, title in (("auth", "authorizations through global"), ("batch", "batches through global")):
        path = os.path.join(out, "perf", f"{name}.by-process.txt")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                text = f.read().rstrip()
            if text:
                w(f"CPU by process while wrk drives {title} (perf, cpu-clock, whole machine):")
                w("")
                w("```")
                w(text)
                w("```")
                w("")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
