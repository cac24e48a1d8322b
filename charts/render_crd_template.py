"""Renders the chart's CRD template from the generated CRD, so the chart keeps no hand-edited copy of it.

    python charts/render_crd_template.py > charts/modeldeploy/templates/crd.yaml      (run by `make crds`)

The CRD lives in templates/, not in the chart's crds/ folder, because Helm installs crds/ once and never upgrades
it (helm#8668); a template is upgraded with the release. `crds.install` turns it off and `crds.keep` adds
helm.sh/resource-policy: keep, so that `helm uninstall` leaves the CRD, and so every ModelDeployment, in place.
"""

import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
GENERATED_CRD = REPO / "crds" / "modeldeployments.serving.modeldeploy.dev.yaml"
CHART_CRD_TEMPLATE = REPO / "charts" / "modeldeploy" / "templates" / "crd.yaml"


def _indented(document: Any, spaces: int) -> str:
    text = yaml.safe_dump(document, sort_keys=False, width=120)
    # Helm would read "{{" in a description or a CEL rule as a template action: print it as a literal instead.
    text = text.replace("{{", '{{ "{{" }}')
    return "".join(f"{' ' * spaces}{line}" if line.strip() else line for line in text.splitlines(keepends=True))


# Set by the chart's own labels on every object it installs.
CHART_LABELS = frozenset({"app.kubernetes.io/part-of"})


def render_template(crd: dict[str, Any]) -> str:
    metadata = crd["metadata"]
    unexpected = set(metadata) - {"name", "labels"}
    if unexpected:
        raise ValueError(f"the generated CRD's metadata has fields this renderer does not carry over: {unexpected}")
    own_labels = {key: value for key, value in (metadata.get("labels") or {}).items() if key not in CHART_LABELS}
    return (
        f"# Generated from {GENERATED_CRD.relative_to(REPO)} by `make crds` (charts/render_crd_template.py); "
        "do not edit.\n"
        "{{- if .Values.crds.install }}\n"
        f"apiVersion: {crd['apiVersion']}\n"
        f"kind: {crd['kind']}\n"
        "metadata:\n"
        f"  name: {metadata['name']}\n"
        "  labels:\n"
        '    {{- include "modeldeploy.labels" . | nindent 4 }}\n'
        f"{_indented(own_labels, 4) if own_labels else ''}"
        "  {{- if .Values.crds.keep }}\n"
        "  annotations:\n"
        "    # helm uninstall leaves the CRD, and so every ModelDeployment, in place.\n"
        "    helm.sh/resource-policy: keep\n"
        "  {{- end }}\n"
        "spec:\n"
        f"{_indented(crd['spec'], 2)}"
        "{{- end }}\n"
    )


def main() -> None:
    crd = yaml.safe_load(GENERATED_CRD.read_text())
    sys.stdout.write(render_template(crd))


if __name__ == "__main__":
    main()
