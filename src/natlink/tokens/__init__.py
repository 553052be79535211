"""tokens: what turns identifiers into keyed tokens, and how the linkage centre reads them back.

keys         managed key material, HKDF subkeys per purpose, key references and providers, key strength
normalise    native normalisation of identifiers before hashing; phonetic codes
hmac_sha256  keyed HMAC-SHA256 columns (JVM function or native composition), pads, the key frame
encode       token and Bloom filter specifications; a frame's identifiers replaced by both
plaintext    identifiers in kept columns (refused before writing); the centre's full-row scan
tokenise     the provider job: a standardised dataset to a token table, quarantine and manifest
signing      Ed25519 signatures of manifests, bound to their table's content; trusted signers
manifest     a token table's manifest (what, under which key, which columns, counts)
reader       the linkage centre's guarded reader of token tables
"""
