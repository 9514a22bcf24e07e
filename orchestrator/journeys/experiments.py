"""Play experiments: which variant of a `split` step an account gets.

The bucket is a hash of the playbook, the experiment and the account's key (its domain, the id
only when it has none), so an account keeps its variant across journeys, processes, versions of
the playbook (as long as the weights stay the same) and databases: a simulation on a scratch
copy or the sample data puts each account where production does, whatever ids the rows got.
Accounts spread over the variants in proportion to their weights.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from orchestrator.playbook.model import SplitStep, Variant

__all__ = ["BUCKETS", "Assignment", "account_key", "assign_variant"]

BUCKETS = 10_000


@dataclass(frozen=True)
class Assignment:
    experiment: str
    variant: Variant
    bucket: int  # 0 .. BUCKETS-1

    def record(self) -> dict[str, object]:
        return {"experiment": self.experiment, "variant": self.variant.name, "bucket": self.bucket}


def account_key(*, domain: str | None, account_id: int) -> str:
    """What an account is bucketed by: its domain, which every copy of the data agrees on."""
    return domain or f"id:{account_id}"


def bucket_of(*, playbook_id: str, experiment: str, key: str) -> int:
    digest = hashlib.sha256(f"{playbook_id}\x1f{experiment}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def assign_variant(step: SplitStep, *, playbook_id: str, key: str) -> Assignment:
    """The variant the account with `key` gets: the one whose share of the buckets holds its bucket."""
    bucket = bucket_of(playbook_id=playbook_id, experiment=step.experiment, key=key)
    total = sum(variant.weight for variant in step.variants)
    point = bucket * total // BUCKETS
    for variant in step.variants:
        if point < variant.weight:
            return Assignment(experiment=step.experiment, variant=variant, bucket=bucket)
        point -= variant.weight
    raise AssertionError("the weights cover every bucket")  # pragma: no cover
