"""The base install stays torch-free and stages name their extra when it is missing."""

import subprocess
import sys

import pytest

from edgeret.runtime.extras import require_extra


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_runtime_and_cli_help_do_not_import_torch():
    code = (
        "import sys, edgeret, edgeret.runtime.preprocess, edgeret.cli.main\n"
        "edgeret.cli.main.main(['--help'])\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    assert _run(code).strip().endswith("NO-TORCH")


def test_dataset_and_metric_modules_are_torch_free():
    code = (
        "import sys, edgeret.data.catalog, edgeret.data.metrics, edgeret.data.scoring, edgeret.data.wordnet\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    assert _run(code).strip() == "NO-TORCH"


def test_missing_extra_names_the_extra():
    with pytest.raises(ImportError, match=r"pip install 'edgeret\[distill\]'"):
        require_extra("distill", ["surely_not_a_module_xyz"])


def test_cli_reports_unknown_command(capsys):
    from edgeret.cli.main import main

    with pytest.raises(SystemExit):
        main(["no-such-command"])
    assert "unknown command" in capsys.readouterr().err
