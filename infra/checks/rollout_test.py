"""infra/rollout.sh against stand-ins for what cannot run here (AWS, an EKS
cluster, Helm, global's ops API): each stand-in logs its argv and answers like
the real tool would for the example environment (infra/rollout/fixtures). Only
`kubectl apply -k` is real in part: the stand-in builds the kustomization with the
real kubectl first, so what rollout.sh would apply must render. Cases:

- deploy: the shared stack first; the canary cell alone in wave 0, then the next
  wave; each cell applied in its own state (its own backend key); secrets
  generated only where missing, and never on a command line; global re-rendered
  with the cell's token before the cell is registered; each wave baked.
- a canary that fails its bake is rolled back (its exporter too) and no later
  wave is touched.
- remove: refused while the cell holds customers; otherwise deletion protection
  off first, the KMS key taken out of state, then destroy.

usage: rollout_test.py KUBECTL
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

INFRA = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
FIXTURE = json.load(open(os.path.join(INFRA, "rollout", "fixtures", "example.json")))
SECRET = "S3cretValueThatMustNeverBeOnACommandLine0123456789"

STUB = r'''#!/usr/bin/env python3
import json, os, subprocess, sys
world = os.environ["STUB_WORLD"]
tool = os.path.basename(sys.argv[0]); args = sys.argv[1:]
with open(os.path.join(world, "calls.log"), "a") as fh:
    fh.write(json.dumps([tool] + args) + "\n")
state = json.load(open(os.path.join(world, "state.json")))
fixture = json.load(open(os.environ["STUB_FIXTURE"]))
def save(): json.dump(state, open(os.path.join(world, "state.json"), "w"))
def arg(flag):
    return next((a.split("=", 1)[1] for a in args if a.startswith(flag + "=")), None)
if tool == "terraform":
    chdir = arg("-chdir"); sub = [a for a in args if not a.startswith("-chdir")]
    if sub[0] == "init":
        key = next((a.split("key=", 1)[1] for a in sub if a.startswith("-backend-config=key=")), "shared")
        state["key"][chdir] = key; save()
    elif sub[0] == "output":
        key = state["key"][chdir]
        if key == "shared":
            shards = state["shards"]
            cells = {i: dict(fixture["cells"][i], environment="cellbank-example", canary=(i == "shard-1"),
                             postgres_version="16", kafka_version="3.7.x") for i in shards}
            waves = [["shard-1"]] + [[i] for i in shards if i != "shard-1"]
            out = {"cells": {"value": cells}, "waves": {"value": waves},
                   "global": {"value": fixture["global"]},
                   "platform": {"value": {"cluster_name": "cellbank-example", "region": "sa-east-1",
                                          "route53_zone_id": "Z0000000000EXAMPLE"}}}
        else:
            cid = key.split("/")[-1].replace(".tfstate", "")
            d = fixture["cells"][cid]
            out = {} if cid not in state["applied"] else {
                "deployment": {"value": d},
                "registry_entry": {"value": {"id": cid, "public_url": "https://" + d["host"],
                    "internal_url": "http://cellbank-shard.%s.svc.cluster.local:8081" % d["namespace"],
                    "broker_bootstrap": d["kafka_bootstrap"], "capacity": 1000000}},
                "kafka_cluster_name": {"value": "cellbank-example-" + cid},
                "database_identifier": {"value": "cellbank-example-" + cid}}
        print(json.dumps(out))
    elif sub[0] == "apply" and state["key"][chdir] != "shared":
        state["applied"].append(state["key"][chdir].split("/")[-1].replace(".tfstate", "")); save()
elif tool == "aws":
    if args[:2] == ["secretsmanager", "get-random-password"]:
        print(os.environ["STUB_SECRET"])
    elif args[:2] == ["secretsmanager", "describe-secret"]:
        arn = args[args.index("--secret-id") + 1]
        print(1 if arn in state["secrets"] else 0)
    elif args[:2] == ["secretsmanager", "put-secret-value"]:
        value = sys.stdin.read()
        assert value, "empty secret value"
        state["secrets"][args[args.index("--secret-id") + 1]] = len(value); save()
        print("v1")
    elif args[:2] == ["secretsmanager", "get-secret-value"]:
        print("admin-token-value")
    elif args[:2] == ["cloudwatch", "get-metric-statistics"]:
        print(state["errors"] if "Errors" in args else 0)
elif tool == "kubectl":
    if args[:2] == ["apply", "-k"]:
        r = subprocess.run([os.environ["REAL_KUBECTL"], "kustomize", args[2]], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("kustomize failed: " + r.stderr)
        open(os.path.join(world, "applied-%d.yaml" % len(os.listdir(world))), "w").write(r.stdout)
    elif "port-forward" in args:
        import time; time.sleep(60)
elif tool == "cellctl":
    if args[:2] == ["shards", "list"]:
        print("ID STATE CUSTOMERS CAPACITY PUBLIC INTERNAL broker")
        for s in state["registered"]:
            print("%s active %d 1000000 x y z" % (s, state["customers"]))
    elif args[:2] == ["shards", "add"]:
        state["registered"].append(args[args.index("--id") + 1]); save()
    elif args[:1] == ["health"]:
        print("global   ready        http://x")
        for s in state["registered"]:
            print("%-8s %-12s http://y" % (s, "not-ready" if s in state["unhealthy"] else "ready"))
        sys.exit(1 if state["unhealthy"] else 0)
'''


class World:
    def __init__(self, kubectl, shards=("shard-1", "shard-2"), **state):
        self.dir = tempfile.mkdtemp(prefix="rollout-test-")
        self.bin = os.path.join(self.dir, "bin")
        os.makedirs(self.bin)
        for tool in ("terraform", "aws", "kubectl", "helm", "cellctl"):
            with open(os.path.join(self.bin, tool), "w") as fh:
                fh.write(STUB)
            os.chmod(os.path.join(self.bin, tool), 0o755)
        base = {"key": {}, "applied": [], "secrets": {}, "registered": [], "customers": 0,
                "unhealthy": [], "errors": 0, "shards": list(shards)}
        base.update(state)
        json.dump(base, open(os.path.join(self.dir, "state.json"), "w"))
        self.env_dir = os.path.join(self.dir, "env")
        shutil.copytree(os.path.join(INFRA, "terraform", "envs", "example"), self.env_dir,
                        ignore=shutil.ignore_patterns(".terraform", "tests"))
        open(os.path.join(self.env_dir, "backend.hcl"), "w").write('bucket = "b"\n')
        self.kubectl = kubectl

    def run(self, *args):
        env = dict(os.environ, PATH=f"{self.bin}:{os.environ['PATH']}", STUB_WORLD=self.dir,
                   STUB_FIXTURE=os.path.join(INFRA, "rollout", "fixtures", "example.json"),
                   STUB_SECRET=SECRET, REAL_KUBECTL=self.kubectl, CELLBANK_ROLLOUT_POLL="0")
        return subprocess.run(["bash", os.path.join(INFRA, "rollout.sh"), "--env", self.env_dir, *args],
                              env=env, capture_output=True, text=True, timeout=300)

    def calls(self):
        return [json.loads(l) for l in open(os.path.join(self.dir, "calls.log"))]

    def state(self):
        return json.load(open(os.path.join(self.dir, "state.json")))


def index(calls, pred, what):
    for i, c in enumerate(calls):
        if pred(c):
            return i
    raise AssertionError(f"never called: {what}")


def cell_apply(cid):
    return lambda c: c[0] == "kubectl" and c[1:3] == ["apply", "-k"] and c[3].endswith(f"k8s-{cid}")


def case_deploy(kubectl):
    w = World(kubectl)
    r = w.run("deploy", "--bake", "0", "--wave-bake", "0")
    assert r.returncode == 0, f"deploy failed:\n{r.stderr[-3000:]}"
    calls = w.calls()
    shared = index(calls, lambda c: c[:3] == ["terraform", f"-chdir={w.env_dir}", "apply"], "shared apply")
    inits = [c for c in calls if c[0] == "terraform" and c[2] == "init"]
    keys = [a for c in inits for a in c if a.startswith("-backend-config=key=")]
    assert "-backend-config=key=cellbank-example/cells/shard-1.tfstate" in keys, keys
    assert "-backend-config=key=cellbank-example/cells/shard-2.tfstate" in keys, keys
    k1, k2 = index(calls, cell_apply("shard-1"), "shard-1 apply"), index(calls, cell_apply("shard-2"), "shard-2 apply")
    reg1 = index(calls, lambda c: c[:3] == ["cellctl", "shards", "add"] and "shard-1" in c, "register shard-1")
    reg2 = index(calls, lambda c: c[:3] == ["cellctl", "shards", "add"] and "shard-2" in c, "register shard-2")
    glob1 = index(calls[k1:], cell_apply("global"), "global after shard-1") + k1
    bake1 = index(calls[reg1:], lambda c: c[:2] == ["cellctl", "health"], "bake of wave 0") + reg1
    assert shared < k1 < glob1 < reg1 < bake1 < k2 < reg2, "order: shared, canary, global, register, bake, next wave"
    for c in calls:
        assert SECRET not in " ".join(c), f"a secret value was on a command line: {c[:3]}"
    assert len(w.state()["secrets"]) == 4 + 2 * 2, "global's 4 secrets and 2 per cell, generated once"
    # A second deploy generates no secret again and registers nothing twice.
    before = len([c for c in w.calls() if c[:2] == ["secretsmanager", "put-secret-value"]])
    assert w.run("deploy", "--bake", "0", "--wave-bake", "0").returncode == 0
    calls = w.calls()
    assert len([c for c in calls if c[1:3] == ["secretsmanager", "put-secret-value"]]) == 8, "secrets rewritten"
    assert len([c for c in calls if c[:3] == ["cellctl", "shards", "add"]]) == 2, "registered twice"
    applied = open(sorted(f for f in (os.path.join(w.dir, n) for n in os.listdir(w.dir)) if "applied-" in f)[-1]).read()
    assert "SecretProviderClass" in applied or "SecurityGroupPolicy" in applied
    return "deploy: shared stack, canary wave, global, register, bake, next wave; own state per cell; secrets once, never in argv"


def case_failed_canary(kubectl):
    w = World(kubectl, unhealthy=["shard-1"])
    r = w.run("deploy", "--bake", "0", "--wave-bake", "0")
    assert r.returncode != 0, "a canary failing its bake must fail the deploy"
    calls = w.calls()
    index(calls, lambda c: c[0] == "kubectl" and "undo" in c and "cellbank-shard-1" in c, "rollback of shard-1")
    index(calls, lambda c: c[0] == "kubectl" and "undo" in c and "cellbank-shard-1" in c
          and "deployment/cellbank-exporter" in c, "rollback of shard-1's exporter (the same release)")
    assert not any(cell_apply("shard-2")(c) for c in calls), "shard-2 was touched after the canary failed"
    assert "shard-2" not in w.state()["applied"], "shard-2's state was applied after the canary failed"
    w = World(kubectl, errors=50)
    assert w.run("deploy", "--bake", "0", "--max-errors", "5").returncode != 0, "an error rate over the limit must fail the bake"
    return "a canary failing cellctl health or its error rate is rolled back; no later wave touched"


def case_remove(kubectl):
    w = World(kubectl, applied=["shard-1", "shard-2"], registered=["shard-1", "shard-2"], customers=3)
    r = w.run("remove", "shard-2", "--yes")
    assert r.returncode != 0 and "customers" in r.stderr, f"remove of a cell with customers: {r.stderr[-500:]}"
    assert not any(c[0] == "terraform" and "destroy" in c for c in w.calls()), "destroyed a cell with customers"
    w = World(kubectl, applied=["shard-1", "shard-2"], registered=["shard-1", "shard-2"], customers=0)
    r = w.run("remove", "shard-2", "--yes")
    assert r.returncode == 0, f"remove failed:\n{r.stderr[-2000:]}"
    calls = w.calls()
    protect = index(calls, lambda c: c[0] == "terraform" and c[2] == "apply", "decommission apply")
    keep = index(calls, lambda c: c[0] == "terraform" and c[2:4] == ["state", "rm"]
                 and "module.cell.module.kms.aws_kms_key.this" in c, "state rm of the KMS key")
    destroy = index(calls, lambda c: c[0] == "terraform" and c[2] == "destroy", "destroy")
    assert protect < keep < destroy, "decommission apply, then keep the key, then destroy"
    return "remove: refused with customers; decommission apply, key kept, then destroy"


def main(argv):
    kubectl = argv[0]
    passed = []
    for case in (case_deploy, case_failed_canary, case_remove):
        try:
            passed.append(case(kubectl))
        except AssertionError as e:
            print(f"FAIL {case.__name__}: {e}")
            return 1
    for p in passed:
        print(f"ok: {p}")
    print(f"rollout: {len(passed)} cases pass against stand-in AWS, EKS and cellctl")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
