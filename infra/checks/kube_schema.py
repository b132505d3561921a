"""`kubernetes-validate --strict` over every manifest as deployed: each document of
each rendered file is validated against the Kubernetes API's own OpenAPI schema for
the platform's version (modules/platform kubernetes_version), strictly, so an
unknown or misspelt field (a probe's `periodSecond`) fails instead of being
dropped by the API server. The three custom resources we write have no schema in
kubernetes-validate; each is validated against a schema here covering exactly the
fields we use, closed to anything else. Any other kind without a schema fails.

usage: kube_schema.py DIR...   (each DIR holds kustomize outputs, *.yaml; none may be empty)
"""

import glob
import os
import re
import sys

import jsonschema
import kubernetes_validate
import yaml

TF_PLATFORM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "terraform", "modules", "platform",
                           "variables.tf")


def k8s_version():
    """The EKS version Terraform creates, so the schemas follow an upgrade."""
    try:
        text = open(TF_PLATFORM).read()
    except OSError as e:
        raise SystemExit(f"kube-schema: cannot read the cluster's version: {e}")
    m = re.search(r'variable "kubernetes_version" \{.*?default\s*=\s*"([0-9]+\.[0-9]+)"', text, re.S)
    if not m:
        raise SystemExit(f"kube-schema: no default for variable kubernetes_version in {TF_PLATFORM}")
    return f"{m.group(1)}.0"


def closed(props, required=()):
    return {"type": "object", "additionalProperties": False, "properties": props, "required": list(required)}


STR = {"type": "string", "minLength": 1}
META = closed({"name": STR, "namespace": STR, "labels": {"type": "object"}, "annotations": {"type": "object"}},
              ["name"])

CRDS = {
    # Secrets Store CSI driver v1 (secrets-store.csi.x-k8s.io), AWS provider.
    ("secrets-store.csi.x-k8s.io/v1", "SecretProviderClass"): closed({
        "apiVersion": STR, "kind": STR, "metadata": META,
        "spec": closed({
            "provider": {"enum": ["aws"]},
            "parameters": closed({"usePodIdentity": {"enum": ["true"]}, "objects": STR}, ["objects"]),
            "secretObjects": {"type": "array", "items": closed({
                "secretName": STR, "type": {"enum": ["Opaque"]},
                "data": {"type": "array", "minItems": 1,
                         "items": closed({"objectName": STR, "key": STR}, ["objectName", "key"])},
            }, ["secretName", "type", "data"])},
        }, ["provider", "parameters", "secretObjects"]),
    }, ["apiVersion", "kind", "metadata", "spec"]),
    # VPC resource controller (pod security groups).
    ("vpcresources.k8s.aws/v1beta1", "SecurityGroupPolicy"): closed({
        "apiVersion": STR, "kind": STR, "metadata": META,
        "spec": closed({
            "podSelector": closed({"matchLabels": {"type": "object", "minProperties": 1}}, ["matchLabels"]),
            "securityGroups": closed({"groupIds": {"type": "array", "minItems": 1,
                                                   "items": {"type": "string", "pattern": "^sg-[0-9a-z]+$"}}},
                                     ["groupIds"]),
        }, ["podSelector", "securityGroups"]),
    }, ["apiVersion", "kind", "metadata", "spec"]),
    # cert-manager v1.
    ("cert-manager.io/v1", "ClusterIssuer"): closed({
        "apiVersion": STR, "kind": STR, "metadata": META,
        "spec": closed({"acme": closed({
            "server": {"type": "string", "pattern": "^https://"}, "email": STR,
            "privateKeySecretRef": closed({"name": STR}, ["name"]),
            "solvers": {"type": "array", "minItems": 1, "items": closed({"dns01": closed({
                "route53": closed({"region": STR, "hostedZoneID": STR}, ["region", "hostedZoneID"]),
            }, ["route53"])}, ["dns01"])},
        }, ["server", "privateKeySecretRef", "solvers"])}, ["acme"]),
    }, ["apiVersion", "kind", "metadata", "spec"]),
}


def check_doc(doc, version, used):
    key = (doc.get("apiVersion"), doc.get("kind"))
    if not all(isinstance(k, str) and k for k in key):
        return ["apiVersion and kind must both be set"]
    if key in CRDS:
        errors = sorted(jsonschema.Draft7Validator(CRDS[key]).iter_errors(doc), key=str)
        return [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors]
    try:
        used.add(kubernetes_validate.validate(doc, version, strict=True))
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {key[1]} ({key[0]}): add it to kube_schema.py's CRDS, or it is a typo"]
    except kubernetes_validate.ValidationError as e:
        path = ".".join(map(str, e.path))
        return [f"{path or '(top)'}: {e.message}"]
    return []


def main(dirs):
    if not dirs:
        print(__doc__, file=sys.stderr)
        return 2
    version = k8s_version()
    # Fail rather than fall back to older schemas: a field new in the cluster's
    # version would otherwise be reported as unknown, or a removed one accepted.
    newest = kubernetes_validate.latest_version()
    if [int(x) for x in version.split(".")[:2]] > [int(x) for x in newest.split(".")[:2]]:
        print(f"kube-schema: kubernetes-validate {kubernetes_validate.__version__} has no schemas for Kubernetes "
              f"{version} (newest {newest}): bump it in requirements-tools.txt",
              file=sys.stderr)
        return 1
    problems, n, used = [], 0, set()
    for d in dirs:
        before = n
        for f in sorted(glob.glob(os.path.join(d, "*.yaml"))):
            for doc in yaml.safe_load_all(open(f)):
                if not doc:
                    continue
                n += 1
                where = f"{os.path.basename(f)}: {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
                problems += [f"{where}: {p}" for p in check_doc(doc, version, used)]
        if n == before:
            problems.append(f"{d}: no documents to validate (did its render fail?)")
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    status = "FAIL" if problems else "ok"
    print(f"kube-schema: {status}: {n} documents, strict against Kubernetes {'/'.join(sorted(used)) or version} "
          f"(kubernetes-validate {kubernetes_validate.__version__}) and {len(CRDS)} custom-resource schemas; "
          f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
