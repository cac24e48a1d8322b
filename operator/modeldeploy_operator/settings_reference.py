"""The operator's settings (environment variable, flag, default, description) as a Markdown table.

    python -m modeldeploy_operator.settings_reference

README.md carries its output; a test keeps the two in step.
"""

import sys

from modeldeploy_operator.__main__ import build_parser
from modeldeploy_operator.settings import OperatorSettings

# Defaults that depend on where the operator runs, in words.
_DEFAULTS_IN_WORDS = {"namespaces": "all", "leader_election_namespace": "the pod's own"}


def render_settings_reference() -> str:
    flags = {action.dest: action.option_strings[0] for action in build_parser()._actions if action.option_strings}
    rows = ["| Environment variable | Flag | Default | Description |", "| --- | --- | --- | --- |"]
    for name, field in OperatorSettings.model_fields.items():
        value = str(field.default).lower() if isinstance(field.default, bool) else field.default
        default = _DEFAULTS_IN_WORDS.get(name, f"`{value}`")
        flag = f"`{flags[name]}`" if name in flags else ""
        rows.append(f"| `MODELDEPLOY_{name.upper()}` | {flag} | {default} | {field.description} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_settings_reference())
