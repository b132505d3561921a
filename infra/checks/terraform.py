"""Offline structural validation of infra/terraform (stands in for `terraform
validate`, which needs providers this machine cannot download):

- every .tf and .tfvars file parses (python-hcl2);
- every var./local./module.<m>.<output> reference is declared;
- every module call passes only declared variables and all required ones;
- every `moved` block moves an address this module no longer declares to a
  resource that exists (here or in a module it calls), so refactors keep state;
- every tfvars entry is a declared variable and every required variable is set;
- every resource type's provider is in required_providers;
- the production settings the platform relies on are set (multi-AZ, encryption at
  rest, deletion protection, no public endpoints), and RDS and MSK are defined
  only in modules/postgres and modules/kafka, which the global tier and the cells call;
- the environment stamps cells with for_each over var.shards;
- each cell gets only its own credentials from the global tier (its entry of
  shard_internal_tokens), never global's admin token.
"""

import glob
import os
import re
import sys

from tfmodel import module as Module, expr, load_tfvars, unq

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "terraform")
META = {"source", "for_each", "count", "depends_on", "providers", "version"}
errors = []


def err(where, msg):
    errors.append(f"{os.path.relpath(where, ROOT)}: {msg}")


def strip_comments(text):
    return "\n".join(re.sub(r"(^|\s)(#|//).*$", "", line) for line in text.splitlines())


def strip_moved(text):
    """`moved` blocks name old and new addresses, not references: check_moved checks them."""
    return re.sub(r"(?ms)^moved\s*\{.*?^\}", "", text)


def check_references(mod):
    text = strip_moved(strip_comments(mod.text()))
    for name in sorted(set(re.findall(r"\bvar\.(\w+)", text))):
        if name not in mod.variables:
            err(mod.path, f"var.{name} is used but not declared")
    for name in sorted(set(re.findall(r"\blocal\.(\w+)", text))):
        if name not in mod.locals:
            err(mod.path, f"local.{name} is used but not declared")
    for m, out in sorted(set(re.findall(r"\bmodule\.(\w+)\.(\w+)", text))):
        if m not in mod.modules:
            err(mod.path, f"module.{m} is used but not declared")
            continue
        target = Module(os.path.normpath(os.path.join(mod.path, unq(mod.modules[m]["source"]))))
        if out not in target.outputs:
            err(mod.path, f"module.{m}.{out}: {os.path.relpath(target.path, ROOT)} has no output {out}")
    declared = {f"{t}.{n}" for t, n, _ in mod.resources} | {f"data.{t}.{n}" for t, n, _ in mod.data}
    for ref in sorted(set(re.findall(r"\b((?:data\.)?(?:aws|kubernetes|random|kustomization)_\w+\.\w+)", text))):
        if ref not in declared:
            err(mod.path, f"{ref} is referenced but not declared")


def check_module_calls(mod):
    for name, call in mod.modules.items():
        src = os.path.normpath(os.path.join(mod.path, unq(call.get("source", ""))))
        if not os.path.isdir(src):
            err(mod.path, f"module {name}: source {src} does not exist")
            continue
        target = Module(src)
        for arg in call:
            if arg not in META and arg not in target.variables:
                err(mod.path, f"module {name} passes {arg}, which {os.path.relpath(src, ROOT)} does not declare")
        for var, body in target.variables.items():
            if "default" not in body and var not in call:
                err(mod.path, f"module {name} does not pass required variable {var}")


ADDRESS = re.compile(r'^((?:module\.\w+\.)*)(\w+)\.(\w+)(\[[^\]]+\])?$')


def check_moved(mod):
    declared = {f"{t}.{n}": body for t, n, body in mod.resources}
    for frm, to in mod.moved:
        src, dst = ADDRESS.match(frm or ""), ADDRESS.match(to or "")
        if not src or not dst:
            err(mod.path, f"moved block {frm} -> {to}: not two resource addresses")
            continue
        if not src.group(1) and f"{src.group(2)}.{src.group(3)}" in declared:
            err(mod.path, f"moved from {frm}, which is still declared here")
        target, path = mod, mod.path
        for m in re.findall(r"module\.(\w+)\.", dst.group(1)):
            if m not in target.modules:
                err(mod.path, f"moved to {to}: module {m} is not declared")
                target = None
                break
            path = os.path.normpath(os.path.join(path, unq(target.modules[m]["source"])))
            target = Module(path)
        if target is None:
            continue
        bodies = {f"{t}.{n}": body for t, n, body in target.resources}
        body = bodies.get(f"{dst.group(2)}.{dst.group(3)}")
        if body is None:
            err(mod.path, f"moved to {to}: {os.path.relpath(path, ROOT)} declares no {dst.group(2)}.{dst.group(3)}")
        elif bool(dst.group(4)) != ("for_each" in body or "count" in body):
            err(mod.path, f"moved to {to}: the instance key does not match the resource's for_each/count")


def check_providers(mod):
    required = set()
    for block in mod.terraform:
        for rp in block.get("required_providers", []):
            required |= set(rp)
    types = [t for t, _, _ in mod.resources] + [t for t, _, _ in mod.data]
    for t in sorted(set(types)):
        prefix = t.split("_")[0]
        if prefix not in required:
            err(mod.path, f"{t} needs provider {prefix} in required_providers")
    if not required:
        err(mod.path, "no required_providers")


def attr(body, *path):
    cur = body
    for p in path:
        if isinstance(cur, list):
            cur = cur[0] if cur else None
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur


# The one module that may define each managed data store, so that a production
# setting is changed once for the global tier and every cell.
HOME = {"aws_db_instance": "postgres", "aws_msk_cluster": "kafka"}


def check_production_settings(mod):
    for rtype, name, body in mod.resources:
        where = f"{rtype}.{name}"
        if rtype in HOME and os.path.basename(mod.path) != HOME[rtype]:
            err(mod.path, f"{where}: define it only in modules/{HOME[rtype]} (call that module instead)")
        if rtype == "aws_db_instance":
            for key, want in [("multi_az", True), ("storage_encrypted", True), ("deletion_protection", True),
                              ("publicly_accessible", False), ("skip_final_snapshot", False)]:
                if body.get(key) != want:
                    err(mod.path, f"{where}: {key} must be {want}")
            if not body.get("kms_key_id"):
                err(mod.path, f"{where}: kms_key_id must be set (encryption with the cell's key)")
            if (body.get("backup_retention_period") or 0) < 7:
                err(mod.path, f"{where}: backup_retention_period must be at least 7 days")
        if rtype == "aws_msk_cluster":
            if not attr(body, "encryption_info", "encryption_at_rest_kms_key_arn"):
                err(mod.path, f"{where}: encryption at rest must use a KMS key")
            if unq(attr(body, "broker_node_group_info", "connectivity_info", "public_access", "type")) != "DISABLED":
                err(mod.path, f"{where}: public access must be DISABLED")
            if attr(body, "encryption_info", "encryption_in_transit", "in_cluster") is not True:
                err(mod.path, f"{where}: in-cluster encryption in transit must be on")
        if rtype == "aws_eks_cluster":
            if attr(body, "vpc_config", "endpoint_public_access") is not False:
                err(mod.path, f"{where}: the Kubernetes API must not be public")
            if not attr(body, "encryption_config", "provider", "key_arn"):
                err(mod.path, f"{where}: secrets must be encrypted with KMS")
        if rtype == "aws_kms_key" and body.get("enable_key_rotation") is not True:
            err(mod.path, f"{where}: enable_key_rotation must be true")


def check_env(env):
    tfvars_files = sorted(glob.glob(os.path.join(env.path, "*.tfvars")))
    values = {}
    for f in tfvars_files:
        values.update(load_tfvars(f))
    for key in values:
        if key not in env.variables:
            err(env.path, f"tfvars sets {key}, which is not a declared variable")
    for var, body in env.variables.items():
        if "default" not in body and var not in values:
            err(env.path, f"required variable {var} is not set in any .tfvars")
    cell = env.modules.get("cell")
    if cell is None:
        err(env.path, 'no module "cell"')
    elif expr(cell.get("for_each")) != "var.shards":
        err(env.path, 'module "cell" must use for_each = var.shards (one cell per entry)')
    if cell is not None:
        check_cell_credentials(env, cell)
    if "shard_registry" not in env.outputs:
        err(env.path, "no shard_registry output (it feeds global's registry)")
    return values


# What a cell may take from the global tier: no secret but its own internal token.
CELL_FROM_GLOBAL = {"router_security_group_id", "internal_url", "shard_internal_tokens"}


def check_cell_credentials(env, cell):
    """A cell holds only its own credentials: never global's admin token or another cell's token."""
    for arg, value in cell.items():
        text = str(value)
        for out in re.findall(r"\bmodule\.global\.(\w+)", text):
            if out not in CELL_FROM_GLOBAL:
                err(env.path, f'module "cell" argument {arg} takes module.global.{out}: '
                              f"a cell gets only its own internal token from global")
        if "shard_internal_tokens" in text and "shard_internal_tokens[each.key]" not in text.replace('"', ""):
            err(env.path, f'module "cell" argument {arg} must take shard_internal_tokens[each.key] (its own token only)')
    if "shard_internal_tokens[each.key]" not in str(cell.get("internal_token")).replace('"', ""):
        err(env.path, 'module "cell" must get internal_token = module.global.shard_internal_tokens[each.key]')


def main():
    dirs = sorted(glob.glob(os.path.join(ROOT, "modules", "*"))) + sorted(glob.glob(os.path.join(ROOT, "envs", "*")))
    parsed = 0
    for d in dirs:
        try:
            mod = Module(d)
        except Exception as e:  # noqa: BLE001 - a parse error is the finding
            err(d, f"does not parse: {e}")
            continue
        parsed += len(mod.files)
        if not mod.files:
            err(d, "has no .tf files")
            continue
        check_references(mod)
        check_module_calls(mod)
        check_moved(mod)
        check_providers(mod)
        check_production_settings(mod)
        if os.path.basename(os.path.dirname(d)) == "envs":
            try:
                check_env(mod)
            except Exception as e:  # noqa: BLE001
                err(d, f"tfvars do not parse: {e}")
    for e in errors:
        print(f"  {e}", file=sys.stderr)
    status = "FAIL" if errors else "ok"
    print(f"terraform: {status}: {parsed} .tf files in {len(dirs)} modules/envs, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
