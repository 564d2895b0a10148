"""Helpers of the catalog export and import tests: run ``dialin catalog`` in-process with a
test's settings, and check the one-line error contract (exit status 2, one ``error:`` line)."""

from __future__ import annotations

from collections.abc import Mapping

from kafka_harness import settings_env
from typer.testing import CliRunner

from dialin.streams.cli import app
from dialin.streams.settings import Settings, get_settings

runner = CliRunner()


def catalog_cli(monkeypatch, settings: Settings | None, *args: str,
                env: Mapping[str, str] | None = None):
    """``dialin catalog ARGS`` with ``settings``' broker and topics (and ``env``) as DIALIN_*."""
    variables = {**(settings_env(settings) if settings is not None else {}), **(env or {})}
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    return runner.invoke(app, ["catalog", *args])


def one_error_line(result, *words: str) -> str:
    """The single ``error:`` line of a failed command (exit status 2), containing ``words``."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]
