"""No command reads an abbreviated flag: `oss-net-predict --mode standard` must never become `--model standard`."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
# Its source is part of the PAU kernels' build key (pade_activation_unit._extension.build_key): editing it would
# recompile the kernels of every checkout; its flags (--jobs, --force, ...) share no prefix with a longer one.
EXEMPT = {"pade_activation_unit/build.py"}


def parser_calls() -> list[tuple[str, ast.Call]]:
    """(file, call) for every `argparse.ArgumentParser(...)` of the project's sources and scripts."""
    calls = []
    for path in sorted(REPOSITORY.glob("**/*.py")):
        relative = path.relative_to(REPOSITORY).as_posix()
        if relative.startswith(("tests/", ".venv/", "build/")) or "/." in f"/{relative}" or relative in EXEMPT:
            continue
        for node in ast.walk(ast.parse(path.read_text(), relative)):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "ArgumentParser":
                calls.append((relative, node))
    return calls


def test_every_parser_refuses_abbreviated_flags():
    calls = parser_calls()
    assert len(calls) >= 15  # every command of the project: train, infer, predict, evaluate, demo, data, benchmarks
    allowing = [f"{path}:{call.lineno}" for path, call in calls
                if not any(k.arg == "allow_abbrev" and isinstance(k.value, ast.Constant) and k.value.value is False
                           for k in call.keywords)]
    assert not allowing, f"ArgumentParser without allow_abbrev=False: {allowing}"


@pytest.mark.parametrize(("module", "argv", "flag"), [
    ("oss_net.training.cli", ["--train", "--epoch", "3"], "--epoch"),
    ("oss_net.data.synthetic", ["--layout", "flare", "--out", "x", "--case", "2"], "--case"),
])
def test_an_abbreviated_flag_is_an_error(module, argv, flag, capsys):
    parser = importlib.import_module(module).build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(argv)
    assert f"unrecognized arguments: {flag}" in capsys.readouterr().err
