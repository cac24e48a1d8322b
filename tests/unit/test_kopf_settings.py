import kopf
from modeldeploy_operator.app import configure_kopf


def test_kopf_runs_the_process_in_restricted_mode() -> None:
    kopf_settings = kopf.OperatorSettings()
    configure_kopf(kopf_settings)

    assert kopf_settings.scanning.disabled  # no watching of CRDs and namespaces, so no permission on them needed
