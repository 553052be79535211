"""natlink's own privacy attack suite (issue 15): what an attacker learns from natlink's outputs.

Modules: ``inputs`` (what the attacker holds, columns discovered), ``public`` (published
statistics), ``align`` (a: frequency alignment), ``bloom`` (b: Bloom filter denoising and
decoding), ``crossproject`` (c: joining two project extracts), ``keyguess`` (d: guessing a weak
key from a manifest's fingerprint), ``score`` (the only reader of the synthetic truth),
``prepare`` (building the attacked data with natlink's verbs) and ``run`` (the one table).
See ``docs/threat_model.md``.
"""
