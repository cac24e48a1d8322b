from pathlib import Path

from modeldeploy_operator.settings import OperatorSettings
from modeldeploy_operator.settings_reference import render_settings_reference

README = Path(__file__).parents[2] / "README.md"


def test_readme_lists_every_operator_setting_as_the_code_has_it() -> None:
    assert render_settings_reference() in README.read_text(), (
        "paste `python -m modeldeploy_operator.settings_reference` into README.md"
    )


def test_every_setting_is_described() -> None:
    assert [name for name, field in OperatorSettings.model_fields.items() if not field.description] == []
