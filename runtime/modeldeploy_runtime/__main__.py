"""Command line: `serve` (the model server) and `fetch` (the init container that downloads the model).

Every flag has an environment variable `MODELDEPLOY_<SETTING>`; a flag given on the command line wins.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from modeldeploy_runtime.settings import ENV_PREFIX, FetchSettings, ServeSettings, describe_validation_error

EXIT_BAD_SETTINGS = 2
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Short flag names for fetch, where the `model_` prefix of the env vars adds nothing.
_FLAG_ALIASES: dict[type, dict[str, str]] = {
    FetchSettings: {
        "model_uri": "--uri",
        "model_dest": "--dest",
        "model_sha256": "--sha256",
        "fetch_timeout_s": "--timeout-s",
        "fetch_deadline_s": "--deadline-s",
        "fetch_attempts": "--attempts",
        "fetch_backoff_s": "--backoff-s",
        "fetch_max_bytes": "--max-bytes",
    },
}

SettingsType = type[ServeSettings] | type[FetchSettings]


def _flag_names(settings_type: SettingsType) -> dict[str, str]:
    aliases = _FLAG_ALIASES.get(settings_type, {})
    return {field: aliases.get(field, "--" + field.replace("_", "-")) for field in settings_type.model_fields}


def _add_settings_flags(parser: argparse.ArgumentParser, settings_type: SettingsType) -> None:
    """One flag per setting; values stay strings so pydantic validates flags and env vars alike."""
    for field, flag in _flag_names(settings_type).items():
        info = settings_type.model_fields[field]
        env_name = ENV_PREFIX + field.upper()
        default = "required" if info.is_required() else f"default {info.default}"
        help_text = f"{info.description + ' ' if info.description else ''}(env {env_name}; {default})"
        if info.annotation is bool:
            parser.add_argument(flag, dest=field, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=field, default=None, metavar=field.upper(), help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modeldeploy-runtime", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="serve one model over HTTP")
    _add_settings_flags(serve_parser, ServeSettings)
    fetch_parser = commands.add_parser("fetch", help="download and verify a model file (init container)")
    _add_settings_flags(fetch_parser, FetchSettings)
    return parser


def load_settings(arguments: argparse.Namespace) -> ServeSettings | FetchSettings:
    """The subcommand's settings from its flags and the environment; exit code 2 with reasons if invalid."""
    settings_type: SettingsType = ServeSettings if arguments.command == "serve" else FetchSettings
    given = {
        field: value for field in settings_type.model_fields if (value := getattr(arguments, field, None)) is not None
    }
    try:
        return settings_type(**given)
    except ValidationError as error:
        print(describe_validation_error(error, _flag_names(settings_type)), file=sys.stderr)
        raise SystemExit(EXIT_BAD_SETTINGS) from None


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT, stream=sys.stderr)
    settings = load_settings(arguments)
    # Imported late: torch and uvicorn load only once the settings are known to be valid.
    if isinstance(settings, ServeSettings):
        from modeldeploy_runtime.server import serve

        return serve(settings)
    from modeldeploy_runtime.fetch import fetch_model

    return fetch_model(settings)


if __name__ == "__main__":
    sys.exit(main())
