"""Evaluates the rendered NetworkPolicies (Kubernetes semantics, matchLabels
selectors) to prove cell isolation: no shard's pods can reach another shard's
pods in either direction, while the paths the system needs stay open (global ->
each shard's API, each shard -> global's JWKS, ingress controller and Prometheus
-> both tiers) and an unrelated namespace reaches nothing.

usage: isolation.py DIR...   (each DIR holds <overlay>.yaml kustomize outputs)
"""

import glob
import os
import sys

import yaml

# Namespaces outside our manifests that the policies name.
EXTERNAL = ["ingress-nginx", "monitoring", "kube-system", "observability", "default"]


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
    pods = [  # (namespace, labels, ports {name: number})
        ("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}, {}),
        ("monitoring", {"app.kubernetes.io/name": "prometheus"}, {}),
        ("default", {"app": "stranger"}, {}),
    ]
    policies = []
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
    return namespaces, pods, policies


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


def main(dirs):
    namespaces, pods, policies = load(dirs)
    problems = []
    tier = lambda pod: namespaces.get(pod[0], {}).get("cellbank.io/tier")  # noqa: E731
    shards = [p for p in pods if tier(p) == "shard"]
    globals_ = [p for p in pods if tier(p) == "global"]
    if len(shards) < 2 or not globals_:
        problems.append(f"need the global tier and at least two shards to judge isolation, found {len(shards)} shards")
    pairs = 0
    try:
        for dst in shards + globals_:
            port = next(iter(dst[2].values()))
            for src in pods:
                if src is dst:
                    continue
                ok = can_reach(src, dst, port, policies, namespaces)
                src_tier, dst_tier = tier(src), tier(dst)
                if src_tier == "shard" and dst_tier == "shard" and src[0] != dst[0]:
                    want = False
                elif dst_tier == "shard":
                    want = src_tier == "global" or src[0] in ("ingress-nginx", "monitoring")
                else:  # global
                    want = src_tier == "shard" or src[0] in ("ingress-nginx", "monitoring")
                pairs += 1
                if ok != want:
                    problems.append(f"{src[0]} -> {dst[0]}:{port} is {'open' if ok else 'closed'}, "
                                    f"should be {'open' if want else 'closed'}")
            # Any other port is closed to everyone.
            for src in pods:
                if src is not dst and can_reach(src, dst, port + 1, policies, namespaces):
                    problems.append(f"{src[0]} -> {dst[0]}:{port + 1} is open")
    except Unsupported as e:
        problems.append(str(e))
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    status = "FAIL" if problems else "ok"
    print(f"isolation: {status}: {len(shards)} shards, {pairs} pod-to-pod paths judged against "
          f"{len(policies)} NetworkPolicies; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
