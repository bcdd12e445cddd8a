"""The summary command: every configuration's parameters and PAU count, as JSON and as a table."""
from __future__ import annotations

import json

import pytest

from oss_net.models import summary


def test_summary_json_lists_every_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    assert summary.main(["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 24
    assert {"config", "dataset", "parameters", "pau_modules"} <= set(rows[0])
    full_lits = next(r for r in rows if r["config"] == "full" and r["dataset"] == "lits")
    assert (full_lits["parameters"], full_lits["pau_modules"], full_lits["table1"]) == (10_866_490, 28, "C")
    assert full_lits["encoder_parameters"] + full_lits["decoder_parameters"] == full_lits["parameters"]
    onet = next(r for r in rows if r["config"] == "vanilla_o_net_wide" and r["dataset"] == "brats")
    assert (onet["table1"], onet["latent_size"], onet["decoder_input_width"]) == ("O-Net", 320, 323)


def test_summary_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert summary.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 25 and "pau_modules" in lines[0]
    assert "3,309,313" in lines[1]
