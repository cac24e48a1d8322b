"""Kubernetes resource quantities: parsing for comparison and validation (no canonical re-formatting)."""

import re
from decimal import Decimal, InvalidOperation

# The apiserver's own grammar (k8s.io/apimachinery/pkg/api/resource), used as the CRD pattern too.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)")

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}


def parse_quantity(value: str | int | float) -> Decimal:
    """The exact value of a quantity: '1.5Gi', '500m' and '0.5' parse to the numbers they mean."""
    if isinstance(value, int | float):
        return Decimal(str(value))
    if not _QUANTITY_RE.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (examples: 500m, 2, 8Gi, 1.5G)")
    number = _NUMBER_RE.match(value)
    assert number is not None  # the full pattern matched, so a number leads
    digits, suffix = number.group(0), value[number.end() :]
    try:
        base = Decimal(digits)
        if suffix in _BINARY:
            return base * _BINARY[suffix]
        if suffix in _DECIMAL:
            return base * _DECIMAL[suffix]
        return base * (Decimal(10) ** Decimal(suffix[1:]))
    except InvalidOperation as error:
        raise ValueError(f"{value!r} is not a Kubernetes quantity") from error
