"""The synthetic population: pinned output, independence from partitioning, size limits."""

from __future__ import annotations

import pytest

from natlink.config.synth import SynthConfig
from natlink.errors import ConfigError
from natlink.synth.population import population

# Golden digests, computed from the generator before natlink.synth was split into modules: a
# change to any draw, name table, error rate or column format changes them. Update them only for
# an intended change of output, and say so.
POPULATION_200_SEED_3 = "cca323e698a937b4308463864e6d531c6f844ef25f990edaec5eaa2502de8b9c"


def test_population_of_200_persons_matches_its_golden_digest(spark, rows_digest):
    assert rows_digest(population(spark, 200, 3)) == POPULATION_200_SEED_3


def test_population_is_the_same_whatever_the_partitioning_and_differs_by_seed(spark):
    cols = ["true_person_id", "given_name", "family_name", "dob", "nhs_number", "postcode"]
    one = population(spark, 2000, seed=7).select(cols)
    # the same rows whatever the partitioning: 1 range vs 8 ranges of person numbers
    eight = population(spark, 2000, seed=7, config=SynthConfig(persons_per_file=1000)).select(cols)
    assert one.exceptAll(eight).count() == 0
    other = population(spark, 2000, seed=8).select(cols)
    same = one.join(other, on=cols, how="inner").count()
    assert same == 0


def test_population_rejects_sizes_without_unique_nhs_numbers(spark):
    with pytest.raises(ConfigError, match="persons"):
        population(spark, 0, 1)
    with pytest.raises(ConfigError, match="persons"):
        population(spark, 90_000_001, 1)
