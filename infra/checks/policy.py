"""Runs checkov over the Terraform, the rendered Kubernetes overlays and the
Dockerfiles, and fails on any finding that checks/checkov-baseline.yaml does not
justify, or on a baseline entry that no longer matches any finding.

usage: policy.py --checkov PATH --rendered DIR
"""

import argparse
import fnmatch
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

INFRA = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def run(checkov, directory, framework):
    with tempfile.TemporaryDirectory() as out:
        cmd = [checkov, "-d", directory, "--framework", framework, "--quiet", "--compact",
               "--skip-download", "--output", "json", "--output-file-path", out]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        files = [f for f in os.listdir(out) if f.endswith(".json")]
        if not files:
            raise RuntimeError(f"checkov {framework} wrote no report (exit {proc.returncode}): {proc.stderr[-500:]}")
        with open(os.path.join(out, files[0])) as fh:
            report = json.load(fh)
    reports = report if isinstance(report, list) else [report]
    failed, summary = [], {"passed": 0, "failed": 0, "parsing_errors": 0}
    for r in reports:
        if "results" not in r:
            continue
        for k in summary:
            summary[k] += r["summary"].get(k, 0)
        failed += r["results"]["failed_checks"]
    if summary["passed"] == 0:
        raise RuntimeError(f"checkov {framework} checked nothing in {directory}")
    return failed, summary


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkov", required=True)
    ap.add_argument("--rendered", required=True)
    a = ap.parse_args()
    with open(os.path.join(INFRA, "checks", "checkov-baseline.yaml")) as fh:
        baseline = yaml.safe_load(fh) or []
    for entry in baseline:
        if not entry.get("why", "").strip():
            print(f"policy: FAIL: baseline entry {entry} has no justification")
            return 1
    used = [0] * len(baseline)
    problems, totals = [], {"passed": 0, "failed": 0, "parsing_errors": 0}
    for framework, directory in (("terraform", os.path.join(INFRA, "terraform")),
                                 ("kubernetes", a.rendered),
                                 ("dockerfile", os.path.join(INFRA, "docker"))):
        try:
            failed, summary = run(a.checkov, directory, framework)
        except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
            problems.append(str(e))
            continue
        for k in totals:
            totals[k] += summary[k]
        if summary["parsing_errors"]:
            problems.append(f"checkov could not parse {summary['parsing_errors']} {framework} files")
        for f in failed:
            resource = re.sub(r'^(module\.\w+(\["[^"]*"\])?\.)+', "", f["resource"])
            hit = False
            for i, entry in enumerate(baseline):
                if (entry["framework"] == framework and entry["check"] == f["check_id"]
                        and fnmatch.fnmatch(resource, entry["resource"])):
                    used[i] += 1
                    hit = True
            if not hit:
                problems.append(f"{framework} {f['check_id']} {f['resource']} ({f['file_path']}): "
                                f"{f['check_name']}")
    for i, entry in enumerate(baseline):
        if not used[i]:
            problems.append(f"baseline entry {entry['framework']} {entry['check']} {entry['resource']} "
                            "matches no finding any more: remove it")
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    status = "FAIL" if problems else "ok"
    print(f"policy: {status}: checkov {totals['passed']} passed, {totals['failed']} failed of which "
          f"{sum(used)} justified in checks/checkov-baseline.yaml; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
