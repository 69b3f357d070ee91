"""The command line: help without TensorFlow, version, python -m bnno."""

import subprocess
import sys

from click.testing import CliRunner

from bnno import __version__
from bnno.cli import cli


def test_help_answers_without_importing_tensorflow():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from bnno.cli import cli\n"
        "result = CliRunner().invoke(cli, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'tensorflow_datasets') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"bnno, version {__version__}"


def test_python_dash_m_bnno_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "bnno", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "Usage: " in result.stdout and "bnno" in result.stdout
