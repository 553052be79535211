"""The service's own TLS with client certificates (the deployment doc's first option): a provider
with a certificate from the providers' CA is served; one without is refused at the handshake."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from natlink.errors import KeyServiceUnavailableError
from natlink.keyservice.client import KeyServiceClient

from ks_support import make_setup


def _cert(subject: str, key, issuer_key, issuer_name: x509.Name | None, *, ca: bool = False, ip: str | None = None):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(folder, name, cert, key):
    (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    (folder / f"{name}.key").chmod(0o600)
    return str(folder / f"{name}.pem"), str(folder / f"{name}.key")


def test_mutual_tls(tmp_path):
    pki = tmp_path / "pki"
    pki.mkdir()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA (not secret)", ca_key, ca_key, None, ca=True)
    ca_pem, _ = _write(pki, "ca", ca, ca_key)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    server_pem, server_key_pem = _write(pki, "server", _cert("keyservice", server_key, ca_key, ca.subject, ip="127.0.0.1"), server_key)
    client_pem, client_key_pem = _write(pki, "client", _cert("gp", client_key, ca_key, ca.subject), client_key)

    setup = make_setup(tmp_path / "ks")
    raw = yaml.safe_load(setup.service_config.read_text())
    raw["tls"] = {"certificate": server_pem, "private_key": server_key_pem, "client_ca": ca_pem}
    setup.service_config.write_text(yaml.safe_dump(raw))
    setup.start()
    try:
        url = setup.url.replace("http://", "https://")
        good = setup.client_config("gp", url=url, tls_ca=ca_pem, tls_client_certificate=client_pem, tls_client_key=client_key_pem)
        assert len(KeyServiceClient(good).inner_tokens("salted:inner/field:sex", ["F", "M"])) == 2
        no_cert = setup.client_config("gp", url=url, tls_ca=ca_pem, retries=0)
        with pytest.raises(KeyServiceUnavailableError):
            KeyServiceClient(no_cert).inner_tokens("salted:inner/field:sex", ["F"])
        plain = setup.client_config("gp", retries=0)  # plain HTTP to the TLS port
        with pytest.raises(KeyServiceUnavailableError):
            KeyServiceClient(plain).inner_tokens("salted:inner/field:sex", ["F"])
    finally:
        setup.stop()
    assert [r["outcome"] for r in setup.audit_lines()] == ["ok"]
