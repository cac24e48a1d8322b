"""The control plane's certificate authority, serving and client certificates, and service-account key.

ECDSA P-256 keys throughout: a cluster's worth of them is generated in milliseconds, where RSA would
cost seconds of our two shared cores on every start.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# A throwaway cluster lives for hours at most; a year keeps clock skew and long sessions irrelevant.
CERTIFICATE_LIFETIME = datetime.timedelta(days=365)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only (keys, kubeconfigs with credentials).

    The file is created 0600 before anything is written, so the secret is never readable by others
    for a moment, whatever the umask.
    """
    path.touch(mode=0o600)
    path.write_bytes(data)


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its PEM private key."""

    cert_pem: bytes
    key_pem: bytes

    def write(self, directory: Path, stem: str) -> None:
        """Write `<stem>.crt` and `<stem>.key` (owner-only)."""
        (directory / f"{stem}.crt").write_bytes(self.cert_pem)
        write_private(directory / f"{stem}.key", self.key_pem)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _subject(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _san_entries(hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for host in hosts:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return entries


class CertificateAuthority:
    """A self-signed CA that issues every certificate of one local cluster."""

    def __init__(self, common_name: str = "modeldeploy-devcluster-ca") -> None:
        self._key = _new_key()
        now = datetime.datetime.now(datetime.UTC)
        name = _subject(common_name)
        self._name = name
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + CERTIFICATE_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )

    @property
    def key_pair(self) -> KeyPair:
        return KeyPair(self._cert.public_bytes(serialization.Encoding.PEM), _key_pem(self._key))

    def _issue(
        self,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        hosts: tuple[str, ...] = (),
    ) -> KeyPair:
        key = _new_key()
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + CERTIFICATE_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )
        if hosts:
            builder = builder.add_extension(x509.SubjectAlternativeName(_san_entries(hosts)), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    def issue_serving(self, common_name: str, hosts: tuple[str, ...] = LOOPBACK_HOSTS) -> KeyPair:
        """A TLS server certificate valid for `hosts` (IP addresses or DNS names)."""
        return self._issue(_subject(common_name), ExtendedKeyUsageOID.SERVER_AUTH, hosts)

    def issue_client(self, user: str, groups: tuple[str, ...] = ()) -> KeyPair:
        """A client certificate: the apiserver reads the user from CN and the groups from O."""
        return self._issue(_subject(user, groups), ExtendedKeyUsageOID.CLIENT_AUTH)


@dataclass(frozen=True)
class ServiceAccountSigningKey:
    """The key pair the apiserver signs service-account tokens with and the controller-manager shares."""

    private_pem: bytes
    public_pem: bytes

    @classmethod
    def generate(cls) -> ServiceAccountSigningKey:
        key = _new_key()
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(private_pem=_key_pem(key), public_pem=public)
