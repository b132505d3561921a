"""Evaluates the rendered NetworkPolicies (Kubernetes semantics, matchLabels
selectors) to prove cell isolation: no shard's pods can reach another shard's
pods in either direction, while the paths the system needs stay open (global ->
each shard's API, each shard -> global's JWKS, ingress controller and Prometheus
-> both tiers) and an unrelated namespace reaches nothing. A cell's exporter serves
health and metrics only: Prometheus reaches it, nothing else does (not global, not
the ingress controller, not its own cell's shard), and it reaches no pod.

The trust boundary of the ops API is judged the same way: global's `ops` port is
open only to pods labelled cellbank.io/operator=true in a namespace labelled the
same, and closed to the ingress controller, Prometheus, every shard, and to an
operator-labelled pod in an unlabelled namespace; and no Ingress routes to a
Service port that lands on it.

usage: isolation.py DIR...   (each DIR holds <overlay>.yaml kustomize outputs)
"""

import glob
import os
import sys

import yaml

# Namespaces outside our manifests that the policies name.
EXTERNAL = ["ingress-nginx", "monitoring", "kube-system", "observability", "default"]
OPERATOR = {"cellbank.io/operator": "true"}
# An operators' namespace (cellctl runs there), labelled for the ops port.
OPERATOR_NS = "cellbank-operators"
# Workloads that serve only probes and /metrics: Prometheus alone may reach them.
METRICS_ONLY = {"cellbank-exporter"}


class Unsupported(Exception):
    pass


def selects(selector, labels):
    if selector is None:
        return True
    if selector.get("matchExpressions"):
        raise Unsupported("matchExpressions are not evaluated; use matchLabels")
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def load(dirs):
    namespaces = {n: {"kubernetes.io/metadata.name": n} for n in EXTERNAL}
    namespaces[OPERATOR_NS] = {"kubernetes.io/metadata.name": OPERATOR_NS, **OPERATOR}
    pods = [  # (namespace, labels, ports {name: number})
        ("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}, {}),
        ("monitoring", {"app.kubernetes.io/name": "prometheus"}, {}),
        ("default", {"app": "stranger"}, {}),
        (OPERATOR_NS, {"app.kubernetes.io/name": "cellctl", **OPERATOR}, {}),
        # Neither half of the operator rule is enough on its own.
        (OPERATOR_NS, {"app": "unlabelled-debug-pod"}, {}),
        ("default", {"app": "self-declared-operator", **OPERATOR}, {}),
    ]
    policies, services, ingresses = [], [], []
    for d in dirs:
        for path in sorted(glob.glob(os.path.join(d, "*.yaml"))):
            with open(path) as fh:
                for doc in yaml.safe_load_all(fh):
                    if not doc:
                        continue
                    kind, meta = doc["kind"], doc["metadata"]
                    if kind == "Namespace":
                        namespaces[meta["name"]] = {**meta.get("labels", {}), "kubernetes.io/metadata.name": meta["name"]}
                    elif kind == "Deployment":
                        tmpl = doc["spec"]["template"]
                        ports = {}
                        for c in tmpl["spec"]["containers"]:
                            for p in c.get("ports", []):
                                ports[p.get("name", str(p["containerPort"]))] = p["containerPort"]
                        pods.append((meta["namespace"], tmpl["metadata"].get("labels", {}), ports))
                    elif kind == "NetworkPolicy":
                        policies.append(doc)
                    elif kind == "Service":
                        services.append(doc)
                    elif kind == "Ingress":
                        ingresses.append(doc)
    return namespaces, pods, policies, services, ingresses


def peer_matches(peer, policy_ns, pod, namespaces):
    ns, labels, _ = pod
    if "ipBlock" in peer:
        return False  # pod-to-pod traffic is judged by selectors, not CIDRs
    ns_sel = peer.get("namespaceSelector")
    pod_sel = peer.get("podSelector")
    if ns_sel is None:
        return ns == policy_ns and selects(pod_sel, labels)
    return selects(ns_sel, namespaces.get(ns, {})) and selects(pod_sel, labels)


def port_matches(rule, port, dst_ports):
    if not rule.get("ports"):
        return True
    for p in rule["ports"]:
        want = p.get("port")
        if want is None or want == port or dst_ports.get(want) == port:
            return True
    return False


def allowed(direction, subject, other, port, policies, namespaces):
    """Does `subject`'s policy set admit traffic in `direction` with `other` on `port`?"""
    ns, labels, ports = subject
    key = "ingress" if direction == "Ingress" else "egress"
    relevant = [p for p in policies if p["metadata"]["namespace"] == ns
                and direction in p["spec"].get("policyTypes", ["Ingress"])
                and selects(p["spec"].get("podSelector", {}), labels)]
    if not relevant:
        return True
    for p in relevant:
        for rule in p["spec"].get(key, []) or []:
            peers = rule.get("from" if key == "ingress" else "to")
            if peers is not None and not any(peer_matches(x, ns, other, namespaces) for x in peers):
                continue
            dst_ports = ports if key == "ingress" else other[2]
            if port_matches(rule, port, dst_ports):
                return True
    return False


def can_reach(src, dst, port, policies, namespaces):
    return (allowed("Egress", src, dst, port, policies, namespaces)
            and allowed("Ingress", dst, src, port, policies, namespaces))


def is_operator(pod, namespaces):
    ns, labels, _ = pod
    return selects({"matchLabels": OPERATOR}, labels) and selects({"matchLabels": OPERATOR}, namespaces.get(ns, {}))


def wanted(src, dst, port_name, namespaces):
    """Whether src should reach dst's port `port_name` (http: the API; ops: global's ops API)."""
    tier = lambda pod: namespaces.get(pod[0], {}).get("cellbank.io/tier")  # noqa: E731
    src_tier, dst_tier = tier(src), tier(dst)
    if dst[1].get("app.kubernetes.io/name") in METRICS_ONLY:
        return src[0] == "monitoring"
    if src[1].get("app.kubernetes.io/name") in METRICS_ONLY:
        return False
    if port_name == "ops":
        return dst_tier == "global" and is_operator(src, namespaces)
    if src_tier == "shard" and dst_tier == "shard" and src[0] != dst[0]:
        return False
    if dst_tier == "shard":
        return src_tier == "global" or src[0] in ("ingress-nginx", "monitoring")
    return src_tier == "shard" or src[0] in ("ingress-nginx", "monitoring")


def ingress_to_ops(pods, services, ingresses):
    """Ingress backends that land on a container port named `ops`."""
    problems = []
    for ing in ingresses:
        ns = ing["metadata"]["namespace"]
        backends = [p["backend"] for r in ing["spec"].get("rules", []) for p in r.get("http", {}).get("paths", [])]
        if ing["spec"].get("defaultBackend"):
            backends.append(ing["spec"]["defaultBackend"])
        for b in backends:
            want = b.get("service", {})
            ref = want.get("port", {}).get("name", want.get("port", {}).get("number"))
            for svc in services:
                if svc["metadata"]["namespace"] != ns or svc["metadata"]["name"] != want.get("name"):
                    continue
                for sp in svc["spec"]["ports"]:
                    if ref not in (sp.get("name"), sp.get("port")):
                        continue
                    target = sp.get("targetPort", sp.get("port"))
                    for pns, labels, ports in pods:
                        if pns != ns or not selects({"matchLabels": svc["spec"].get("selector", {})}, labels):
                            continue
                        if target == "ops" or ("ops" in ports and target == ports["ops"]):
                            problems.append(f"Ingress {ns}/{ing['metadata']['name']} routes to Service "
                                            f"{svc['metadata']['name']}:{ref}, which is global's ops port")
    return problems


def main(dirs):
    namespaces, pods, policies, services, ingresses = load(dirs)
    problems = []
    tier = lambda pod: namespaces.get(pod[0], {}).get("cellbank.io/tier")  # noqa: E731
    shards = [p for p in pods if tier(p) == "shard"]
    cells = {p[0] for p in shards}
    globals_ = [p for p in pods if tier(p) == "global"]
    if len(cells) < 2 or not globals_:
        problems.append(f"need the global tier and at least two shards to judge isolation, found {len(cells)} shards")
    exporters = [p for p in shards if p[1].get("app.kubernetes.io/name") in METRICS_ONLY]
    if {p[0] for p in exporters} != cells:
        problems.append(f"every cell runs an exporter, found them in {sorted({p[0] for p in exporters})} of {sorted(cells)}")
    if globals_ and not all("ops" in g[2] for g in globals_):
        problems.append("global declares no container port named ops: the ops API's boundary cannot be judged")
    pairs = 0
    try:
        for dst in shards + globals_:
            for port_name, port in dst[2].items():
                if port_name not in ("http", "ops"):
                    problems.append(f"{dst[0]}: container port {port_name} ({port}) is neither http nor ops")
                    continue
                for src in pods:
                    if src is dst:
                        continue
                    ok = can_reach(src, dst, port, policies, namespaces)
                    want = wanted(src, dst, port_name, namespaces)
                    pairs += 1
                    if ok != want:
                        who = src[0] if src[0] != dst[0] else f"{src[0]} ({src[1]})"
                        problems.append(f"{who} -> {dst[0]}:{port} ({port_name}) is {'open' if ok else 'closed'}, "
                                        f"should be {'open' if want else 'closed'}")
            # Any other port is closed to everyone.
            for closed in {p + 1 for p in dst[2].values()} - set(dst[2].values()):
                for src in pods:
                    if src is not dst and can_reach(src, dst, closed, policies, namespaces):
                        problems.append(f"{src[0]} -> {dst[0]}:{closed} is open")
    except Unsupported as e:
        problems.append(str(e))
    problems += ingress_to_ops(pods, services, ingresses)
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    status = "FAIL" if problems else "ok"
    print(f"isolation: {status}: {len(cells)} shards ({len(exporters)} exporters), {pairs} pod-to-port paths judged against "
          f"{len(policies)} NetworkPolicies (ops port: operators only); {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
