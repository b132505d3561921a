"""The validators must fail on broken input, not only pass on good input. Each case
copies infra/ to a temporary directory, breaks one thing the way a person would,
runs the validator that should catch it, and expects it to fail naming the
problem. (checkov is not mutated here: policy.py already fails on any new finding.)

usage: selftest.py KUBECTL
"""

import os
import shutil
import subprocess
import sys
import tempfile

import yaml

INFRA = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
PY = sys.executable


def render(infra, kubectl, out):
    os.makedirs(out, exist_ok=True)
    for name in sorted(os.listdir(os.path.join(infra, "k8s", "overlays"))):
        with open(os.path.join(out, f"{name}.yaml"), "w") as fh:
            subprocess.run([kubectl, "kustomize", os.path.join(infra, "k8s", "overlays", name)],
                           stdout=fh, check=True)


def fake_bins(rendered, where):
    """Stand-in binaries whose config-keys are exactly what the good manifests use."""
    keys = {"global": set(), "shard": set()}
    for f in os.listdir(rendered):
        kind = "global" if f == "global.yaml" else "shard"
        for d in yaml.safe_load_all(open(os.path.join(rendered, f))):
            if not d:
                continue
            if d["kind"] == "ConfigMap":
                keys[kind] |= set(d.get("data", {}))
            if d["kind"] == "Deployment":
                for c in d["spec"]["template"]["spec"]["containers"]:
                    keys[kind] |= {e["name"] for e in c.get("env", [])
                                   if e["name"].startswith("CELLBANK__")}
    for kind in keys:
        keys[kind] |= {"CELLBANK__KAFKA__BOOTSTRAP"}
    paths = {}
    for kind, ks in keys.items():
        p = os.path.join(where, f"fake-{kind}")
        with open(p, "w") as fh:
            fh.write("#!/bin/sh\n[ \"$1\" = config-keys ] || exit 2\n")
            fh.write("".join(f"echo {k}\n" for k in sorted(ks)))
        os.chmod(p, 0o755)
        paths[kind] = p
    return paths


def edit(path, old, new):
    with open(path) as fh:
        text = fh.read()
    if old not in text:
        raise AssertionError(f"selftest is stale: {old!r} not in {path}")
    with open(path, "w") as fh:
        fh.write(text.replace(old, new, 1))


def yaml_edit(path, fn):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    for d in docs:
        fn(d)
    yaml.safe_dump_all(docs, open(path, "w"))


def open_shard_to_shards(d):
    if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "cellbank-shard":
        peer = {"namespaceSelector": {"matchLabels": {"cellbank.io/tier": "shard"}}}
        d["spec"]["ingress"][0]["from"].append(peer)
        d["spec"]["egress"].append({"to": [peer], "ports": [{"protocol": "TCP", "port": 8081}]})


def open_ops_to_public(d):
    if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "cellbank-global":
        d["spec"]["ingress"][0]["ports"].append({"protocol": "TCP", "port": 8090})


def route_ingress_to_ops(d):
    if d["kind"] == "Ingress":
        d["spec"]["rules"][0]["http"]["paths"].append(
            {"path": "/ops/", "pathType": "Prefix",
             "backend": {"service": {"name": "cellbank-global-ops", "port": {"name": "ops"}}}})


def set_probe_path(d):
    if d["kind"] == "Deployment":
        d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] = "/healthz"


# (name, validator, mutation(infra, rendered), expected text in the output)
CASES = [
    ("misspelt env var", "drift",
     lambda i, r: edit(f"{r}/shard-1.yaml", "CELLBANK__SERVER__PORT", "CELLBANK__SERVER__PROT"),
     "CELLBANK__SERVER__PROT, which cellbank-shard config-keys does not list"),
    ("containerPort differs from the listen port", "drift",
     lambda i, r: edit(f"{r}/shard-2.yaml", "containerPort: 8081", "containerPort: 9090"),
     "containerPort 9090 but CELLBANK__SERVER__PORT=8081"),
    ("readiness probe on the liveness endpoint", "drift",
     lambda i, r: yaml_edit(f"{r}/global.yaml", set_probe_path),
     "readinessProbe must GET /readyz"),
    ("Terraform writes a key the binary does not read", "drift",
     lambda i, r: edit(f"{i}/terraform/modules/cell/main.tf", "CELLBANK__KAFKA__BOOTSTRAP =", "CELLBANK__KAFKA__BROKERS ="),
     "CELLBANK__KAFKA__BROKERS is not in cellbank-shard config-keys"),
    ("Dockerfile exposes another port", "drift",
     lambda i, r: edit(f"{i}/docker/shard.Dockerfile", "EXPOSE 8081", "EXPOSE 8080"),
     "shard.Dockerfile"),
    ("a tfvars shard without an overlay", "drift",
     lambda i, r: edit(f"{i}/terraform/envs/example/terraform.tfvars", '"shard-2" = {}', '"shard-2" = {}\n  "shard-7" = {}'),
     "shard-7 has no overlay"),
    ("probe on a path the service does not serve", "drift",
     lambda i, r: edit(f"{r}/shard-1.yaml", "path: /readyz", "path: /ready"),
     "/ready is not a route of the shard crate"),
    ("shards allowed to reach each other", "isolation",
     lambda i, r: (yaml_edit(f"{r}/shard-1.yaml", open_shard_to_shards), yaml_edit(f"{r}/shard-2.yaml", open_shard_to_shards)),
     "cellbank-shard-1 -> cellbank-shard-2:8081 (http) is open, should be closed"),
    ("ops port open to the ingress controller", "isolation",
     lambda i, r: yaml_edit(f"{r}/global.yaml", open_ops_to_public),
     "ingress-nginx -> cellbank-global:8090 (ops) is open, should be closed"),
    ("an Ingress routes to the ops API", "isolation",
     lambda i, r: yaml_edit(f"{r}/global.yaml", route_ingress_to_ops),
     "which is global's ops port"),
    ("ops containerPort differs from the ops listener", "drift",
     lambda i, r: edit(f"{r}/global.yaml", "containerPort: 8090", "containerPort: 8091"),
     "containerPort 8091 but CELLBANK__OPS__PORT=8090"),
    ("a cell gets global's admin token", "terraform",
     lambda i, r: edit(f"{i}/terraform/envs/example/main.tf", "module.global.shard_internal_tokens[each.key]", "module.global.admin_token"),
     "takes module.global.admin_token"),
    ("public database", "terraform",
     lambda i, r: edit(f"{i}/terraform/modules/postgres/main.tf", "publicly_accessible    = false", "publicly_accessible    = true"),
     "publicly_accessible must be False"),
    ("undeclared variable", "terraform",
     lambda i, r: edit(f"{i}/terraform/modules/global/main.tf", "var.kafka_volume_size", "var.kafka_disk_size"),
     "var.kafka_disk_size is used but not declared"),
    ("module call misses a required variable", "terraform",
     lambda i, r: edit(f"{i}/terraform/envs/example/main.tf", "  router_security_group_id  = module.global.router_security_group_id\n", ""),
     "does not pass required variable router_security_group_id"),
    ("a moved block to a resource that does not exist", "terraform",
     lambda i, r: edit(f"{i}/terraform/modules/cell/moved.tf", "module.postgres.aws_db_instance.this", "module.postgres.aws_db_instance.main"),
     "modules/postgres declares no aws_db_instance.main"),
    ("hand-edited overlay", "generator",
     lambda i, r: edit(f"{i}/k8s/overlays/shard-1/kustomization.yaml", "namespace: cellbank-shard-1", "namespace: cellbank-shard-one"),
     "differs from the generator's output"),
]


def run_validator(which, infra, rendered, bins):
    checks = os.path.join(infra, "checks")
    if which == "drift":
        cmd = [PY, f"{checks}/drift.py", "--global-bin", bins["global"], "--shard-bin", bins["shard"], "--rendered", rendered]
    elif which == "isolation":
        cmd = [PY, f"{checks}/isolation.py", rendered]
    elif which == "terraform":
        cmd = [PY, f"{checks}/terraform.py"]
    elif which == "generator":
        cmd = ["bash", f"{infra}/k8s/render-shard.sh", "--check"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def main(kubectl):
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        good = os.path.join(tmp, "good")
        render(INFRA, kubectl, good)
        bins = fake_bins(good, tmp)
        for n, (name, which, mutate, expect) in enumerate([("nothing broken", v, None, None)
                                                           for v in ("drift", "isolation", "terraform", "generator")] + CASES):
            infra = os.path.join(tmp, f"case{n}", "infra")
            shutil.copytree(INFRA, infra, ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copy(os.path.join(INFRA, "..", "rust-toolchain.toml"), os.path.join(tmp, f"case{n}"))
            for crate in ("global", "shard"):  # drift reads their routes
                shutil.copytree(os.path.join(INFRA, "..", crate, "src"), os.path.join(tmp, f"case{n}", crate, "src"))
            rendered = os.path.join(tmp, f"case{n}", "rendered")
            shutil.copytree(good, rendered)
            if mutate:
                mutate(infra, rendered)
            res = run_validator(which, infra, rendered, bins)
            out = res.stdout + res.stderr
            if mutate is None and res.returncode != 0:
                problems.append(f"{which} fails on the unbroken copy: {out.strip()[-400:]}")
            elif mutate is not None and (res.returncode == 0 or expect not in out):
                problems.append(f"{which} did not catch '{name}' (exit {res.returncode}): {out.strip()[-400:]}")
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    status = "FAIL" if problems else "ok"
    print(f"selftest: {status}: {len(CASES)} broken copies of infra/, each caught by its validator; "
          f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
