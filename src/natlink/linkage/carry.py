"""Person ids carried into a new linkage from another one: the first run after a key rotation.

A key rotation (docs/keyservice.md, "Rotation and re-tokenisation") changes every token, so the
linkage centre links the re-tokenised tables as a *new linkage*: a new tables folder, since a run
refuses inputs under another key fingerprint than its previous run's. Its first run may take the
person ids of the old linkage instead of minting new ones (``natlink link --carry-ids-from
OLD_TABLES``): the old folder's last completed run's ``clusters`` (read at the version its ``runs``
row records) become the run's *previous* mapping, and :func:`natlink.linkage.ids.assign` matches
the new clusters to it by record overlap, exactly as between two runs of one linkage. A person
keeps its id where the same records are together again; merges, splits, new and retired ids are
that run's ``id_events``.

Records are matched by (dataset, record id): the provider's own record id, carried unchanged into
every token table and never keyed, so a re-tokenised record has the same pair under any key. The
run's ``unique_id`` is made from that pair (:func:`natlink.tokens.reader.with_unique_id`, no token
or key in it), and the carried map is rebuilt from the old ``clusters`` table's ``dataset`` and
``record_id`` columns with the same function, so the two match exactly.

Refused (:class:`~natlink.errors.CarryIdsError`, before any scoring): a folder without a completed
run; one whose runs were made under the inputs' own key fingerprint (that is no rotation: link in
that folder, whose next run keeps its ids by itself); a target folder that already has a completed
run (carrying is for the first run; later runs map to their own previous run); and a folder none
of whose records is among the inputs (the wrong folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from natlink import columns as C
from natlink.errors import CarryIdsError
from natlink.linkage.runs import RunView, completed_runs
from natlink.tokens.reader import with_unique_id

__all__ = ["CarriedIds", "carried_ids"]


@dataclass(frozen=True)
class CarriedIds:
    previous: DataFrame  # unique_id, person_id: the old linkage's last completed run, by (dataset, record id)
    info: dict[str, Any]  # for the run's counts (``carried_ids``): folder, run id, key fingerprint, records


def carried_ids(spark, carry_from: str | Path, tokens: DataFrame, fingerprint: str, *, history: list[dict[str, Any]]) -> CarriedIds:
    """The previous mapping of the first run of a new linkage, from the tables folder ``carry_from``.

    ``tokens``: the run's token records (``dataset``, ``record_id``); ``fingerprint``: their key
    fingerprint; ``history``: the completed runs of the run's own tables folder."""
    carry_from = Path(carry_from)
    if history:
        raise CarryIdsError(
            f"--carry-ids-from {carry_from}: this linkage already has a completed run ({history[-1][C.RUN_ID]!r}); "
            "person ids are carried into the first run of a new linkage only, later runs keep their own previous run's"
        )
    runs = completed_runs(spark, carry_from)
    if not runs:
        raise CarryIdsError(f"--carry-ids-from {carry_from}: no completed link run there (no runs table, or none completed)")
    same = [r[C.RUN_ID] for r in runs if r["key_fingerprint"] == fingerprint]
    if same:
        raise CarryIdsError(
            f"--carry-ids-from {carry_from}: its run(s) {same[-3:]} were made under key fingerprint {fingerprint}, the "
            "same as these inputs': that is not a key rotation. Link these inputs in that tables folder (its next run "
            "keeps its person ids)"
        )
    last = runs[-1]
    old = RunView(spark, carry_from, last).table("clusters").select(C.DATASET, C.RECORD_ID, C.PERSON_ID)
    # One pass over the old clusters: its records, and those among these inputs (records are unique by dataset and id).
    present = tokens.select(C.DATASET, C.RECORD_ID, F.lit(1).alias("__here"))
    tally = old.join(present, on=[C.DATASET, C.RECORD_ID], how="left").agg(
        F.count(F.lit(1)).alias("records"), F.count("__here").alias("matched")
    ).first()
    records, matched = int(tally["records"]), int(tally["matched"])
    if matched == 0:
        raise CarryIdsError(
            f"--carry-ids-from {carry_from}: none of the records of its run {last[C.RUN_ID]!r} is among these inputs "
            "(matched by dataset and record id): not the linkage these tables were re-tokenised from"
        )
    previous = with_unique_id(old).select(C.UNIQUE_ID, F.col(C.PERSON_ID))
    info = {
        "from": str(carry_from),
        C.RUN_ID: last[C.RUN_ID],
        "key_fingerprint": last["key_fingerprint"],
        "records": records,
        "records_matched": matched,
    }
    return CarriedIds(previous, info)
