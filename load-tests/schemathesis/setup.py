"""Makes the data the API fuzzing run needs, and prints it as shell
assignments: a customer signed up through global (with a card), logged in
(its access token and its shard), one of its accounts, and a spare customer
created straight in that shard through its internal API, so that the
fuzzed internal endpoints act on a customer nobody else uses.

    setup.py GLOBAL_URL SECRETS_ENV
"""

import os
import sys
import time
import uuid

# The load tests' seeder already speaks to the API and reads secrets.env.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from seed import call as seed_call, read_env  # noqa: E402


def call(method, url, body=None, token=None):
    """seed.call's answer body, asked again after a 503 (up to 10 times);
    any other error ends the run with its message."""
    for attempt in range(10):
        try:
            return seed_call(method, url, body, token)[1]
        except RuntimeError as e:
            if " answered 503" not in str(e) or attempt == 9:
                raise SystemExit(str(e)[:400])
            time.sleep(0.5)


def main():
    global_url, secrets_path = sys.argv[1], sys.argv[2]
    secrets = read_env(secrets_path)
    login = f"api-fuzz-{uuid.uuid4().hex[:12]}@fuzz.test"
    password = uuid.uuid4().hex
    customer = call("POST", f"{global_url}/v1/customers",
                    {"name": "Api Fuzz", "login": login, "password": password})
    session = call("POST", f"{global_url}/v1/login", {"login": login, "password": password})
    customer_id, token = session["customer_id"], session["access_token"]
    card = call("POST", f"{global_url}/v1/customers/{customer_id}/cards", {}, token=token)
    shard_url = session["_links"]["self"]["href"].split("/v1/")[0]
    index = session["shard"].removeprefix("shard-")
    accounts = call("GET", f"{shard_url}/v1/customers/{customer_id}/accounts", token=token)
    account_id = accounts["_embedded"]["accounts"][0]["account_id"]
    internal = secrets[f"SHARD_{index}_INTERNAL_TOKEN"]
    spare = str(uuid.uuid4())
    call("POST", f"{shard_url}/internal/v1/customers",
         {"customer_id": spare, "name": "Api Fuzz Spare", "epoch": 1, "currency": "BRL"},
         token=internal)
    out = {
        "ST_CUSTOMER_ID": customer_id,
        "ST_CUSTOMER_TOKEN": token,
        "ST_ACCOUNT_ID": account_id,
        "ST_ACCOUNT_NUMBER": customer["account_number"],
        "ST_CARD_ID": card["card_id"],
        "ST_SPARE_CUSTOMER_ID": spare,
        "ST_SHARD_URL": shard_url,
        "ST_SHARD_INTERNAL_TOKEN": internal,
        "ST_SHARD_ADMIN_TOKEN": secrets[f"SHARD_{index}_ADMIN_TOKEN"],
    }
    for k, v in out.items():
        print(f"{k}={v}")


if __name__ == "__main__":
    main()
