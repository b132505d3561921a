"""The validators must fail on broken input, not only pass on good input. Each case
copies infra/ to a temporary directory, breaks one thing the way a person would,
runs the validator that should catch it, and expects it to fail naming the
problem. (checkov is not mutated here: policy.py already fails on any new finding.)

The Terraform cases run Terraform itself (validate, or the mocked plan tests), so
TF_CLI_CONFIG_FILE must name the provider's filesystem copy (check.sh sets it).

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
    """Every overlay as infra/rollout.sh deploys it (render.py's wrapper, from the fixture)."""
    os.makedirs(out, exist_ok=True)
    src = out + "-src"
    subprocess.run([PY, os.path.join(infra, "rollout", "render.py"), "all", "--overlay",
                    os.path.join(infra, "k8s", "overlays"), "--deployment",
                    os.path.join(infra, "rollout", "fixtures", "example.json"), "--out", src],
                   check=True, capture_output=True)
    for name in sorted(os.listdir(src)):
        with open(os.path.join(out, f"{name}.yaml"), "w") as fh:
            subprocess.run([kubectl, "kustomize", os.path.join(src, name)], stdout=fh, check=True)


def fake_bins(rendered, where):
    """Stand-in binaries whose config-keys are exactly what the good manifests use."""
    keys = {"global": set(), "shard": set(), "exporter": set()}
    for f in os.listdir(rendered):
        docs = [d for d in yaml.safe_load_all(open(os.path.join(rendered, f))) if d]
        config_maps = {d["metadata"]["name"]: set(d.get("data", {})) for d in docs if d["kind"] == "ConfigMap"}
        for d in docs:
            if d["kind"] != "Deployment":
                continue
            for c in d["spec"]["template"]["spec"]["containers"]:
                kind = ("global" if f == "global.yaml"
                        else "exporter" if c.get("command", [""])[0].endswith("/cellbank-exporter") else "shard")
                keys[kind] |= {e["name"] for e in c.get("env", []) if e["name"].startswith("CELLBANK__")}
                for src in c.get("envFrom", []):
                    keys[kind] |= {k for k in config_maps.get(src["configMapRef"]["name"], ())
                                   if k.startswith("CELLBANK__")}
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


def in_deployment(name, fn):
    """A mutation of one named Deployment's first container."""
    def edit_doc(d):
        if d["kind"] == "Deployment" and d["metadata"]["name"] == name:
            fn(d["spec"]["template"]["spec"]["containers"][0], d)
    return edit_doc


def rename_config_key(config_map, old, new):
    def edit_doc(d):
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(config_map + "-"):
            d["data"][new] = d["data"].pop(old)
    return edit_doc


def open_exporter_to_ingress(d):
    if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "cellbank-exporter":
        d["spec"]["ingress"][0]["from"].append(
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}})


def open_exporter_egress(d):
    if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "cellbank-exporter":
        del d["spec"]["egress"][-1]["ports"]


# (name, validator, mutation(infra, rendered), expected text in the output)
CASES = [
    ("misspelt env var", "drift",
     lambda i, r: yaml_edit(f"{r}/shard-1.yaml", rename_config_key(
         "cellbank-shard-config", "CELLBANK__SERVER__PORT", "CELLBANK__SERVER__PROT")),
     "CELLBANK__SERVER__PROT, which cellbank-shard config-keys does not list"),
    ("the exporter given a shard setting", "drift",
     lambda i, r: yaml_edit(f"{r}/shard-2.yaml", rename_config_key(
         "cellbank-exporter-config", "CELLBANK__TELEMETRY__FILTER", "CELLBANK__DATABASE__URL")),
     "CELLBANK__DATABASE__URL, which cellbank-exporter config-keys does not list"),
    ("two exporters of one cell", "drift",
     lambda i, r: yaml_edit(f"{r}/shard-1.yaml", in_deployment(
         "cellbank-exporter", lambda c, d: d["spec"].update(replicas=2, strategy={"type": "RollingUpdate"}))),
     "but a cell's exporter runs as exactly 1 pod"),
    ("the exporter without its store", "drift",
     lambda i, r: edit(f"{r}/shard-2.yaml", "CELLBANK__EXPORT__STORE_URL: s3://", "CELLBANK__EXPORT__STORE_URL: file:///tmp/"),
     "is not s3://<bucket>/<prefix>"),
    ("the exporter runs a binary its image lacks", "drift",
     lambda i, r: edit(f"{r}/shard-1.yaml", "- /usr/local/bin/cellbank-exporter", "- /usr/local/bin/cellbank-exporte"),
     "is no binary the cellbank-shard image ships"),
    ("the Dockerfile no longer builds the exporter", "drift",
     lambda i, r: edit(f"{i}/docker/shard.Dockerfile", "--bin cellbank-exporter", ""),
     "does not build --bin cellbank-exporter"),
    ("containerPort differs from the listen port", "drift",
     lambda i, r: edit(f"{r}/shard-2.yaml", "containerPort: 8081", "containerPort: 9090"),
     "containerPort 9090 but CELLBANK__SERVER__PORT=8081"),
    ("readiness probe on the liveness endpoint", "drift",
     lambda i, r: yaml_edit(f"{r}/global.yaml", set_probe_path),
     "readinessProbe must GET /readyz"),
    ("the rollout syncs no such Secret key", "drift",
     lambda i, r: edit(f"{r}/shard-1.yaml", "key: internal-token", "key: internal-tokn"),
     "which its SecretProviderClass syncs with keys"),
    ("Dockerfile exposes another port", "drift",
     lambda i, r: edit(f"{i}/docker/shard.Dockerfile", "EXPOSE 8081", "EXPOSE 8080"),
     "shard.Dockerfile"),
    ("a tfvars shard without an overlay", "drift",
     lambda i, r: edit(f"{i}/terraform/envs/example/terraform.tfvars", '"shard-2" = {', '"shard-7" = { image_tag = "0.1.0" }\n  "shard-2" = {'),
     "shard-7 has no overlay"),
    ("probe on a path the service does not serve", "drift",
     lambda i, r: yaml_edit(f"{r}/shard-1.yaml", in_deployment(
         "cellbank-shard", lambda c, d: c["readinessProbe"]["httpGet"].update(path="/ready"))),
     "/ready is not a route of the shard crate"),
    ("the exporter probed on a path it does not serve", "drift",
     lambda i, r: yaml_edit(f"{r}/shard-2.yaml", in_deployment(
         "cellbank-exporter", lambda c, d: c["livenessProbe"]["httpGet"].update(path="/livez"))),
     "/livez is not a route of the shard/exporter crate"),
    ("shards allowed to reach each other", "isolation",
     lambda i, r: (yaml_edit(f"{r}/shard-1.yaml", open_shard_to_shards), yaml_edit(f"{r}/shard-2.yaml", open_shard_to_shards)),
     "cellbank-shard-1 -> cellbank-shard-2:8081 (http) is open, should be closed"),
    ("an exporter open to the ingress controller", "isolation",
     lambda i, r: yaml_edit(f"{r}/shard-1.yaml", open_exporter_to_ingress),
     "ingress-nginx -> cellbank-shard-1:8083 (http) is open, should be closed"),
    ("the exporter's S3 rule open on every port", "drift",
     lambda i, r: yaml_edit(f"{r}/shard-2.yaml", open_exporter_egress),
     "nor HTTPS (TCP 443 only) outside the VPC"),
    ("the exporter's S3 rule reaching into the VPC", "drift",
     lambda i, r: edit(f"{r}/shard-1.yaml", "- 10.0.0.0/16", "- 10.0.0.0/24"),
     "nor HTTPS (TCP 443 only) outside the VPC"),
    ("ops port open to the ingress controller", "isolation",
     lambda i, r: yaml_edit(f"{r}/global.yaml", open_ops_to_public),
     "ingress-nginx -> cellbank-global:8090 (ops) is open, should be closed"),
    ("an Ingress routes to the ops API", "isolation",
     lambda i, r: yaml_edit(f"{r}/global.yaml", route_ingress_to_ops),
     "which is global's ops port"),
    ("ops containerPort differs from the ops listener", "drift",
     lambda i, r: edit(f"{r}/global.yaml", "containerPort: 8090", "containerPort: 8091"),
     "containerPort 8091 but CELLBANK__OPS__PORT=8090"),
    ("another role may decrypt a cell's key", "terraform",
     lambda i, r: edit(f"{i}/terraform/modules/cell/main.tf", "decrypt_role_arns = [module.role.arn]",
                       "decrypt_role_arns = [module.role.arn, var.router_role_arn]"),
     "decrypt_role_arns must be [module.role.arn]"),
    ("deletion protection off outside decommission", "terraform",
     lambda i, r: edit(f"{i}/terraform/modules/postgres/main.tf", "deletion_protection       = !var.decommission",
                       "deletion_protection       = false"),
     "deletion_protection must be !var.decommission"),
    ("the canary's tag differs from its overlay", "terraform",
     lambda i, r: edit(f"{i}/terraform/envs/example/terraform.tfvars", '"shard-1" = { image_tag = "0.1.0"', '"shard-1" = { image_tag = "0.2.0"'),
     "shards[shard-1].image_tag is 0.2.0 but its overlay deploys 0.1.0"),
    ("a token generated into Terraform state", "terraform",
     lambda i, r: edit(f"{i}/terraform/modules/cell/secrets.tf", 'resource "aws_secretsmanager_secret" "admin_token" {',
                       'resource "random_password" "t" {\n  length = 48\n}\n\nresource "aws_secretsmanager_secret" "admin_token" {'),
     "a generated secret would sit in Terraform state"),
    ("an apostrophe in a security-group description", "terraform",
     lambda i, r: edit(f"{i}/terraform/modules/global/main.tf", '"Pods of the global router tier"', '"Pods of the router\'s tier"'),
     "which EC2 rejects"),
    ("a misspelt probe field", "kube-schema",
     lambda i, r: edit(f"{r}/shard-1.yaml", "periodSeconds: 2", "periodSecond: 2"),
     "'periodSecond' was unexpected"),
    # Terraform's own checks: validate with the provider's schema, and the mocked plan tests.
    ("a removed required argument", "tf-validate:modules/kafka",
     lambda i, r: edit(f"{i}/terraform/modules/kafka/main.tf", "  cluster_name           = var.name\n", ""),
     'The argument "cluster_name" is required'),
    ("undeclared variable", "tf-validate:modules/global",
     lambda i, r: edit(f"{i}/terraform/modules/global/main.tf", "var.kafka_volume_size", "var.kafka_disk_size"),
     "Reference to undeclared input variable"),
    ("module call misses a required variable", "tf-validate:envs/example",
     lambda i, r: edit(f"{i}/terraform/envs/example/main.tf", "  vpc_id                    = module.platform.vpc_id\n", ""),
     'The argument "vpc_id" is required'),
    ("an apostrophe in a database security-group description", "tf-test",
     lambda i, r: edit(f"{i}/terraform/modules/cell/main.tf", '"Postgres of ${var.shard_id}: this cell pods only"',
                       '"Postgres of ${var.shard_id}: this cell\'s pods only"'),
     "EC2 rejects anything else"),
    ("an apostrophe in a cell's pod security-group description", "tf-test",
     lambda i, r: edit(f"{i}/terraform/modules/cell/main.tf", 'pods_sg_description = "Pods of ${var.shard_id}"',
                       'pods_sg_description = "Pods of ${var.shard_id}\'s cell"'),
     "has a character EC2 rejects"),
    ("a database security group opened to 0.0.0.0/0", "tf-test",
     lambda i, r: edit(f"{i}/terraform/modules/postgres/main.tf",
                       "  referenced_security_group_id = each.value.security_group_id\n",
                       '  cidr_ipv4                    = "0.0.0.0/0"\n'),
     "the database admits security groups only, never a CIDR"),
    ("hand-edited overlay", "generator",
     lambda i, r: edit(f"{i}/k8s/overlays/shard-1/kustomization.yaml", "namespace: cellbank-shard-1", "namespace: cellbank-shard-one"),
     "differs from the generator's output"),
]


def run_validator(which, infra, rendered, bins):
    checks = os.path.join(infra, "checks")
    if which == "drift":
        cmd = [PY, f"{checks}/drift.py", "--global-bin", bins["global"], "--shard-bin", bins["shard"],
               "--exporter-bin", bins["exporter"], "--rendered", rendered]
    elif which == "isolation":
        cmd = [PY, f"{checks}/isolation.py", rendered]
    elif which == "terraform":
        cmd = [PY, f"{checks}/terraform.py"]
    elif which == "kube-schema":
        cmd = [PY, f"{checks}/kube_schema.py", rendered]
    elif which == "generator":
        cmd = ["bash", f"{infra}/k8s/render-shard.sh", "--check"]
    elif which.startswith("tf-validate:"):
        cmd = [PY, f"{checks}/tf_validate.py", f"{infra}/terraform", f"{rendered}-tf", which.split(":", 1)[1]]
    elif which == "tf-test":
        cmd = [PY, f"{checks}/tf_validate.py", "--test", f"{infra}/terraform/envs/example", f"{rendered}-tf"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def main(kubectl):
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        good = os.path.join(tmp, "good")
        render(INFRA, kubectl, good)
        bins = fake_bins(good, tmp)
        for n, (name, which, mutate, expect) in enumerate([("nothing broken", v, None, None)
                                                           for v in ("drift", "isolation", "terraform", "generator", "kube-schema")] + CASES):
            infra = os.path.join(tmp, f"case{n}", "infra")
            shutil.copytree(INFRA, infra, ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copy(os.path.join(INFRA, "..", "rust-toolchain.toml"), os.path.join(tmp, f"case{n}"))
            for crate in ("global", "shard", os.path.join("shard", "exporter")):  # drift reads their routes
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
