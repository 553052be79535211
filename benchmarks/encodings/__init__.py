"""Frequency-hiding encodings for natlink (issue 15): a measured prototype, outside the library.

Modules:
* ``prepare``  - a synthetic population tokenised today's way (gp + hes), plus the providers'
  normalised plaintext (which only the provider-side encoders and the scorers read);
* ``salted``   - the block-salted encoding: per blocking rule a keyed block key and comparison
  tokens salted with it, one row per (record, rule); native Spark columns, natlink's HMAC;
* ``provider`` - what providers compute as aggregates: u-probabilities per comparison level and
  coarse frequency classes of values;
* ``linking``  - training (lambda, m by EM with u fixed) and linking on block keys with Splink on
  DuckDB, pairs deduplicated across rules (max probability), clusters, pairwise F1;
* ``leakage``  - block sizes, frequency alignment of the exported table (the attack suite where
  present), block-key alignment and cross-rule equality reconstruction.

The runner is ``benchmarks/bench_frequency_hiding.py``; results in ``RESULTS.md``.
"""
