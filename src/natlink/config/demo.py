"""The demo's YAML (``conf/demo.yaml``): population size, output folder and the configs it runs."""

from __future__ import annotations

from pydantic import Field

from natlink.config.base import Frozen


class DemoConfig(Frozen):
    persons: int = 10_000
    seed: int = 42
    output_dir: str = "output/demo"
    key: str | None = None  # key reference; None -> a random demo key file under output_dir
    # manifest signing key reference; None -> NATLINK_SIGNING_KEY, else a random one under output_dir/keys
    signing_key: str | None = None
    environment: str = "conf/environments/local.yaml"
    model: str = "conf/model.yaml"
    link: str = "conf/link.yaml"
    datasets: list[str] = Field(default_factory=lambda: ["conf/datasets/gp.yaml", "conf/datasets/hes.yaml"])
    model_dir: str = "linkage_models"
