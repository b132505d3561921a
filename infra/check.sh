#!/usr/bin/env bash
# Offline validation of infra/ (Terraform, Kubernetes, Dockerfiles), one line per check:
#   yaml       every YAML file parses and is tidy (yamllint)
#   terraform  project rules Terraform cannot know (python-hcl2): RDS/MSK only in their
#              modules, one state per cell, releases match the overlays, EC2-safe text
#   tf-fmt     `terraform fmt -check` (Terraform and the aws provider ship with the machine)
#   tf-validate  `terraform init -backend=false` from the provider's filesystem copy and
#              `terraform validate`, for every module and environment
#   tf-test    `terraform test`: the example environment with two and three shards,
#              against a mocked aws provider, asserting what each shard gets
#   generator  overlays are exactly what render-shard.sh writes, and a new shard renders
#   kustomize  every overlay builds (kubectl's built-in kustomize)
#   deployed   every overlay as infra/rollout.sh applies it (rollout/render.py) builds
#   rollout    infra/rollout.sh against stand-in AWS/EKS/cellctl: waves, bake, rollback, removal
#   isolation  the NetworkPolicies keep shards from reaching each other
#   kube-schema  kubernetes-validate --strict (Kubernetes' own schemas) over every manifest
#   selftest   the validators catch deliberately broken copies of infra/
#   policy     checkov passes, or its findings are justified in checks/checkov-baseline.yaml
#   drift      every env var and port, as deployed, exists in the binaries' config-keys
#              (cellbank-global, cellbank-shard and the cells' cellbank-exporter)
# Installs what it needs (idempotent; venvs under $CELLBANK_INFRA_CACHE, default
# ~/.cache/cellbank-infra). Exits non-zero on any problem.
# The drift check builds the binaries with cargo unless CELLBANK_GLOBAL_BIN,
# CELLBANK_SHARD_BIN and CELLBANK_EXPORTER_BIN name already built ones.
set -uo pipefail
export PYTHONDONTWRITEBYTECODE=1

INFRA="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$INFRA")"
CACHE="${CELLBANK_INFRA_CACHE:-$HOME/.cache/cellbank-infra}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
started=$(date +%s)
results=()
failed=()

log() { printf '%s\n' "$*"; }

# venv DIR REQUIREMENTS: create or refresh a virtualenv when its pins change.
venv() {
  local dir="$1" req="$2" stamp
  stamp="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  if ! python3 -m venv "$dir" >/dev/null 2>&1; then
    # Debian's python3 needs python3-venv for this.
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      (apt-get install -y -qq python3-venv >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-venv; }) >/dev/null 2>&1
    fi
    rm -rf "$dir"
    python3 -m venv "$dir" || return 1
  fi
  "$dir/bin/pip" install -q --disable-pip-version-check -r "$req" >"$WORK/pip.log" 2>&1 \
    || { cat "$WORK/pip.log" >&2; return 1; }
  echo "$stamp" > "$dir/.stamp"
}

# run NAME CMD...: run one check, keep its output short, record the result.
run() {
  local name="$1"; shift
  local t0=$(date +%s) out="$WORK/$name.out"
  if "$@" >"$out" 2>&1; then
    results+=("$name")
    log "PASS $name ($(( $(date +%s) - t0 ))s): $(tail -n 1 "$out")"
  else
    failed+=("$name")
    log "FAIL $name ($(( $(date +%s) - t0 ))s):"
    sed 's/^/    /' "$out" | tail -n 40
  fi
}

if ! command -v python3 >/dev/null; then
  apt-get update -qq >/dev/null && apt-get install -y -qq python3 python3-venv >/dev/null
fi
log "infra/check.sh: installing validators into $CACHE (if missing)"
venv "$CACHE/tools" "$INFRA/checks/requirements-tools.txt" || { log "FAIL setup: could not install the validators"; exit 1; }
venv "$CACHE/checkov" "$INFRA/checks/requirements-checkov.txt" || { log "FAIL setup: could not install checkov"; exit 1; }
PY="$CACHE/tools/bin/python"
KUBECTL="$CACHE/tools/bin/kubectl"

# --- yaml
yaml_check() {
  "$CACHE/tools/bin/yamllint" -s -c "$INFRA/checks/yamllint.yaml" "$INFRA/k8s" "$INFRA/checks" || return 1
  echo "yamllint: $(find "$INFRA/k8s" "$INFRA/checks" -name '*.yaml' -o -name '*.yml' | wc -l) YAML files parse and are clean"
}
run yaml yaml_check

# --- terraform (structure)
run terraform "$PY" "$INFRA/checks/terraform.py"

# --- Terraform itself, offline: the machine ships Terraform and a filesystem copy of
# the hashicorp/aws provider; a CLI configuration points `terraform init` at it.
tf_setup() {
  command -v terraform >/dev/null || { echo "no terraform binary (this kind of machine ships Terraform 1.11)"; return 1; }
  local mirror="${CELLBANK_TF_MIRROR:-}" found
  if [ -z "$mirror" ]; then
    found="$(find /opt/tf-plugins /usr/share/terraform/plugins "$HOME/.terraform.d/plugins" \
      -path '*registry.terraform.io/hashicorp/aws/*' -name 'terraform-provider-aws*' 2>/dev/null | head -n 1)"
    [ -n "$found" ] || { echo "no filesystem copy of the hashicorp/aws provider (set CELLBANK_TF_MIRROR)"; return 1; }
    mirror="${found%%/registry.terraform.io/*}"
  fi
  cat > "$WORK/terraformrc" <<RC
provider_installation {
  filesystem_mirror {
    path    = "$mirror"
    include = ["registry.terraform.io/hashicorp/aws"]
  }
  direct {
    exclude = ["registry.terraform.io/hashicorp/aws"]
  }
}
RC
  export TF_CLI_CONFIG_FILE="$WORK/terraformrc" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
}

tf_fmt() {
  tf_setup || return 1
  terraform fmt -check -recursive -diff "$INFRA/terraform" && echo "terraform fmt: clean"
}
run tf-fmt tf_fmt

# tf-validate: every module and environment initialised against the committed
# .terraform.lock.hcl (no backend) and validated by Terraform with the provider's
# own schema and argument validation.
tf_validate() {
  tf_setup || return 1
  "$PY" "$INFRA/checks/tf_validate.py" "$INFRA/terraform" "$WORK/tf"
}
run tf-validate tf_validate

# tf-test: the example environment planned and applied against a mocked provider
# with two and three shards (envs/example/tests); asserts what each shard gets.
tf_test() {
  tf_setup || return 1
  "$PY" "$INFRA/checks/tf_validate.py" --test "$INFRA/terraform/envs/example" "$WORK/tf"
}
run tf-test tf_test

# --- kustomize: every overlay builds
mkdir -p "$WORK/rendered" "$WORK/generated"
kustomize_all() {
  local n=0 o name
  for o in "$INFRA"/k8s/overlays/*/; do
    name="$(basename "$o")"
    "$KUBECTL" kustomize "$o" > "$WORK/rendered/$name.yaml" || { echo "overlay $name does not build"; return 1; }
    grep -q '^kind: Deployment' "$WORK/rendered/$name.yaml" || { echo "overlay $name renders no Deployment"; return 1; }
    n=$((n + 1))
  done
  mkdir -p "$WORK/platform"
  "$KUBECTL" kustomize "$INFRA/k8s/platform" > "$WORK/platform/platform.yaml" || { echo "k8s/platform does not build"; return 1; }
  [ "$n" -gt 0 ] || { echo "no overlays"; return 1; }
  echo "kustomize: $n overlays build ($("$KUBECTL" version --client 2>/dev/null | grep -i kustomize))"
}
run kustomize kustomize_all

# --- deployed: what infra/rollout.sh applies to each overlay (render.py's wrapper:
# infra ConfigMap, SecretProviderClass, SecurityGroupPolicy, CSI volume), rendered
# offline from the example outputs in infra/rollout/fixtures and built by kustomize.
deployed_all() {
  mkdir -p "$WORK/deployed"
  "$PY" "$INFRA/rollout/render.py" all --overlay "$INFRA/k8s/overlays" \
    --deployment "$INFRA/rollout/fixtures/example.json" --out "$WORK/deploy-src" || return 1
  local d name
  for d in "$WORK"/deploy-src/*/; do
    name="$(basename "$d")"
    "$KUBECTL" kustomize "$d" > "$WORK/deployed/$name.yaml" || { echo "deployed $name does not build"; return 1; }
  done
  echo "deployed: $(ls "$WORK/deployed" | wc -l) overlays render as infra/rollout.sh applies them"
}
run deployed deployed_all

# --- rollout: infra/rollout.sh's waves, bake, rollback and removal against stand-ins
run rollout "$PY" "$INFRA/checks/rollout_test.py" "$KUBECTL"

# --- generator: committed overlays are its output; a brand-new shard renders and builds
generator() {
  "$INFRA/k8s/render-shard.sh" --check || return 1
  cp -r "$INFRA/k8s" "$WORK/k8s-copy"
  local next=$(( $(ls -d "$INFRA"/k8s/overlays/shard-* | sed 's/.*shard-//' | sort -n | tail -n 1) + 1 ))
  "$WORK/k8s-copy/render-shard.sh" "shard-$next" >/dev/null || return 1
  "$KUBECTL" kustomize "$WORK/k8s-copy/overlays/shard-$next" > "$WORK/generated/shard-$next.yaml" || return 1
  grep -q "CELLBANK__SHARD__ID: shard-$next" "$WORK/generated/shard-$next.yaml" || { echo "shard-$next renders without its id"; return 1; }
  echo "generator: overlays match render-shard.sh; a new shard-$next renders and builds"
}
run generator generator

# --- isolation: evaluate the NetworkPolicies, including the freshly generated shard
run isolation "$PY" "$INFRA/checks/isolation.py" "$WORK/rendered" "$WORK/generated"

# --- kube-schema: kubernetes-validate --strict over every manifest as deployed
run kube-schema "$PY" "$INFRA/checks/kube_schema.py" "$WORK/deployed" "$WORK/platform" "$WORK/generated"

# --- selftest: the validators above fail on deliberately broken copies of infra/
selftest() {
  tf_setup || return 1
  "$PY" "$INFRA/checks/selftest.py" "$KUBECTL"
}
run selftest selftest

# --- policy: checkov with a justified baseline
run policy "$CACHE/checkov/bin/python" "$INFRA/checks/policy.py" \
  --checkov "$CACHE/checkov/bin/checkov" --rendered "$WORK/rendered"

# --- drift: manifests vs. the binaries' config-keys
drift() {
  local gbin="${CELLBANK_GLOBAL_BIN:-}" sbin="${CELLBANK_SHARD_BIN:-}" ebin="${CELLBANK_EXPORTER_BIN:-}"
  (cd "$REPO" && cargo metadata --no-deps --format-version 1 > "$WORK/metadata.json") || return 1
  if [ -z "$gbin" ] || [ -z "$sbin" ] || [ -z "$ebin" ]; then
    local target
    target="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["target_directory"])' "$WORK/metadata.json")"
    if ! (cd "$REPO" && cargo build -q --locked -p cellbank-global -p cellbank-shard -p cellbank-exporter --bins); then
      # Never compare against stale binaries: report what else drifts, then fail.
      echo "cargo build -p cellbank-global -p cellbank-shard -p cellbank-exporter failed"
      "$PY" "$INFRA/checks/drift.py" --rendered "$WORK/deployed" --bins-json "$WORK/metadata.json"
      return 1
    fi
    gbin="${gbin:-$target/debug/cellbank-global}"
    sbin="${sbin:-$target/debug/cellbank-shard}"
    ebin="${ebin:-$target/debug/cellbank-exporter}"
  fi
  "$PY" "$INFRA/checks/drift.py" --global-bin "$gbin" --shard-bin "$sbin" --exporter-bin "$ebin" \
    --rendered "$WORK/deployed" --bins-json "$WORK/metadata.json"
}
run drift drift

total=$(( ${#results[@]} + ${#failed[@]} ))
if [ "${#failed[@]}" -gt 0 ]; then
  log "infra/check.sh: ${#failed[@]} of $total checks failed (${failed[*]}) in $(( $(date +%s) - started ))s"
  exit 1
fi
log "infra/check.sh: all $total checks passed in $(( $(date +%s) - started ))s"
