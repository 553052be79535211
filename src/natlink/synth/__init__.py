"""The synthetic population generator: a national population with ground truth, in native Spark.

Every random draw is a pure function of (seed, salt, row keys), so the same seed and
configuration (``conf/synth.yaml``, :class:`natlink.config.synth.SynthConfig`) give
byte-identical files whatever the partitioning or number of cores. Where each concern lives:

* :mod:`.generate` - ``generate()``: write the raw datasets and truth tables (``SynthResult``);
* :mod:`.population` - ``population()``: one row per true person, clean identifiers and history;
* :mod:`.records` - ``dataset_records()``: who is in a dataset, their records, the raw columns;
* :mod:`.corrupt` - the error model that turns clean values into raw ones;
* :mod:`.conditions` - long-term conditions and the clinical codes records carry for them;
* :mod:`.nhs` - valid, unique synthetic NHS numbers (``nhs_check_digit_ok`` to validate one);
* :mod:`.draws` - the deterministic uniform, index, choice and geometric draws;
* :mod:`.tables` - the weighted reference tables (names, ages, postcodes, codes) as alias tables.
"""
