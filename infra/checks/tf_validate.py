"""Terraform's own checks, offline: `terraform init -backend=false` (providers from
the filesystem copy named by TF_CLI_CONFIG_FILE, pinned by the committed
.terraform.lock.hcl) and `terraform validate` in every module and environment;
with --test, `terraform test` in one directory. Each directory gets its own
TF_DATA_DIR under WORK, so the repository stays clean.

usage: tf_validate.py TERRAFORM_DIR WORK [ONLY...]
       tf_validate.py --test DIR WORK
  ONLY: validate only these directories (relative to TERRAFORM_DIR)
"""

import glob
import os
import subprocess
import sys


def terraform(args, cwd, data_dir):
    env = dict(os.environ, TF_DATA_DIR=data_dir)
    return subprocess.run(["terraform", *args], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def init(d, work):
    data_dir = os.path.join(work, os.path.relpath(d, "/").replace("/", "_"))
    lock = os.path.join(d, ".terraform.lock.hcl")
    if not os.path.exists(lock):
        return data_dir, f"{d}: no committed .terraform.lock.hcl (run terraform init there and commit it)"
    r = terraform(["init", "-backend=false", "-input=false", "-no-color", "-lockfile=readonly"], d, data_dir)
    if r.returncode != 0:
        return data_dir, f"{d}: terraform init failed:\n{r.stdout[-3000:]}"
    return data_dir, None


def validate_all(root, work, only=()):
    dirs = sorted({os.path.dirname(p) for p in glob.glob(os.path.join(root, "*", "*", "*.tf"))})
    if only:
        dirs = [d for d in dirs if os.path.relpath(d, root) in only]
    problems = []
    for d in dirs:
        data_dir, problem = init(d, work)
        if problem:
            problems.append(problem)
            continue
        r = terraform(["validate", "-no-color"], d, data_dir)
        if r.returncode != 0:
            problems.append(f"{os.path.relpath(d, root)}: terraform validate:\n{r.stdout[-3000:]}")
    for p in problems:
        print(p)
    if problems:
        return 1
    print(f"terraform validate: {len(dirs)} modules and environments valid "
          f"({', '.join(os.path.relpath(d, root) for d in dirs)})")
    return 0


def test(d, work):
    data_dir, problem = init(d, work)
    if problem:
        print(problem)
        return 1
    r = terraform(["test", "-no-color"], d, data_dir)
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    if r.returncode != 0:
        # The failing runs and their errors; the backend warnings are noise.
        print("\n".join(l for l in lines if "backend" not in l.lower())[-4000:])
        return 1
    runs = [l.strip() for l in lines if l.strip().startswith("run ")]
    print("\n".join(runs))
    print(f"terraform test: {lines[-1]}")
    return 0


def main(argv):
    if argv[:1] == ["--test"]:
        return test(os.path.abspath(argv[1]), argv[2])
    return validate_all(os.path.abspath(argv[0]), argv[1], argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
