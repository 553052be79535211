"""Inner tokens from the key service, in Spark: distinct (purpose, value) pairs, batched requests
from the tasks (``mapInArrow``, no row-at-a-time UDF), joined back to the records.

The block-salted encoding (:mod:`natlink.tokens.salted`) asks an *inner source* for one inner
token per record and field. Locally (centralised mode) that is ``HMAC(K[salted:inner/P], v)``;
here (:class:`ServiceInnerTokens`) it is the key service's OPRF of ``v`` under purpose
``salted:inner/P`` (:mod:`natlink.keyservice.oprf`):

1. every record's (field, purpose, value) in long form, one row per present value (the purpose
   as a small integer);
2. the distinct (purpose, value) pairs, so each is evaluated once per job, spread over twice the
   cores' partitions (adaptive execution would otherwise make them one task: one core);
3. ``mapInArrow`` over those: each task groups its Arrow batches by purpose and sends
   ``batch_size`` blinded values per request, ``concurrency`` batches' requests in flight
   (:class:`~natlink.keyservice.client.KeyServiceClient`; the credential is resolved from its
   reference inside the task, never shipped);
4. joined back on (purpose, value) and pivoted to one column per field, then to the records by
   ``(dataset, record_id)`` (tokenise has made these unique before it encodes).

The (value, inner token) pairs exist only inside this job's Spark plan (shuffle files are the
job's own temporary files, like the plaintext itself: set ``spark.io.encryption.enabled`` on
shared disks); nothing is cached or written. :func:`service_encoding_key` derives the key that
block keys and salted tokens are made with in this mode.
"""

from __future__ import annotations

import contextlib
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Sequence

import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink import errors
from natlink.config.keyservice import KeyServiceClientConfig
from natlink.errors import KeyServiceError, KeyServiceProofError, NatlinkError, SchemaError
from natlink.keyservice.client import KeyServiceClient
from natlink.tokens.keys import KeyMaterial

__all__ = ["ServiceInnerTokens", "named_failures", "service_encoding_key"]

_SCHEMA = "p int, value string, inner string"

_FAILURE = re.compile(r"natlink\.errors\.(KeyService[A-Za-z]*Error): ([^\n]*)")


def service_encoding_key(encoding: KeyMaterial, cfg: KeyServiceClientConfig) -> KeyMaterial:
    """The key that block keys and salted tokens are made with when inner tokens come from the
    service: a subkey of the providers' per-linkage encoding key bound to the service's name and
    key version. Its fingerprint (in every manifest) differs from the encoding key's own and from
    other versions', so the centre's mixed-key check refuses tables of different modes or versions."""
    label = f"keyservice-encoding:{cfg.service}/v{cfg.key_version}"
    return KeyMaterial(f"{encoding.key_id}+keyservice:{cfg.service}/v{cfg.key_version}", encoding.subkey(label))


class _Evaluate:
    """The ``mapInArrow`` function: distinct (purpose id, value) pairs in, (purpose id, value,
    inner token) out. Each Arrow batch's values are grouped by purpose into requests of
    ``batch_size``; up to ``concurrency`` batches' requests are in flight, so while the service
    evaluates one the task blinds the next or unblinds the last."""

    def __init__(self, cfg: dict[str, Any], purposes: Sequence[str]) -> None:
        self.cfg = cfg  # the client config (references and public keys only)
        self.purposes = list(purposes)

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        cfg = KeyServiceClientConfig.model_validate(self.cfg)
        client = KeyServiceClient(cfg)
        pending: deque = deque()
        with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool:
            for batch in batches:
                pending.append((batch, self._submit(pool, client, cfg.batch_size, batch)))
                while len(pending) > cfg.concurrency or (pending and all(f.done() for _, f in pending[0][1])):
                    yield _finish(*pending.popleft())
            while pending:
                yield _finish(*pending.popleft())

    def _submit(self, pool: ThreadPoolExecutor, client: KeyServiceClient, size: int, batch: pa.RecordBatch) -> list:
        ids, values = batch.column(0).to_pylist(), batch.column(1).to_pylist()
        by_purpose: dict[int, list[int]] = {}
        for row, p in enumerate(ids):
            by_purpose.setdefault(p, []).append(row)
        return [
            (rows, pool.submit(client.inner_tokens, self.purposes[p], [values[r] for r in rows]))
            for p, all_rows in by_purpose.items() for rows in (all_rows[k:k + size] for k in range(0, len(all_rows), size))
        ]


def _finish(batch: pa.RecordBatch, futures: list) -> pa.RecordBatch:
    inner: list[str | None] = [None] * batch.num_rows
    for rows, future in futures:
        for row, token in zip(rows, future.result()):
            inner[row] = token
    return pa.RecordBatch.from_arrays([batch.column(0), batch.column(1), pa.array(inner, pa.string())], names=["p", "value", "inner"])


class ServiceInnerTokens:
    """The inner source of the block-salted encoding that asks the key service (federated mode)."""

    def __init__(self, cfg: KeyServiceClientConfig) -> None:
        self.cfg = cfg

    def __repr__(self) -> str:
        return f"ServiceInnerTokens(url={self.cfg.url!r}, service={self.cfg.service!r}, key_version={self.cfg.key_version})"

    def check(self, purposes: Sequence[str]) -> None:
        """Before any Spark work: every purpose pinned (all unpinned ones named at once, before any
        request), the credential accepted and the service's public keys the pinned ones (one small
        request per purpose; no value is sent)."""
        unpinned = sorted({p for p in purposes if self.cfg.pinned(p) is None})
        if unpinned:
            raise KeyServiceProofError(
                f"no public key is pinned for {len(unpinned)} purpose(s) the model needs, {unpinned} (key version "
                f"{self.cfg.key_version}): add them to the provider's key service config (`natlink keyservice public-keys` "
                "at the custodian; `--dataset` with the dataset's config for the purposes of its declared identifiers)"
            )
        client = KeyServiceClient(self.cfg)
        for purpose in sorted(set(purposes)):
            if client.public_key(purpose) != client.pinned_key(purpose):
                raise KeyServiceProofError(
                    f"the key service's public key for {purpose!r} (key version {self.cfg.key_version}) is not the pinned one"
                )

    def attach(self, stage: DataFrame, items: Sequence[tuple[str, str, Column]]) -> DataFrame:
        """``stage`` with one inner-token column per item (name, purpose, value column); NULL
        where the value is NULL or empty."""
        row_key = [c for c in (C.DATASET, C.RECORD_ID) if c in stage.columns]
        if C.RECORD_ID not in row_key:
            raise SchemaError(f"inner tokens from the key service join back on {C.RECORD_ID}; present: {sorted(stage.columns)}")
        for _, purpose, _ in items:
            if self.cfg.pinned(purpose) is None:
                raise KeyServiceProofError(f"no public key is pinned for purpose {purpose!r} in the provider's key service config")
        purposes = sorted({purpose for _, purpose, _ in items})
        pid = {purpose: j for j, purpose in enumerate(purposes)}
        entries = [
            F.struct(F.lit(i).alias("i"), F.lit(pid[purpose]).alias("p"), value.cast("string").alias("value"))
            for i, (_, purpose, value) in enumerate(items)
        ]
        long = (
            stage.select(*row_key, F.explode(F.array(*entries)).alias("e"))
            .select(*row_key, F.col("e.i").alias("i"), F.col("e.p").alias("p"), F.col("e.value").alias("value"))
            .where(F.col("value").isNotNull() & (F.length("value") > 0))
        )
        # An explicit number of partitions for the evaluation: adaptive execution would coalesce the
        # (small) distinct pairs into one task, and the blinding and unblinding would run on one core.
        parts = max(2, 2 * stage.sparkSession.sparkContext.defaultParallelism)
        pairs = long.select("p", "value").dropDuplicates(["p", "value"]).repartition(parts)
        evaluated = pairs.mapInArrow(_Evaluate(self.cfg.model_dump(), purposes), _SCHEMA)
        joined = long.join(evaluated, on=["p", "value"], how="inner").select(*row_key, "i", "inner")
        wide = joined.groupBy(*row_key).pivot("i", list(range(len(items)))).agg(F.max("inner"))
        wide = wide.select(*row_key, *[F.col(str(i)).alias(name) for i, (name, _, _) in enumerate(items)])
        return stage.join(wide, on=row_key, how="left")


@contextlib.contextmanager
def named_failures():
    """A key service error raised inside a Spark task reaches the driver wrapped in Spark's
    exception, or in the named error of the step that ran the job (a Delta write keeps Spark's
    exception as its context only): re-raise it as the key service's named error (its message
    carries no value or secret)."""
    try:
        yield
    except KeyServiceError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated when a task failed on the key service, else re-raised
        named = _task_failure(exc)
        if named is None:
            raise
        raise named from None


def _task_failure(exc: BaseException) -> KeyServiceError | None:
    seen = 0
    while exc is not None and seen < 8:
        found = _FAILURE.search(str(exc)) if not isinstance(exc, NatlinkError) else None
        if found is not None:
            kind = getattr(errors, found.group(1), None)
            if isinstance(kind, type) and issubclass(kind, KeyServiceError):
                return kind(f"{found.group(2)} (in a Spark task)")
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None
