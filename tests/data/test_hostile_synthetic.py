"""The synthetic-data command on bad arguments (issue 16): one line, exit status 2, nothing written."""
from __future__ import annotations

import pytest

from oss_net.data.errors import DataArgumentError
from oss_net.data.synthetic import main, write_synthetic_dataset


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": error: " in line]


@pytest.mark.parametrize("layout, minimum", [("brats", 16), ("nnunet", 8)])
def test_a_too_small_shape_is_one_line_and_exit_2(layout, minimum, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--layout", layout, "--cases", "1", "--shape", "4", "4", "4", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = _error_lines(err)
    assert f"shape must be three sizes ≥ {minimum}, got (4, 4, 4) (pass a larger --shape)" in line
    assert not out.exists()


def test_no_cases_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--layout", "lits", "--cases", "0", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "argument --cases: must be at least 1, got 0" in capsys.readouterr().err


def test_an_output_folder_under_a_file_is_one_line_and_exit_2(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["--layout", "lits", "--cases", "1", "--out", str(blocker / "out")]) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert f"{blocker / 'out'}: output folder is not a folder, its parent {blocker} is a file" in line


def test_the_library_error_is_still_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="shape must be three sizes"):
        write_synthetic_dataset("lits", tmp_path, cases=1, shape=(4, 4, 4))
    with pytest.raises(DataArgumentError, match="layout must be"):
        write_synthetic_dataset("mnist", tmp_path, cases=1)
