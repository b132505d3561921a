"""Project rules for infra/terraform that Terraform itself cannot know. Terraform
checks the rest: `terraform validate` (tf-validate) now covers what this script
used to stand in for -- references, module calls and their arguments, moved
blocks, required providers, and the provider's own argument validation -- and
checkov (policy) covers multi-AZ, storage encryption, public access of RDS, MSK
and EKS, EKS secrets encryption and KMS key rotation. What stays here:

- every .tf and .tfvars file parses (python-hcl2), so the other rules can read it;
- RDS and MSK are defined only in modules/postgres and modules/kafka, which the
  global tier and every cell call, with the settings checkov has no rule for
  (final snapshot, the caller's KMS key, 7+ days of backups, deletion protection
  off only through `decommission`, MSK at-rest key and in-cluster encryption);
- no secret value passes through Terraform: no random_password/random_bytes, no
  secret_string, no RDS password argument (Secrets Manager generates them);
- one state per cell: the shared stack (envs/example) defines no cell, and
  envs/cell calls modules/cell exactly once, without for_each or count;
- a cell's KMS key lets only that cell's own role decrypt;
- every tfvars entry is a declared variable and every required variable is set;
- each cell's release in tfvars is the one its overlay deploys (images: newTag),
  and so is global's;
- security-group descriptions use only the characters EC2 accepts (an
  apostrophe fails at apply; neither the provider nor validate checks
  aws_security_group.description).
"""

import glob
import os
import re
import sys

import yaml

from tfmodel import module as Module, expr, load_tfvars, unq

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "terraform")
OVERLAYS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "k8s", "overlays")
EC2_TEXT = re.compile(r"^[0-9A-Za-z_ .:/()#,@\[\]+=&;{}!$*-]*$")
SG_TYPES = {"aws_security_group", "aws_security_group_rule", "aws_vpc_security_group_ingress_rule",
            "aws_vpc_security_group_egress_rule"}
errors = []


def err(where, msg):
    errors.append(f"{os.path.relpath(where, ROOT)}: {msg}")


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
            for key, want in [("skip_final_snapshot", False)]:
                if body.get(key) != want:
                    err(mod.path, f"{where}: {key} must be {want}")
            if not body.get("kms_key_id"):
                err(mod.path, f"{where}: kms_key_id must be set (encryption with the cell's key)")
            if (body.get("backup_retention_period") or 0) < 7:
                err(mod.path, f"{where}: backup_retention_period must be at least 7 days")
        if rtype == "aws_msk_cluster":
            if not attr(body, "encryption_info", "encryption_at_rest_kms_key_arn"):
                err(mod.path, f"{where}: encryption at rest must use a KMS key")
            if attr(body, "encryption_info", "encryption_in_transit", "in_cluster") is not True:
                err(mod.path, f"{where}: in-cluster encryption in transit must be on")


def check_no_secret_values(mod):
    for rtype, name, body in mod.resources:
        where = f"{rtype}.{name}"
        if rtype in {"random_password", "random_bytes", "random_string"}:
            err(mod.path, f"{where}: a generated secret would sit in Terraform state; let Secrets Manager generate it")
        if rtype == "aws_secretsmanager_secret_version" and "secret_string" in body:
            err(mod.path, f"{where}: secret_string puts the value in state")
        if rtype == "aws_db_instance" and "password" in body:
            err(mod.path, f"{where}: use manage_master_user_password, not a password in state")


def check_db_protection(mod):
    for rtype, name, body in mod.resources:
        if rtype == "aws_db_instance" and expr(body.get("deletion_protection")) != "!var.decommission":
            err(mod.path, f"{rtype}.{name}: deletion_protection must be !var.decommission "
                          "(off only in the separate decommission apply)")


def check_sg_descriptions(mod):
    for rtype, name, body in mod.resources:
        if rtype not in SG_TYPES:
            continue
        text = body.get("description")
        if not isinstance(text, str):
            continue
        literal = re.sub(r"\$\{[^}]*\}", "", unq(text))
        if not EC2_TEXT.match(literal):
            bad = sorted(set(c for c in literal if not EC2_TEXT.match(c)))
            err(mod.path, f"{rtype}.{name}: description has {bad}, which EC2 rejects")
    for call, body in mod.modules.items():
        text = body.get("security_group_description")
        if isinstance(text, str):
            literal = re.sub(r"\$\{[^}]*\}", "", unq(text))
            if not EC2_TEXT.match(literal):
                err(mod.path, f"module {call}: security_group_description has a character EC2 rejects")


def check_tfvars(env):
    """An environment with tfvars sets them all (envs/cell's input is written by infra/rollout.sh)."""
    values = {}
    files = sorted(glob.glob(os.path.join(env.path, "*.tfvars")))
    if not files:
        return values
    for f in files:
        values.update(load_tfvars(f))
    for key in values:
        if key not in env.variables:
            err(env.path, f"tfvars sets {key}, which is not a declared variable")
    for var, body in env.variables.items():
        if "default" not in body and var not in values:
            err(env.path, f"required variable {var} is not set in any .tfvars")
    return values


def overlay_tag(overlay, image):
    path = os.path.join(OVERLAYS, overlay, "kustomization.yaml")
    if not os.path.exists(path):
        return None, f"no overlay infra/k8s/overlays/{overlay} (render-shard.sh {overlay} --image-tag TAG)"
    with open(path) as fh:
        doc = yaml.safe_load(fh)
    tags = [i.get("newTag") for i in doc.get("images", []) if str(i.get("name")).split("/")[-1] == image]
    if not tags:
        return None, f"infra/k8s/overlays/{overlay} pins no tag for {image} (images:)"
    return str(tags[0]), None


def check_releases(env, values):
    for shard, entry in (values.get("shards") or {}).items():
        want = unq(str((entry or {}).get("image_tag")))
        have, problem = overlay_tag(shard, "cellbank-shard")
        if problem:
            err(env.path, f"shards[{shard}]: {problem}")
        elif have != want:
            err(env.path, f"shards[{shard}].image_tag is {want} but its overlay deploys {have}")
    if "global_image_tag" in values:
        have, problem = overlay_tag("global", "cellbank-global")
        if problem:
            err(env.path, f"global: {problem}")
        elif have != unq(str(values["global_image_tag"])):
            err(env.path, f"global_image_tag is {unq(values['global_image_tag'])} but overlays/global deploys {have}")


def check_state_split(mods):
    for d, mod in mods.items():
        base = os.path.relpath(d, ROOT)
        if not base.startswith("envs/"):
            continue
        cells = [(n, b) for n, b in mod.modules.items() if unq(b.get("source", "")).endswith("modules/cell")]
        if base == "envs/cell":
            if len(cells) != 1 or any(k in cells[0][1] for k in ("for_each", "count")):
                err(d, "must call modules/cell exactly once, without for_each or count (one state per cell)")
        elif cells:
            err(d, f"module {cells[0][0]}: cells live in their own state (envs/cell), not in a shared stack")


def check_cell_key(mod):
    kms = mod.modules.get("kms")
    if os.path.basename(mod.path) == "cell" and kms is not None:
        if kms.get("decrypt_role_arns") != ["${module.role.arn}"]:
            err(mod.path, "module kms: decrypt_role_arns must be [module.role.arn] (only this cell's role)")


def main():
    dirs = sorted(glob.glob(os.path.join(ROOT, "modules", "*"))) + sorted(glob.glob(os.path.join(ROOT, "envs", "*")))
    parsed, mods = 0, {}
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
        mods[d] = mod
        check_production_settings(mod)
        check_no_secret_values(mod)
        check_db_protection(mod)
        check_sg_descriptions(mod)
        check_cell_key(mod)
        if os.path.basename(os.path.dirname(d)) == "envs":
            try:
                check_releases(mod, check_tfvars(mod))
            except Exception as e:  # noqa: BLE001
                err(d, f"tfvars do not parse: {e}")
    check_state_split(mods)
    for e in errors:
        print(f"  {e}", file=sys.stderr)
    status = "FAIL" if errors else "ok"
    print(f"terraform: {status}: {parsed} .tf files in {len(dirs)} modules/envs, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
