"""``natlink run``'s YAML (``conf/run.yaml``): the production path in one Spark application.

Which datasets to tokenise, under which key, with which model and link settings, and where the
outputs go. Paths are relative to the current folder or the project root (:func:`natlink.config.resolve`).
"""

from __future__ import annotations

from pydantic import Field

from natlink.config.base import Frozen


class RunConfig(Frozen):
    # Every output lives under here: tokens/<dataset> (+ signed manifests), model.json (+ sidecar),
    # tables/ (quarantine, clusters, edges, person_index, id_events, runs), reports/<run id>.html.
    output_dir: str = "output/run"
    datasets: list[str] = Field(min_length=1)  # dataset configs (conf/datasets/NAME.yaml)
    data_dir: str | None = None  # fills {data_dir} in each dataset's source path
    key: str  # token key *reference* (env:NAME, file:PATH), never the key itself
    # Manifest signing key reference; None: NATLINK_SIGNING_KEY.
    signing_key: str | None = None
    project: str | None = None  # derive every subkey for this project
    environment: str = "conf/environments/local.yaml"
    model: str = "conf/model.yaml"
    link: str = "conf/link.yaml"
    # The link run id; None: derived from the inputs (token tables, trained model, threshold), so a
    # rerun on the same deliveries is the same run and changes nothing.
    run_id: str | None = None
    report: bool = True  # write reports/<run id>.html (counts only)
    # Truth table (Parquet: dataset, record_id, true_person_id; synthetic data only): precision,
    # recall and F1 in the result and the report.
    truth: str | None = None
