"""The pseudonymisation key service: providers make tokens without holding the master key.

The key custodian runs the service (:mod:`natlink.keyservice.service`, ``natlink keyservice
serve``): it holds the master OPRF key of each key version and evaluates a verifiable oblivious
pseudorandom function (RFC 9497, :mod:`natlink.keyservice.oprf`) on blinded group elements, one
OPRF key per purpose. A provider (:mod:`natlink.keyservice.client`) blinds each value, the service
multiplies by its key without seeing the value, and the provider unblinds, verifies the batch
proof against its pinned public key and derives the inner token that the block-salted encoding
keys (:mod:`natlink.keyservice.spark` puts this into Spark). Design, deployment and residual
risks: ``docs/keyservice.md``.
"""
