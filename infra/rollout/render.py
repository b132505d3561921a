"""Renders what infra/rollout.sh applies to one cell (or to the global tier): a
kustomization that wraps the committed overlay and adds what only the
environment knows, from Terraform's outputs (ids and ARNs, never secret values):

- the infra ConfigMap: the broker bootstrap and the database URL (no password);
- a SecretProviderClass (Secrets Store CSI driver, AWS provider, EKS Pod
  Identity): the pods, under their own role, read their own secrets from Secrets
  Manager, synced into the Secret the Deployment reads (tokens, the database
  password RDS manages, and for global each cell's internal token);
- the CSI volume on the Deployment, so the Secret is synced before the pods start;
- a SecurityGroupPolicy: the pods carry their tier's or cell's security group;
- for a cell's exporter: its infra ConfigMap (the broker bootstrap, its store: the
  analytics bucket's prefix its role may write, and the region for the S3 client)
  and its own SecurityGroupPolicy. It reads no secret.

It refuses an overlay whose image tag is not the release Terraform holds for that
cell, so the canary's tag cannot drift from the shards map. Standard library
only: it writes JSON, which kustomize reads as YAML.

usage: render.py cell   --overlay DIR --deployment FILE --out DIR
       render.py global --overlay DIR --deployment FILE --cells FILE --out DIR
       render.py all    --overlay OVERLAYS_DIR --deployment FIXTURE --out DIR
         (every overlay, from a fixture of outputs: infra/check.sh's offline view
          of what a deploy applies; one kustomization per overlay under DIR)
  --deployment: the tier's or cell's `deployment` output (terraform output -json)
  --cells: the cells' `deployment` outputs by shard id (global's shard tokens)
"""

import argparse
import json
import os
import re
import sys

SPEC = {
    "cell": {"app": "cellbank-shard", "container": "shard", "infra": "cellbank-shard-infra",
             "secret": "cellbank-shard-secrets"},
    "global": {"app": "cellbank-global", "container": "global", "infra": "cellbank-global-infra",
               "secret": "cellbank-global-secrets"},
}
# The cell's exporter: no secrets, its own security group and infra ConfigMap.
EXPORTER = {"app": "cellbank-exporter", "infra": "cellbank-exporter-infra"}
CSI_MOUNT = "/mnt/secrets-store"


def fail(msg):
    print(f"render: {msg}", file=sys.stderr)
    sys.exit(2)


def overlay_tag(overlay, image):
    """The newTag the overlay pins for image (render-shard.sh writes it)."""
    text = open(os.path.join(overlay, "kustomization.yaml")).read()
    m = re.search(r"^images:\n((?:[ -].*\n?)+)", text, re.M)
    if not m:
        return None
    entries = re.split(r"^  - ", m.group(1), flags=re.M)
    for e in entries:
        if re.search(rf"name: (?:\S+/)?{re.escape(image)}\s*$", e, re.M):
            t = re.search(r"newTag: \"?([^\"\s]+)", e)
            return t.group(1) if t else None
    return None


def secret_objects(kind, dep, cells):
    """(SecretProviderClass objects, Secret keys): every value the pods read."""
    objects = [{"objectName": dep["database_secret_arn"], "objectType": "secretsmanager",
                "jmesPath": [{"path": "password", "objectAlias": "database-password"}]}]
    keys = ["database-password"]
    if kind == "cell":
        named = {"admin-token": dep["admin_token_secret_arn"], "internal-token": dep["internal_token_secret_arn"]}
    else:
        named = dict(dep["secret_arns"])
        for shard, cell in sorted(cells.items()):
            named[f"{shard}-internal-token"] = cell["internal_token_secret_arn"]
    for alias, arn in named.items():
        objects.append({"objectName": arn, "objectType": "secretsmanager", "objectAlias": alias})
        keys.append(alias)
    return objects, keys


def secret_provider_class(kind, dep, cells):
    spec = SPEC[kind]
    objects, keys = secret_objects(kind, dep, cells)
    return {
        "apiVersion": "secrets-store.csi.x-k8s.io/v1",
        "kind": "SecretProviderClass",
        "metadata": {"name": spec["app"], "namespace": dep["namespace"]},
        "spec": {
            "provider": "aws",
            "parameters": {"usePodIdentity": "true", "objects": json.dumps(objects)},
            "secretObjects": [{"secretName": spec["secret"], "type": "Opaque",
                               "data": [{"objectName": k, "key": k} for k in keys]}],
        },
    }


def security_group_policy(app, namespace, group_ids):
    return {
        "apiVersion": "vpcresources.k8s.aws/v1beta1",
        "kind": "SecurityGroupPolicy",
        "metadata": {"name": app, "namespace": namespace},
        "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": app}},
                 "securityGroups": {"groupIds": group_ids}},
    }


def deployment_patch(kind, cells):
    """The CSI volume (it syncs the Secret) and, on global, the shard tokens."""
    spec = SPEC[kind]
    container = {"name": spec["container"],
                 "volumeMounts": [{"name": "secrets-store", "mountPath": CSI_MOUNT, "readOnly": True}]}
    if kind == "global":
        # auth.next_signing_key: a blank secret means none (a rotation fills it).
        env, parts = [{"name": "CELLBANK__AUTH__NEXT_SIGNING_KEY", "valueFrom": {"secretKeyRef": {
            "name": spec["secret"], "key": "next-signing-key"}}}], []
        for i, shard in enumerate(sorted(cells)):
            var = f"CELLBANK_SHARD_TOKEN_{i}"
            env.append({"name": var, "valueFrom": {"secretKeyRef": {
                "name": spec["secret"], "key": f"{shard}-internal-token"}}})
            parts.append(f'{shard}="$({var})"')
        # auth.shard_tokens as a figment dict; each cell's token is alphanumeric.
        env.append({"name": "CELLBANK__AUTH__SHARD_TOKENS", "value": "{" + ",".join(parts) + "}"})
        container["env"] = env
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": spec["app"]},
        "spec": {"template": {"spec": {
            "containers": [container],
            "volumes": [{"name": "secrets-store", "csi": {
                "driver": "secrets-store.csi.k8s.io", "readOnly": True,
                "volumeAttributes": {"secretProviderClass": spec["app"]}}}],
        }}},
    }


def render(kind, overlay, dep, cells, out):
    spec = SPEC[kind]
    tag = overlay_tag(overlay, spec["app"])
    if tag != dep["image_tag"]:
        fail(f"{overlay} deploys {spec['app']}:{tag} but Terraform's release is {dep['image_tag']}: "
             f"re-render the overlay (render-shard.sh --image-tag) or fix the shards map")
    os.makedirs(out, exist_ok=True)
    files = {"secret-provider-class.json": secret_provider_class(kind, dep, cells),
             "security-group-policy.json": security_group_policy(spec["app"], dep["namespace"],
                                                                 dep["pod_security_group_ids"]),
             "deployment-patch.json": deployment_patch(kind, cells)}
    db_url = f"postgres://cellbank@{dep['database_address']}:{dep['database_port']}/cellbank"
    config_maps = [{"name": spec["infra"], "literals": [
        f"CELLBANK__KAFKA__BOOTSTRAP={dep['kafka_bootstrap']}",
        f"CELLBANK__DATABASE__URL={db_url}",
    ]}]
    if kind == "cell":
        if not dep.get("export_store_url", "").startswith("s3://"):
            fail(f"{dep['shard_id']}: the cell's outputs name no export_store_url (s3://bucket/prefix)")
        files["exporter-security-group-policy.json"] = security_group_policy(
            EXPORTER["app"], dep["namespace"], dep["exporter_pod_security_group_ids"])
        config_maps.append({"name": EXPORTER["infra"], "literals": [
            f"CELLBANK__KAFKA__BOOTSTRAP={dep['kafka_bootstrap']}",
            f"CELLBANK__EXPORT__STORE_URL={dep['export_store_url']}",
            # object_store's AmazonS3Builder::from_env signs for this region.
            f"AWS_REGION={dep['region']}",
        ]})
    for name, doc in files.items():
        with open(os.path.join(out, name), "w") as fh:
            json.dump(doc, fh, indent=2)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": dep["namespace"],
        "resources": [os.path.relpath(os.path.abspath(overlay), os.path.abspath(out)),
                      "secret-provider-class.json", "security-group-policy.json"]
        + (["exporter-security-group-policy.json"] if kind == "cell" else []),
        "configMapGenerator": config_maps,
        "patches": [{"path": "deployment-patch.json"}],
    }
    with open(os.path.join(out, "kustomization.yaml"), "w") as fh:
        json.dump(kustomization, fh, indent=2)
    print(f"render: {kind} {dep.get('shard_id', 'global')} -> {out} ({spec['app']}:{tag})")


def render_all(overlays, fixture, out):
    names = sorted(os.listdir(overlays))
    cells = {n: fixture["cells"][n] for n in names if n != "global"}
    missing = [n for n in names if n != "global" and n not in fixture["cells"]]
    if missing:
        fail(f"the fixture has no outputs for {missing}")
    for n in names:
        if n == "global":
            render("global", os.path.join(overlays, n), fixture["global"], cells, os.path.join(out, n))
        else:
            render("cell", os.path.join(overlays, n), fixture["cells"][n], {}, os.path.join(out, n))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=sorted(SPEC) + ["all"])
    p.add_argument("--overlay", required=True)
    p.add_argument("--deployment", required=True)
    p.add_argument("--cells")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    dep = json.load(open(a.deployment))
    if a.kind == "all":
        render_all(a.overlay, dep, a.out)
        return
    cells = json.load(open(a.cells)) if a.cells else {}
    if a.kind == "global" and not a.cells:
        fail("global needs --cells (each cell's internal token)")
    render(a.kind, a.overlay, dep, cells, a.out)


if __name__ == "__main__":
    main()
