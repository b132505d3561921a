#!/usr/bin/env python3
"""Query every cell's analytical export as one logical table per entity.

    query.py --root DIR_OR_S3_URL sql "SELECT count(*) FROM postings"
    query.py --root DIR_OR_S3_URL summary      # the figures the tests compare
    query.py --root DIR_OR_S3_URL views        # the SQL that defines the views

Needs the `duckdb` package (PyPI). The views are in logical_tables.sql.
"""

import argparse
import json
import os
import sys

import duckdb

ENTITIES = ["postings", "customers", "accounts", "cards", "transfers"]
HERE = os.path.dirname(os.path.abspath(__file__))


def files(root, entity):
    return f"{root.rstrip('/')}/{entity}/*/*/*.parquet"


def has_files(con, root, entity):
    pattern = files(root, entity)
    return con.execute("SELECT count(*) FROM glob(?)", [pattern]).fetchone()[0] > 0


def raw_view(entity, sources):
    # hive_partitioning off: `shard` is a column of the files themselves.
    listed = ", ".join(f"'{s}'" for s in sources)
    return (
        f"CREATE OR REPLACE VIEW raw_{entity} AS\n"
        f"SELECT * FROM read_parquet([{listed}], hive_partitioning = false, union_by_name = true)\n"
        f"QUALIFY row_number() OVER (PARTITION BY shard, change_id ORDER BY source_offset) = 1;"
    )


def views_sql(con, root):
    raws = []
    for e in ENTITIES:
        # Every exporter writes each table's schema as an empty file at start,
        # so a table no cell has rows for yet is empty, not missing.
        sources = [f"{root.rstrip('/')}/_schemas/{e}.parquet"]
        if has_files(con, root, e):
            sources.append(files(root, e))
        raws.append(raw_view(e, sources))
    with open(os.path.join(HERE, "logical_tables.sql")) as f:
        template = f.read()
    return template.replace("{raw_views}", "\n\n".join(raws)).replace("{root}", root)


def summary(con, root):
    """Per entity: rows, per customer figures; per cell: trial balance."""
    out = {}
    for e in ENTITIES:
        out[e] = {"rows": con.execute(f"SELECT count(*) FROM {e}").fetchone()[0]}
    out["postings"]["by_customer"] = {
        str(c): {"rows": n, "sum": int(s), "debits": int(d)}
        for c, n, s, d in con.execute(
            "SELECT customer_id, count(*), sum(amount), sum(CASE WHEN amount > 0 THEN amount ELSE 0 END)"
            " FROM postings GROUP BY 1"
        ).fetchall()
    }
    out["postings"]["by_account"] = {
        f"{c}/{code}": int(s)
        for c, code, s in con.execute(
            "SELECT customer_id, account_code, sum(amount) FROM postings GROUP BY 1, 2"
        ).fetchall()
    }
    out["customers"]["owners"] = {
        str(c): {"shard": s, "epoch": int(ep), "state": st}
        for c, s, ep, st in con.execute("SELECT customer_id, shard, epoch, state FROM customers").fetchall()
    }
    out["accounts"]["by_customer"] = count_by(con, "accounts")
    out["cards"]["by_customer"] = {
        str(c): {"rows": n, "limit": int(l), "blocked": int(b)}
        for c, n, l, b in con.execute(
            "SELECT customer_id, count(*), sum(credit_limit), count(*) FILTER (WHERE blocked) FROM cards GROUP BY 1"
        ).fetchall()
    }
    out["transfers"]["by_customer_state"] = {
        f"{c}/{st}": {"rows": n, "amount": int(a)}
        for c, st, n, a in con.execute(
            "SELECT customer_id, state, count(*), sum(amount) FROM transfers GROUP BY 1, 2"
        ).fetchall()
    }
    out["trial_balance"] = {
        "total": int(con.execute("SELECT coalesce(sum(amount), 0) FROM postings").fetchone()[0]),
        "by_shard": {
            s: int(t) for s, t in con.execute("SELECT shard, sum(amount) FROM raw_postings GROUP BY 1").fetchall()
        },
    }
    # A posting is filed under its business date (a late one in its own
    # day, as its own row): the file's `date=` must be the row's day.
    filed = (
        f"SELECT regexp_extract(filename, 'date=([0-9-]+)', 1) AS day, business_time"
        f" FROM read_parquet('{files(root, 'postings')}', filename = true, hive_partitioning = false)"
    )
    out["late_rows_misfiled"] = con.execute(
        f"SELECT count(*) FROM ({filed}) WHERE epoch_us(business_time) // 86400000000"
        f" <> date_diff('day', DATE '1970-01-01', CAST(day AS DATE))"
    ).fetchone()[0]
    out["late_dates"] = sorted(d for (d,) in con.execute(f"SELECT DISTINCT day FROM ({filed})").fetchall())
    out["raw_rows_by_shard"] = {
        e: {s: n for s, n in con.execute(f"SELECT shard, count(*) FROM raw_{e} GROUP BY 1").fetchall()}
        for e in ENTITIES
    }
    return out


def count_by(con, entity):
    return {str(c): n for c, n in con.execute(f"SELECT customer_id, count(*) FROM {entity} GROUP BY 1").fetchall()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="the dataset's root: a directory or s3://bucket/prefix")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("views")
    sub.add_parser("summary")
    q = sub.add_parser("sql")
    q.add_argument("query")
    args = ap.parse_args()
    con = duckdb.connect()
    sql = views_sql(con, args.root)
    if args.cmd == "views":
        print(sql)
        return
    con.execute(sql)
    if args.cmd == "summary":
        json.dump(summary(con, args.root), sys.stdout, indent=1, sort_keys=True, default=str)
        print()
    else:
        cur = con.execute(args.query)
        cols = [d[0] for d in cur.description]
        print("\t".join(cols))
        for row in cur.fetchall():
            print("\t".join("" if v is None else str(v) for v in row))


if __name__ == "__main__":
    main()
