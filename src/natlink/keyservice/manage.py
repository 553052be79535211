"""The key service's verbs, called by :mod:`natlink.commands`: serve, rotate, enrol a provider,
list the public keys providers pin, and set up a provider's tokenise in federated mode."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import yaml

from natlink import columns as C
from natlink.config.base import load
from natlink.config.datasets import DatasetConfig
from natlink.config.identifiers import BUILTIN_TOKEN_NAMES, IdentifierKind
from natlink.config.keyservice import PUBLIC_KEY_PREFIX, KeyServiceClientConfig, KeyServiceConfig
from natlink.config.model import ModelConfig
from natlink.errors import ConfigError, EncodingSpecError
from natlink.keyservice import oprf, service
from natlink.keyservice.client import KeyServiceClient
from natlink.keyservice.spark import ServiceInnerTokens, named_failures, service_encoding_key
from natlink.tokens import keys
from natlink.tokens.encode import token_specs
from natlink.tokens import salted
from natlink.tokens.keys import KeyMaterial
from natlink.tokens.tokenise import SaltedEncoding

__all__ = [
    "Credential", "Rotation", "block_probe", "federated_encoding", "inner_purposes", "named_failures", "new_credential",
    "pinned_purposes", "public_keys", "rotate", "serve",
]


@dataclass(frozen=True)
class Rotation:
    version: int
    reference: str
    config: Path


@dataclass(frozen=True)
class Credential:
    reference: str
    sha256: str  # what the service config lists (credential_sha256)


def serve(config: Path, *, ready: Callable[[str], None]) -> None:
    service.serve(load(config, KeyServiceConfig), ready=ready)


def rotate(config: Path, key_out: str | Path) -> Rotation:
    """Add a master key version (a fresh random key in ``key_out``, mode 0600) and make it current.

    The config file is rewritten (comments are not kept); earlier versions stay listed and served
    until marked ``retired: true`` once every provider has re-tokenised (docs/keyservice.md)."""
    cfg = load(config, KeyServiceConfig)
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    version = max(k.version for k in cfg.keys) + 1
    reference = keys.create_key_file(key_out)
    raw["keys"] = [*raw["keys"], {"version": version, "key": reference}]
    raw["current_version"] = version
    text = yaml.safe_dump(raw, sort_keys=False)
    KeyServiceConfig.model_validate(yaml.safe_load(text))
    config.write_text(text, encoding="utf-8")
    return Rotation(version, reference, config)


def new_credential(out: str | Path) -> Credential:
    reference = keys.create_key_file(out)
    return Credential(reference, service.credential_sha256(keys.resolve_secret_text(reference)))


def inner_purposes(project: str | None = None, *, identifiers: Mapping[str, IdentifierKind] | None = None,
                   scheme: salted.SaltedScheme | None = None) -> list[str]:
    """The purposes the salted encoding may ask the service for: one per token spec purpose of
    the built-in identifiers and of ``identifiers`` (a dataset's, with its declared ones: their
    ``id:KIND:TOKEN`` purposes; None: the built-in ones only); with ``scheme`` (a model's), only
    those its rules and compared fields use (:class:`~natlink.errors.EncodingSpecError` when it
    names a token none of the identifiers makes)."""
    prefix = f"project:{project}/" if project else ""
    if scheme is None:
        return sorted({f"{prefix}salted:inner/{s.purpose}" for s in token_specs(identifiers)})
    bound = scheme.for_identifiers(identifiers)
    return sorted(p for p in bound.key_purposes(prefix) if p.startswith(f"{prefix}salted:inner/"))


def pinned_purposes(*, project: str | None = None, datasets: Sequence[Path] = (), model: Path | None = None) -> list[str]:
    """The purposes ``natlink keyservice public-keys`` prints pins for: those of the built-in
    identifiers, plus the declared identifiers of each dataset config in ``datasets``; with a salted
    ``model`` config, only those the model's rules and fields use (one dataset at a time: a model
    naming a token a dataset does not declare is refused, naming both)."""
    scheme = None
    if model is not None:
        cfg = load(model, ModelConfig)
        if cfg.encoding != "salted":
            raise ConfigError(f"public-keys: {model} is not a salted model (encoding: salted); only its inner tokens come from the key service")
        scheme = salted.SaltedScheme.from_model(cfg, specs=None)
    if not datasets:
        try:
            return inner_purposes(project, scheme=scheme)
        except EncodingSpecError:
            declared = sorted(C.token(f) for f in scheme.inner_fields if f not in BUILTIN_TOKEN_NAMES) if scheme else []
            raise ConfigError(f"public-keys: {model} names {declared}, which no built-in identifier makes: give the dataset "
                              "configs that declare them (--dataset)") from None
    purposes: set[str] = set()
    for path in datasets:
        ds = load(path, DatasetConfig)
        try:
            purposes.update(inner_purposes(project, identifiers=ds.identifier_kinds, scheme=scheme))
        except EncodingSpecError:
            made = {s.name for s in token_specs(ds.identifier_kinds)}
            missing = sorted(C.token(f) for f in scheme.inner_fields if f not in made) if scheme else []
            raise ConfigError(f"public-keys: {model} names {missing}, which dataset {ds.name!r} ({path}) does not declare") from None
    return sorted(purposes)


def public_keys(config: Path, *, version: int | None = None, project: str | None = None, datasets: Sequence[Path] = (),
                model: Path | None = None) -> dict[str, str]:
    """At the custodian, from the master key: purpose -> ``ristretto255:<hex>`` for the pin file,
    for the purposes of :func:`pinned_purposes` (the service derives the same keys on first use)."""
    purposes = pinned_purposes(project=project, datasets=datasets, model=model)  # configs checked before the key is read
    cfg = load(config, KeyServiceConfig)
    version = version or cfg.active_version
    entry = next((k for k in cfg.keys if k.version == version and not k.retired), None)
    if entry is None:
        raise ConfigError(f"{config}: no live key version {version}")
    master = keys.resolve(entry.key)
    return {p: PUBLIC_KEY_PREFIX + oprf.PurposeKey(master, p).public_key.hex() for p in purposes}


def federated_encoding(
    client_config: Path, encoding_key: KeyMaterial, encoding: SaltedEncoding | None, *, project: str | None,
    identifiers: Mapping[str, IdentifierKind] | None = None,
) -> tuple[KeyMaterial, SaltedEncoding]:
    """(the key block keys and salted tokens are made with, the encoding with the service as its
    inner source), checked against the service before any Spark work: every inner purpose the
    model needs for this dataset's ``identifiers`` (declared ones included) pinned, and the
    service's public key of each the pinned one."""
    if encoding is None:
        raise ConfigError(
            "tokenise --keyservice needs a model with 'encoding: salted' (--model): the key service makes "
            "the block-salted encoding's inner tokens"
        )
    cfg = load(client_config, KeyServiceClientConfig)
    source = ServiceInnerTokens(cfg)
    prefix = f"project:{project}/" if project else ""
    source.check([p for p in encoding.scheme.for_identifiers(identifiers).key_purposes(prefix) if p.startswith(prefix + "salted:inner/")])
    return service_encoding_key(encoding_key, cfg), dataclasses.replace(encoding, inner_source=source)


def block_probe(client_config: Path, encoding_key: KeyMaterial, scheme: salted.SaltedScheme, column: str, value: str, *,
                project: str | None = None) -> str:
    """A federated provider's discover probe: the block key of ``value`` under the rule that is
    ``column`` alone, from the key service's inner token (one audited evaluation, pinned key
    checked) and the service encoding key, as its tokenise makes them. No master key needed."""
    cfg = load(client_config, KeyServiceClientConfig)
    client = KeyServiceClient(cfg)
    return salted.block_probe(service_encoding_key(encoding_key, cfg), scheme, column, value, project=project,
                              inner=lambda purpose, v: client.inner_tokens(purpose, [v])[0])
