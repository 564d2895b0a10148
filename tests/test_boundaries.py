"""The package boundary: the engine runs without Kafka, imports go streams -> models only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_engine_loads_no_streaming_stack():
    code = (
        "import sys, dialin.models; "
        "bad = [m for m in ('faust', 'kafka', 'aiokafka', 'prometheus_client', 'dialin.streams') "
        "if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_no_engine_module_imports_the_service():
    offenders = []
    for path in (ROOT / "models").rglob("*.py"):
        depth = len(path.relative_to(ROOT / "models").parts)  # models/x.py: 1, models/sub/x.py: 2
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
                if node.level > depth:
                    names.append("..")  # a relative import out of dialin.models
            for name in names:
                if name == ".." or name.split(".")[0] in {"faust", "kafka", "aiokafka", "streams"} \
                        or name.startswith("dialin.streams"):
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []


def test_nothing_imports_a_bare_models_package():
    offenders = []
    for folder in ("models", "streams", "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                        node.module.split(".")[0] in {"models", "streams"}:
                    offenders.append(f"{path}: {node.module}")
                if isinstance(node, ast.Import):
                    offenders += [f"{path}: {a.name}" for a in node.names
                                  if a.name.split(".")[0] in {"models", "streams"}]
    assert offenders == []
