"""`render-pipeline lifecycle show | apply --days N`: the bucket rule expiring `renders/`.

The rule is a backstop behind the retention job: S3 expires objects without telling the
database, so keep its age above `retention_days` (orphan reconciliation then fails any row
whose objects the rule removed first).
"""

from __future__ import annotations

import argparse
import sys

import botocore.exceptions

from render_pipeline.keys import RENDERS_PREFIX
from render_pipeline.resources.factory import object_store_from_settings
from render_pipeline.resources.object_store import ObjectStoreError, S3ObjectStore
from render_pipeline.settings import load_settings

RULE_ID = "render-pipeline-expire-renders"
DEFAULT_RETENTION_DAYS = 90


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("lifecycle", help="show or apply the bucket rule that expires renders/")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("show", help="print the bucket's lifecycle rules")
    apply = actions.add_parser("apply", help="expire objects under renders/ after --days days")
    apply.add_argument("--days", type=int, required=True, help="age in days (1-36500)")
    parser.set_defaults(func=run)


def lifecycle_rules(store: S3ObjectStore) -> list[dict]:
    try:
        response = store.client.get_bucket_lifecycle_configuration(Bucket=store.bucket)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
            return []
        raise ObjectStoreError(f"reading the lifecycle of bucket {store.bucket!r} failed: {exc}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise ObjectStoreError(f"reading the lifecycle of bucket {store.bucket!r} failed: {exc}") from None
    return response.get("Rules", [])


def apply_expiry(store: S3ObjectStore, days: int) -> list[dict]:
    """Replace our rule (other rules on the bucket are kept); returns the rules now set."""
    rules = [rule for rule in lifecycle_rules(store) if rule.get("ID") != RULE_ID]
    rules.append({"ID": RULE_ID, "Filter": {"Prefix": RENDERS_PREFIX}, "Status": "Enabled",
                  "Expiration": {"Days": days}})
    try:
        store.client.put_bucket_lifecycle_configuration(Bucket=store.bucket, LifecycleConfiguration={"Rules": rules})
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise ObjectStoreError(f"setting the lifecycle of bucket {store.bucket!r} failed: {exc}") from None
    return lifecycle_rules(store)


def _describe(rule: dict) -> str:
    prefix = rule.get("Filter", {}).get("Prefix", rule.get("Prefix", ""))
    expiry = rule.get("Expiration", {})
    after = f"after {expiry['Days']} days" if "Days" in expiry else str(expiry or "no expiration")
    return f"{rule.get('ID', '(no id)')}: {rule.get('Status')} prefix={prefix!r} expire {after}"


def run(args: argparse.Namespace) -> int:
    store = object_store_from_settings(load_settings().object_store)
    if not isinstance(store, S3ObjectStore):
        print("error: lifecycle rules need an S3/MinIO store (set MINIO_ENDPOINT); the local store has none",
              file=sys.stderr)
        return 2
    if args.action == "apply":
        if not 1 <= args.days <= 36500:
            print(f"error: --days must be between 1 and 36500 (got {args.days})", file=sys.stderr)
            return 2
        if args.days <= DEFAULT_RETENTION_DAYS:
            print(f"warning: {args.days} days is not above the retention job's {DEFAULT_RETENTION_DAYS} days: "
                  f"S3 may expire renders before they are archived (they are then marked failed)", file=sys.stderr)
        rules = apply_expiry(store, args.days)
        print(f"applied to bucket {store.bucket}:")
    else:
        rules = lifecycle_rules(store)
        print(f"bucket {store.bucket}: {len(rules)} lifecycle rule(s)")
    for rule in rules:
        print(f"  {_describe(rule)}")
    return 0
