"""The cluster's certificates: who signed them, whom they name, where they are valid."""

import ipaddress
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from modeldeploy_devcluster.components import APISERVER_HOSTS
from modeldeploy_devcluster.pki import CertificateAuthority, ServiceAccountSigningKey, write_private


def test_serving_certificate_is_signed_by_the_ca_and_valid_for_loopback_and_service_names() -> None:
    ca = CertificateAuthority()
    ca_cert = x509.load_pem_x509_certificate(ca.key_pair.cert_pem)
    serving = x509.load_pem_x509_certificate(ca.issue_serving("kube-apiserver", APISERVER_HOSTS).cert_pem)

    serving.verify_directly_issued_by(ca_cert)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert "kubernetes.default.svc" in names.get_values_for_type(x509.DNSName)
    usage = serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_client_certificate_names_user_in_cn_and_groups_in_o() -> None:
    ca = CertificateAuthority()
    client = x509.load_pem_x509_certificate(ca.issue_client("alice", groups=("system:masters",)).cert_pem)

    client.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.key_pair.cert_pem))
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert client.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_a_second_cluster_ca_does_not_trust_the_first_ones_certificates() -> None:
    first, second = CertificateAuthority(), CertificateAuthority()
    leaf = x509.load_pem_x509_certificate(first.issue_client("bob").cert_pem)
    # Same subject name, different key: only the signature tells them apart.
    with pytest.raises(InvalidSignature):
        leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(second.key_pair.cert_pem))


def test_service_account_key_pair_is_pem() -> None:
    key = ServiceAccountSigningKey.generate()
    assert key.private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert key.public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")


def test_private_files_are_owner_only_where_the_umask_would_make_them_readable(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        write_private(tmp_path / "secret.key", b"secret")
        CertificateAuthority().key_pair.write(tmp_path, "ca")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "secret.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    assert (tmp_path / "secret.key").read_bytes() == b"secret"
