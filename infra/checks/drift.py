"""No drift between the manifests and the binaries.

Every CELLBANK__* variable the Kubernetes manifests, the Terraform and the
Dockerfiles set must be one the binary prints with `<bin> config-keys`; the keys a
binary cannot start without must be set; each listener has one named container
port (http = CELLBANK__SERVER__PORT; on global also ops = CELLBANK__OPS__PORT),
probes and the scrape annotation name the http port, Services and NetworkPolicies
name only those ports, and the Dockerfile's ENV/EXPOSE and Terraform's
local.app_port/ops_port/exporter_port are the same ports. Secrets and ConfigMaps the workloads reference must
be ones the rollout writes (with those keys): the infra ConfigMap it generates and
the Secret its SecretProviderClass syncs (infra/rollout/render.py). The shard
overlays must match the Terraform shard set.

A container runs its image's ENTRYPOINT, or the binary its `command` names, which
must be one its image ships (the exporter rides in the shard's image, and its
Dockerfile must build it). The exporter runs as one pod (replicas 1, Recreate, no
HPA), for its cell (CELLBANK__SHARD__ID), into an s3:// store. An egress ipBlock is
the platform's data subnets, HTTPS anywhere outside the VPC (S3 has no fixed
addresses), or the EKS Pod Identity agent's address on TCP 80, and nothing else.

usage: drift.py --global-bin PATH --shard-bin PATH --exporter-bin PATH --rendered DIR [--bins-json FILE]
  --rendered: one <overlay>.yaml per overlay, as infra/rollout.sh deploys it
              (render.py's kustomization around the overlay, built by kustomize)
  --bins-json: `cargo metadata --no-deps --format-version 1` output (checks the
               Dockerfiles build binaries that exist)
"""

import argparse
import fnmatch
import glob
import ipaddress
import json
import os
import re
import subprocess
import sys

import yaml

from tfmodel import module as Module, load_tfvars, unq

INFRA = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
TF = os.path.join(INFRA, "terraform")
K8S = os.path.join(INFRA, "k8s")
DOCKER = os.path.join(INFRA, "docker")

# Keys a binary refuses to start without (notes/contract.md), and the host/port
# Kubernetes must set explicitly.
REQUIRED = {
    "global": ["SERVER__HOST", "SERVER__PORT", "OPS__HOST", "OPS__PORT", "DATABASE__URL", "KAFKA__BOOTSTRAP",
               "AUTH__SIGNING_KEY", "AUTH__PAN_HMAC_KEY", "AUTH__ADMIN_TOKEN", "AUTH__SHARD_TOKENS"],
    "shard": ["SERVER__HOST", "SERVER__PORT", "DATABASE__URL", "KAFKA__BOOTSTRAP", "SHARD__ID",
              "SHARD__PUBLIC_URL", "GLOBAL__URL", "AUTH__ADMIN_TOKEN", "AUTH__INTERNAL_TOKEN"],
    "exporter": ["SERVER__HOST", "SERVER__PORT", "SHARD__ID", "KAFKA__BOOTSTRAP", "EXPORT__STORE_URL"],
}
BINARY = {"global": "cellbank-global", "shard": "cellbank-shard", "exporter": "cellbank-exporter"}
# The image each binary ships in, by its Dockerfile: docker/<name>.Dockerfile builds
# the image cellbank-<name>, whose ENTRYPOINT is the binary of the same kind.
IMAGE = {"global": "global", "shard": "shard", "exporter": "shard"}
# Variables besides CELLBANK__* a binary reads: the exporter's S3 client
# (object_store's AmazonS3Builder::from_env) takes its region from AWS_REGION.
OTHER_ENV = {"exporter": {"AWS_REGION"}}
# The listeners of each binary: container port name -> the (host, port) settings.
# Global serves its ops API on a second listener that only operators reach.
LISTENERS = {
    "global": {"http": ("CELLBANK__SERVER__HOST", "CELLBANK__SERVER__PORT"),
               "ops": ("CELLBANK__OPS__HOST", "CELLBANK__OPS__PORT")},
    "shard": {"http": ("CELLBANK__SERVER__HOST", "CELLBANK__SERVER__PORT")},
    "exporter": {"http": ("CELLBANK__SERVER__HOST", "CELLBANK__SERVER__PORT")},
}
KEY = re.compile(r"\bCELLBANK__[A-Z0-9_]+\b")

errors = []
checked = {"env": 0, "ports": 0}


def err(msg):
    errors.append(msg)


def config_keys(kind, path):
    """`<bin> config-keys`, or a loud failure: the drift check never skips."""
    if not path or not os.path.isfile(path):
        err(f"{BINARY[kind]}: binary {path!r} not found, so its config-keys cannot be compared "
            f"(does the crate have its main.rs and `config-keys` yet?)")
        return None
    try:
        out = subprocess.run([path, "config-keys"], capture_output=True, text=True, timeout=60,
                             env={"PATH": os.environ.get("PATH", "")})
    except (OSError, subprocess.TimeoutExpired) as e:
        err(f"{BINARY[kind]} config-keys could not run: {e}")
        return None
    keys = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    if out.returncode != 0 or not keys or not all(KEY.fullmatch(k) for k in keys):
        err(f"{BINARY[kind]} config-keys did not print CELLBANK__* keys one per line "
            f"(exit {out.returncode}): {(out.stdout + out.stderr).strip()[:300]!r}")
        return None
    return set(keys)


def kind_of_image(image):
    """The Dockerfile (global, shard) an image is built from."""
    for kind in sorted(set(IMAGE.values())):
        if re.search(rf"(^|/){BINARY[kind]}([:@]|$)", image):
            return kind
    return None


def kind_of(container):
    """(kind, problem): the binary a container runs, its image's ENTRYPOINT unless
    its `command` names another binary the same image ships."""
    image = kind_of_image(container.get("image", ""))
    if image is None:
        return None, f"image {container.get('image')!r} is neither {' nor '.join(BINARY[k] for k in sorted(set(IMAGE.values())))}"
    command = container.get("command")
    if not command:
        return image, None
    for kind, name in BINARY.items():
        if command[0] == f"/usr/local/bin/{name}" and IMAGE[kind] == image:
            return kind, None
    return None, f"command {command[0]!r} is no binary the {BINARY[image]} image ships"


# ---------------------------------------------------------------- Terraform side

def map_keys(obj, out):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if KEY.fullmatch(k):
                out.add(k)
            map_keys(v, out)
    elif isinstance(obj, list):
        for v in obj:
            map_keys(v, out)


def terraform_objects():
    """What Terraform says the workloads must agree with, by (module kind, what, module)."""
    found = {}
    for kind, mod_dir in (("shard", "cell"), ("global", "global")):
        mod = Module(os.path.join(TF, "modules", mod_dir))
        # Any CELLBANK__ map key in any resource of the module (env maps, ConfigMap data).
        keys = found.setdefault((kind, "hcl-keys", mod_dir), set())
        for _, _, body in mod.resources:
            map_keys(body, keys)
        found[(kind, "app_port", mod_dir)] = {mod.locals.get("app_port")}
        if "ops_port" in mod.locals:
            found[(kind, "ops_port", mod_dir)] = {mod.locals.get("ops_port")}
        if mod_dir == "cell":
            found[("shard", "global_url", mod_dir)] = {unq(mod.variables["global_internal_url"].get("default"))}
            # Its exporter's listener (the security group admits it from the cluster).
            found[("exporter", "exporter_port", mod_dir)] = {mod.locals.get("exporter_port")}
    return found


def synced_secrets(docs):
    """Secret name -> keys, for every Secret a SecretProviderClass syncs."""
    out = {}
    for d in docs:
        if d["kind"] == "SecretProviderClass":
            for so in d["spec"].get("secretObjects", []):
                out.setdefault(so["secretName"], set()).update(x["key"] for x in so.get("data", []))
    return out


# ---------------------------------------------------------------- Kubernetes side

def load_rendered(rendered):
    out = {}
    for path in sorted(glob.glob(os.path.join(rendered, "*.yaml"))):
        name = os.path.basename(path)[: -len(".yaml")]
        with open(path) as fh:
            out[name] = [d for d in yaml.safe_load_all(fh) if d]
    if not out:
        err(f"no rendered overlays in {rendered}")
    return out


def port_of(container, ref):
    for p in container.get("ports", []):
        if ref in (p.get("name"), p.get("containerPort")):
            return p.get("containerPort")
    return None


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).get("matchLabels", {}).items())


def check_overlay(name, docs, keys, tf, seen_ports):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in by_kind.get("ConfigMap", [])}
    secrets = synced_secrets(docs)
    deployments = by_kind.get("Deployment", [])
    if not deployments:
        err(f"{name}: no Deployment")
    for dep in deployments:
        pod = dep["spec"]["template"]
        for c in pod["spec"]["containers"]:
            where = f"{name}: Deployment {dep['metadata']['name']} container {c['name']}"
            kind, problem = kind_of(c)
            if kind is None:
                err(f"{where}: {problem}")
                continue
            known = keys.get(kind)
            env = {}
            for e in c.get("env", []):
                env[e["name"]] = e.get("value")
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    have = secrets.get(ref["name"])
                    if have is None:
                        err(f"{where}: {e['name']} reads Secret {ref['name']}, which no SecretProviderClass syncs")
                    elif ref["key"] not in have:
                        err(f"{where}: {e['name']} reads key {ref['key']!r} of Secret {ref['name']}, "
                            f"which its SecretProviderClass syncs with keys {sorted(have)}")
            for src in c.get("envFrom", []):
                cm = (src.get("configMapRef") or {}).get("name")
                if cm is None:
                    err(f"{where}: envFrom other than configMapRef is not checked; use explicit env")
                    continue
                if cm in config_maps:
                    for k, v in config_maps[cm].items():
                        env.setdefault(k, v)
                else:
                    err(f"{where}: envFrom ConfigMap {cm} is neither in the overlay nor generated by the rollout")
            # A downward-API variable (the pod's own address) or a secret (one
            # cell's token) may exist only to be interpolated as $(NAME) into a
            # CELLBANK__ value.
            helpers = {e["name"] for e in c.get("env", [])
                       if (e.get("valueFrom") or {}).get("fieldRef") or (e.get("valueFrom") or {}).get("secretKeyRef")}
            for k in env:
                checked["env"] += 1
                if k in helpers and any(f"$({k})" in (v or "") for v in env.values()):
                    continue
                if k in OTHER_ENV.get(kind, ()):
                    continue
                if not k.startswith("CELLBANK__"):
                    err(f"{where}: sets {k}, which the binary does not read (only CELLBANK__* configure it)")
                elif known is not None and k not in known:
                    err(f"{where}: sets {k}, which {BINARY[kind]} config-keys does not list")
            for r in REQUIRED[kind]:
                if f"CELLBANK__{r}" not in env:
                    err(f"{where}: CELLBANK__{r} is not set, and {BINARY[kind]} cannot start without it")
                if known is not None and f"CELLBANK__{r}" not in known:
                    err(f"{BINARY[kind]} config-keys does not list CELLBANK__{r}, which the contract requires")
            # Ports: one per listener, named as in LISTENERS, and everything names them.
            listeners = LISTENERS[kind]
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            if set(ports) != set(listeners) or len(c.get("ports", [])) != len(listeners):
                err(f"{where}: expected exactly the container ports {sorted(listeners)} (one per listener), "
                    f"found {sorted(map(str, ports))}")
                continue
            for pname, (host_key, port_key) in listeners.items():
                checked["ports"] += 1
                if str(env.get(port_key)) != str(ports[pname]):
                    err(f"{where}: containerPort {ports[pname]} but {port_key}={env.get(port_key)}")
                if env.get(host_key) not in ("0.0.0.0", "::"):
                    err(f"{where}: {host_key} must be 0.0.0.0 in a pod (the binary defaults to loopback)")
                seen_ports.setdefault((kind, pname), set()).add(ports[pname])
            if len(set(ports.values())) != len(ports):
                err(f"{where}: the listeners share a port {sorted(ports.values())}")
            port = ports["http"]
            # The router keeps serving from its cache when the directory is down
            # (static stability), so its readiness probe accepts "degraded".
            ready = "/readyz?allow_degraded=true" if kind == "global" else "/readyz"
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", ready),
                                ("startupProbe", "/healthz")):
                p = c.get(probe)
                if p is None:
                    if probe != "startupProbe":
                        err(f"{where}: no {probe}")
                    continue
                get = p.get("httpGet") or {}
                if get.get("path") != path:
                    err(f"{where}: {probe} must GET {path}, found {get.get('path')!r}")
                if port_of(c, get.get("port")) != port:
                    err(f"{where}: {probe} port {get.get('port')!r} is not the container's port {port}")
            ann = pod["metadata"].get("annotations", {})
            if ann.get("prometheus.io/port") not in (None, str(port)):
                err(f"{where}: prometheus.io/port {ann['prometheus.io/port']} is not {port}")
            if ann.get("prometheus.io/path") not in (None, "/metrics"):
                err(f"{where}: prometheus.io/path must be /metrics")
            labels = pod["metadata"].get("labels", {})
            services = [s for s in by_kind.get("Service", []) if labels_match({"matchLabels": s["spec"].get("selector", {})}, labels)]
            if not services:
                err(f"{where}: no Service selects these pods")
            for s in services:
                for sp in s["spec"]["ports"]:
                    if port_of(c, sp.get("targetPort", sp.get("port"))) not in ports.values():
                        err(f"{name}: Service {s['metadata']['name']} targetPort {sp.get('targetPort')!r} is not "
                            f"one of the container's ports {sorted(ports.values())}")
            policies = [p for p in by_kind.get("NetworkPolicy", []) if labels_match(p["spec"].get("podSelector"), labels)
                        and p["spec"].get("ingress")]
            if not policies:
                err(f"{where}: no NetworkPolicy admits traffic to these pods")
            for p in policies:
                for rule in p["spec"]["ingress"]:
                    for rp in rule.get("ports", []):
                        if rp.get("port") not in ports.values():
                            err(f"{name}: NetworkPolicy {p['metadata']['name']} admits port {rp.get('port')}, "
                                f"not {' or '.join(map(str, sorted(ports.values())))}")
            if kind in ("shard", "exporter"):
                shard_id = env.get("CELLBANK__SHARD__ID")
                if shard_id != name:
                    err(f"{where}: CELLBANK__SHARD__ID={shard_id!r} in overlay {name}")
                ns = {d.get("metadata", {}).get("namespace") for d in docs if d["kind"] != "Namespace"}
                if ns != {f"cellbank-{name}"}:
                    err(f"{name}: objects are in namespaces {sorted(map(str, ns))}, expected cellbank-{name}")
            if kind == "exporter":
                check_single_exporter(where, dep, by_kind.get("HorizontalPodAutoscaler", []))
                store = env.get("CELLBANK__EXPORT__STORE_URL") or ""
                if not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]+[a-z0-9]/[a-z0-9][a-z0-9_-]*", store):
                    err(f"{where}: CELLBANK__EXPORT__STORE_URL={store!r} is not s3://<bucket>/<prefix> "
                        f"(Terraform's export_store_url, which its role may write)")
            if kind == "shard":
                want = next(iter(tf.get(("shard", "global_url", "cell"), {None})))
                if env.get("CELLBANK__GLOBAL__URL") != want:
                    err(f"{where}: CELLBANK__GLOBAL__URL={env.get('CELLBANK__GLOBAL__URL')!r} but Terraform's "
                        f"global_internal_url is {want!r}")
    return by_kind


def check_single_exporter(where, dep, hpas):
    """Two exporters of a cell would race each other's checkpoint: one pod, and a
    rollout that stops it before it starts the next."""
    spec = dep["spec"]
    if spec.get("replicas") != 1:
        err(f"{where}: replicas {spec.get('replicas')!r}, but a cell's exporter runs as exactly 1 pod")
    if (spec.get("strategy") or {}).get("type") != "Recreate":
        err(f"{where}: strategy {(spec.get('strategy') or {}).get('type')!r}: the exporter must be Recreate "
            f"(a rolling update runs two at once)")
    for h in hpas:
        if h["spec"]["scaleTargetRef"].get("name") == dep["metadata"]["name"]:
            err(f"{where}: HorizontalPodAutoscaler {h['metadata']['name']} scales the exporter")


# Where a pod fetches the credentials of its EKS Pod Identity role: the agent on
# the node, at this link-local address, on TCP 80.
POD_IDENTITY_AGENT = "169.254.170.23/32"


def https_outside_vpc(rule, peer, vpc):
    """An ipBlock for S3: 0.0.0.0/0 on TCP 443 only, with the whole VPC excepted."""
    block = peer["ipBlock"]
    excepted = [ipaddress.ip_network(e) for e in block.get("except", [])]
    ports = [(p.get("protocol", "TCP"), p.get("port")) for p in rule.get("ports", [])]
    return (block["cidr"] == "0.0.0.0/0" and ports == [("TCP", 443)]
            and any(e.supernet_of(vpc) for e in excepted))


def pod_identity_agent(rule, peer):
    ports = [(p.get("protocol", "TCP"), p.get("port")) for p in rule.get("ports", [])]
    return peer["ipBlock"]["cidr"] == POD_IDENTITY_AGENT and not peer["ipBlock"].get("except") and ports == [("TCP", 80)]


def check_egress_cidr(rendered_docs):
    """The NetworkPolicies' data-subnet ipBlock must be the platform's data /18; the
    only other one is HTTPS outside the VPC (S3)."""
    mod = Module(os.path.join(TF, "modules", "platform"))
    vpc = unq(mod.variables["vpc_cidr"]["default"])
    m = re.fullmatch(r"\$\{cidrsubnet\(var\.vpc_cidr, (\d+), (\d+)\)\}", mod.locals["data_cidr"])
    if not m:
        err("terraform/modules/platform: local.data_cidr is not cidrsubnet(var.vpc_cidr, N, I)")
        return
    net = ipaddress.ip_network(vpc)
    data = list(net.subnets(prefixlen_diff=int(m.group(1))))[int(m.group(2))]
    for name, docs in rendered_docs.items():
        for d in docs:
            if d["kind"] != "NetworkPolicy":
                continue
            for rule in d["spec"].get("egress", []):
                for peer in rule.get("to", []):
                    if "ipBlock" not in peer or peer["ipBlock"]["cidr"] == str(data):
                        continue
                    if not (https_outside_vpc(rule, peer, net) or pod_identity_agent(rule, peer)):
                        err(f"{name}: NetworkPolicy {d['metadata']['name']} ipBlock {peer['ipBlock']['cidr']} "
                            f"is not the platform's data subnets {data}, nor HTTPS (TCP 443 only) outside the "
                            f"VPC {net} (except it), nor the Pod Identity agent {POD_IDENTITY_AGENT} on TCP 80")


# ---------------------------------------------------------------- Dockerfiles

def ignored(path, patterns):
    """Whether .dockerignore `patterns` (in order, `!` re-includes) exclude `path`."""
    state = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat.lstrip("!").strip("/")
        if pat.startswith("**/"):
            hit = any(fnmatch.fnmatch(p.split("/")[-1], pat[3:]) for p in prefixes)
        else:
            hit = any(fnmatch.fnmatch(p, pat) for p in prefixes)
        if hit:
            state = not neg
    return state


def check_dockerfiles(keys, seen_ports, bins, members):
    for kind in sorted(set(IMAGE.values())):
        binary = BINARY[kind]
        shipped = [k for k in BINARY if IMAGE[k] == kind]
        path = os.path.join(DOCKER, f"{kind}.Dockerfile")
        if not os.path.exists(path):
            err(f"docker/{kind}.Dockerfile is missing")
            continue
        text = open(path).read()
        expose = [int(p) for line in re.findall(r"^EXPOSE\s+(.+)$", text, re.M) for p in re.findall(r"\d+", line)]
        # One ENV setting and one EXPOSE per listener, in LISTENERS order (http first).
        env_ports = []
        for pname, (_, port_key) in LISTENERS[kind].items():
            found = re.findall(rf"{port_key}=(\d+)", text)
            if len(found) != 1:
                err(f"docker/{kind}.Dockerfile: sets {port_key} {len(found)} times, expected once")
                continue
            env_ports.append(int(found[0]))
            want = seen_ports.get((kind, pname))
            if want and want != {int(found[0])}:
                err(f"docker/{kind}.Dockerfile: {port_key}={found[0]} (EXPOSE {expose}) but the manifests use {sorted(want)}")
        if expose != env_ports:
            err(f"docker/{kind}.Dockerfile: EXPOSE {expose} must be the listeners' ports {env_ports}, in that order")
        # The image's ENV reaches every binary it ships.
        for k in sorted(set(KEY.findall(text))):
            for b in shipped:
                if keys.get(b) is not None and k not in keys[b]:
                    err(f"docker/{kind}.Dockerfile: {k} is not in {BINARY[b]} config-keys")
        entry = re.search(r'^ENTRYPOINT \["/usr/local/bin/([\w-]+)"', text, re.M)
        if not entry or entry.group(1) != binary:
            err(f"docker/{kind}.Dockerfile: ENTRYPOINT must run /usr/local/bin/{binary}")
        if not re.search(r"^USER\s+(?!0\b|root\b)\S+", text, re.M):
            err(f"docker/{kind}.Dockerfile: the runtime stage must run as a non-root USER")
        toolchain = re.search(r'channel\s*=\s*"([^"]+)"', open(os.path.join(INFRA, "..", "rust-toolchain.toml")).read())
        if toolchain and f"FROM rust:{toolchain.group(1)}-" not in text:
            err(f"docker/{kind}.Dockerfile: builder image must be rust:{toolchain.group(1)} (rust-toolchain.toml)")
        ignore_file = f"{path}.dockerignore"
        if not os.path.exists(ignore_file):
            err(f"docker/{kind}.Dockerfile: no {os.path.basename(ignore_file)} (target/ would be sent as context)")
        else:
            patterns = [line.strip() for line in open(ignore_file) if line.strip() and not line.startswith("#")]
            for member in members or []:
                if ignored(member, patterns):
                    err(f"docker/{kind}.Dockerfile.dockerignore excludes workspace member {member}: cargo cannot load the workspace")
            if not ignored("target", patterns):
                err(f"docker/{kind}.Dockerfile.dockerignore must exclude target/")
        built = set(re.findall(r"--bin ([\w-]+)", text))
        for b in shipped:
            if BINARY[b] not in built:
                err(f"docker/{kind}.Dockerfile: does not build --bin {BINARY[b]}")
            elif not re.search(rf"/out/{BINARY[b]}\b", text):
                err(f"docker/{kind}.Dockerfile: builds {BINARY[b]} but does not install it into /out/")
        if bins is not None:
            for b in sorted(built):
                if b not in bins:
                    err(f"docker/{kind}.Dockerfile: --bin {b} is not a binary target of the workspace ({sorted(bins)})")


# ---------------------------------------------------------------- routes

CRATE = {"global": "global", "shard": "shard", "exporter": "shard/exporter"}


def check_routes(rendered_docs):
    """Probe and scrape paths must be routes the crate registers (`.route("/x", ...)`)."""
    routes = {}
    for kind, crate in CRATE.items():
        text = ""
        for path in glob.glob(os.path.join(INFRA, "..", crate, "src", "**", "*.rs"), recursive=True):
            text += open(path).read()
        routes[kind] = set(re.findall(r'\.route\(\s*"([^"]+)"', text))
        if not routes[kind]:
            err(f"no routes found in {crate}/src: cannot check probe and Ingress paths")
    for name, docs in rendered_docs.items():
        for d in docs:
            if d["kind"] == "Ingress":
                kind = "global" if name == "global" else "shard"
                for rule in d["spec"].get("rules", []):
                    for path in rule.get("http", {}).get("paths", []):
                        if not any(r.startswith(path["path"]) for r in routes[kind]):
                            err(f"{name}: Ingress path {path['path']} matches no route of the {CRATE[kind]} crate")
            if d["kind"] != "Deployment":
                continue
            pod = d["spec"]["template"]
            paths = {pod["metadata"].get("annotations", {}).get("prometheus.io/path")}
            for c in pod["spec"]["containers"]:
                kind, _ = kind_of(c)
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    path = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
                    paths.add(path.split("?", 1)[0] if path else path)
                if kind is None:
                    continue
                for p in sorted(x for x in paths if x):
                    if p not in routes[kind]:
                        err(f"{name}: {p} is not a route of the {CRATE[kind]} crate "
                            f"(routes: {sorted(routes[kind])[:12]}...)")


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--global-bin")
    ap.add_argument("--shard-bin")
    ap.add_argument("--exporter-bin")
    ap.add_argument("--rendered", required=True)
    ap.add_argument("--bins-json")
    a = ap.parse_args()

    bins = None
    members = None
    if a.bins_json:
        meta = json.load(open(a.bins_json))
        root = meta["workspace_root"]
        members = sorted(os.path.relpath(os.path.dirname(p["manifest_path"]), root) for p in meta["packages"])
        bins = {t["name"] for p in meta["packages"] for t in p["targets"] if "bin" in t["kind"]}
        for kind, name in BINARY.items():
            if name not in bins:
                # A binary left in target/ by an older build must not stand in for it.
                err(f"the workspace has no binary target {name} (its crate has no main.rs yet?)")
                setattr(a, f"{kind}_bin", None)
    keys = {kind: config_keys(kind, getattr(a, f"{kind}_bin")) for kind in BINARY}
    tf = terraform_objects()
    for kind in ("global", "shard"):
        mod = "cell" if kind == "shard" else "global"
        for k in sorted(tf.get((kind, "hcl-keys", mod), set())):
            checked["env"] += 1
            if keys[kind] is not None and k not in keys[kind]:
                err(f"terraform/modules/{mod}: {k} is not in {BINARY[kind]} config-keys")

    rendered = load_rendered(a.rendered)
    seen_ports = {}
    for name, docs in rendered.items():
        check_overlay(name, docs, keys, tf, seen_ports)
    check_egress_cidr(rendered)
    check_routes(rendered)
    for kind, mod, pname, local in (("shard", "cell", "http", "app_port"), ("global", "global", "http", "app_port"),
                                    ("global", "global", "ops", "ops_port"),
                                    ("exporter", "cell", "http", "exporter_port")):
        tf_port = tf.get((kind, local, mod), {None})
        if seen_ports.get((kind, pname)) and tf_port != seen_ports[(kind, pname)]:
            err(f"terraform/modules/{mod}: local.{local} {tf_port} but the manifests use "
                f"{sorted(seen_ports[(kind, pname)])}")
    check_dockerfiles(keys, seen_ports, bins, members)

    # The Terraform shard set and the overlays are the same set, on the same domain:
    # the registry's public_url (Terraform) must be the URL the shard puts in its links.
    tfvars = {}
    for f in glob.glob(os.path.join(TF, "envs", "*", "*.tfvars")):
        values = load_tfvars(f)
        tfvars[f] = set(values.get("shards", {}))
        env_vars = Module(os.path.dirname(f)).variables
        domain = unq(values.get("domain", env_vars.get("domain", {}).get("default")))
        rel = os.path.relpath(f, INFRA)
        for name, docs in rendered.items():
            for d in docs:
                if d["kind"] == "ConfigMap" and "CELLBANK__SHARD__PUBLIC_URL" in d.get("data", {}):
                    want = f"https://{name}.{domain}"
                    if d["data"]["CELLBANK__SHARD__PUBLIC_URL"] != want:
                        err(f"{name}: CELLBANK__SHARD__PUBLIC_URL={d['data']['CELLBANK__SHARD__PUBLIC_URL']} but "
                            f"{rel} registers {want} (render-shard.sh --domain {domain})")
                if d["kind"] == "Ingress":
                    hosts = {r.get("host") for r in d["spec"].get("rules", [])}
                    want = {domain} if name == "global" else {f"{name}.{domain}"}
                    if hosts != want:
                        err(f"{name}: Ingress {d['metadata']['name']} hosts {sorted(map(str, hosts))}, "
                            f"but {rel} points DNS {sorted(want)} at the ingress")
    overlays = {os.path.basename(d) for d in glob.glob(os.path.join(K8S, "overlays", "shard-*"))}
    for f, shards in tfvars.items():
        rel = os.path.relpath(f, INFRA)
        for s in sorted(shards - overlays):
            err(f"{rel}: {s} has no overlay: run infra/k8s/render-shard.sh {s}")
        for s in sorted(overlays - shards):
            err(f"{rel}: overlay k8s/overlays/{s} has no entry in shards")
    missing = sorted(o for o in overlays if o not in rendered)
    if missing:
        err(f"overlays not rendered: {missing}")

    for e in errors:
        print(f"  {e}", file=sys.stderr)
    status = "FAIL" if errors else "ok"
    print(f"drift: {status}: {checked['env']} env settings and {checked['ports']} container ports in "
          f"{len(rendered)} overlays, Terraform and Dockerfiles against config-keys; {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
