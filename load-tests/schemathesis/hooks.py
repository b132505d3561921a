"""Schemathesis checks of our own, loaded by load-tests/schemathesis.sh.

problem_json: every error (4xx, 5xx) is an RFC 9457 problem: content type
application/problem+json, a JSON object with a string `type` and `title`
and a `status` equal to the response's. The readiness probe's 503 is a
report, not a problem, and is left out.
"""

import json

import schemathesis

PROBLEM = "application/problem+json"


@schemathesis.check
def problem_json(ctx, response, case):
    if response.status_code < 400 or (case.path == "/readyz" and response.status_code == 503):
        return None
    ctype = (response.headers.get("content-type") or [""])[0].split(";")[0].strip()
    if ctype != PROBLEM:
        raise AssertionError(f"error {response.status_code} answered as `{ctype}`, not {PROBLEM}")
    try:
        body = json.loads(response.content)
    except ValueError as e:
        raise AssertionError(f"the problem body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise AssertionError("the problem body is not a JSON object")
    for field in ("type", "title"):
        if not isinstance(body.get(field), str):
            raise AssertionError(f"the problem has no string `{field}`")
    if body.get("status") != response.status_code:
        raise AssertionError(
            f"the problem says status {body.get('status')!r}, the response {response.status_code}"
        )
    return None
