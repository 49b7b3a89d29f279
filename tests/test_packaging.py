"""A wheel (a non-editable install) carries the shipped models, and finds them by name."""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from codec import __version__
from codec.models.loading import shipped_models_dir
from tests.conftest import REPO

SHIPPED = sorted(p.name for p in (REPO / "models").glob("*") if (p / "config.json").is_file())


def test_every_shipped_model_is_in_the_wheels_data_files():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in Python 3.11 and later")
    data_files = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    assert data_files == {**{f"share/codec/models/{name}": [f"models/{name}/*"] for name in SHIPPED},
                          "share/codec/recipes": ["recipes/*.yaml"]}


def test_a_source_checkout_uses_its_own_models_folder():
    assert shipped_models_dir() == REPO / "models"


@pytest.mark.slow
def test_a_wheel_installs_the_models_and_finds_them_by_name(tmp_path):
    wheels, prefix = tmp_path / "wheels", tmp_path / "prefix"
    pip = [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check"]
    # setuptools builds in the source folder (build/, *.egg-info): a copy, so a run stopped midway
    # leaves nothing in the checkout for later wheels to pick up
    source = shutil.copytree(REPO, tmp_path / "source", ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".cache", "logs", ".gpu"))
    build = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, source],
                           capture_output=True, text=True)
    if build.returncode != 0 and "No module named" in build.stderr:
        pytest.skip(f"cannot build a wheel here: {build.stderr.strip().splitlines()[-1]}")
    assert build.returncode == 0, build.stderr
    wheel = next(wheels.glob("codec-*.whl"))
    with zipfile.ZipFile(wheel) as archive:   # the licence travels with the package
        assert any(name.endswith(".dist-info/licenses/LICENSE") for name in archive.namelist())
    # (--ignore-installed: without it, pip would uninstall this environment's own codec first)
    install = subprocess.run([*pip, "install", "--no-deps", "--ignore-installed", "--prefix", prefix, wheel],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    site_packages = next(prefix.glob("lib/python*/site-packages"))
    probe = ("import codec, json; from codec.models.loading import shipped_models_dir, resolve_model_dir; "
             "from codec.train import load_recipe; "
             "print(json.dumps([codec.__file__, str(shipped_models_dir()), str(resolve_model_dir(None)), "
             "load_recipe('tiny').origins.recipe]))")
    env = {**os.environ, "PYTHONPATH": str(site_packages)}
    env.pop("CODEC_MODELS_DIR", None)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    package, models, default, recipe = json.loads(result.stdout)
    assert package.startswith(str(site_packages))                 # the installed copy, not this checkout
    assert models == str(prefix / "share" / "codec" / "models")
    assert sorted(p.name for p in (prefix / "share" / "codec" / "models").iterdir()) == SHIPPED
    assert default.startswith(models)
    assert recipe == str(prefix / "share" / "codec" / "recipes" / "tiny.yaml")   # recipes train by name
    assert sorted(p.name for p in (prefix / "share" / "codec" / "recipes").iterdir()) == \
        sorted(p.name for p in (REPO / "recipes").glob("*.yaml"))
    # python -m codec in a checkout's root, beside an install that is not editable: the checkout's
    # codec/ comes first and has no codec.cli (it is cli/ there)
    # (-S: without this environment's editable install, whose finder maps codec.cli to cli/ wherever run)
    dependencies = os.pathsep.join([str(site_packages), *(p for p in sys.path if p.endswith("site-packages"))])
    inside = subprocess.run([sys.executable, "-S", "-m", "codec", "--version"], capture_output=True, text=True,
                            cwd=source, env={**env, "PYTHONPATH": dependencies})
    assert inside.returncode == 0 and inside.stdout.strip() == f"codec {__version__}", inside.stderr
    check = subprocess.run([sys.executable, "-c", "import codec; print(codec.__file__)"], capture_output=True,
                           text=True, cwd=tmp_path)
    assert check.stdout.strip() == str(REPO / "codec" / "__init__.py")   # this environment's install is untouched


def test_python_dash_m_codec_is_the_command_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "codec", "--version"], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"codec {__version__}", result.stderr
