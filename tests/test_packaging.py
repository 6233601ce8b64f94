"""A regular install: the wheel carries the configs and the app composes them from the package."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from bucketrnn.app.config import CONF_DIR

ROOT = os.path.dirname(CONF_DIR)
SCRIPTS = {"bucketrnn": "bucketrnn.app.run:main", "bucketrnn-plan": "bucketrnn.app.plan:main",
           "bucketrnn-compare": "bucketrnn.app.compare:main",
           "bucketrnn-launch": "bucketrnn.distributed.launch:main",
           "bucketrnn-prepare": "bucketrnn.app.prepare:main"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel of this checkout, and its contents unpacked as site-packages would hold them."""
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy of what the repository tracks: a build/ left in the checkout by an
    # earlier build could add modules that no longer exist.
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    for name in ("bucketrnn", "conf"):
        shutil.copytree(os.path.join(ROOT, name), src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "--no-build-isolation", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = [p for p in out.iterdir() if p.suffix == ".whl"]
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
        names = z.namelist()
    return wheel, names, site


def test_wheel_carries_every_config_and_the_console_scripts(installed):
    _, names, site = installed
    shipped = {n[len("bucketrnn/conf/"):] for n in names if n.startswith("bucketrnn/conf/")}
    in_repo = {os.path.relpath(os.path.join(d, f), CONF_DIR).replace(os.sep, "/")
               for d, _, files in os.walk(CONF_DIR) for f in files if f.endswith(".yaml")}
    assert in_repo and shipped == in_repo
    (entry,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = (site / entry).read_text()
    for script, target in SCRIPTS.items():
        assert f"{script} = {target}" in text


def _outside(site, tmp_path, *args):
    """Run Python from a directory outside the repository, importing the unpacked wheel."""
    env = dict(os.environ, PYTHONPATH=str(site))
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def test_installed_app_composes_its_config_from_the_package(installed, tmp_path):
    _, _, site = installed
    where = _outside(site, tmp_path, "-c", "import bucketrnn.app.config as c; print(c.CONF_DIR)")
    assert where.returncode == 0, where.stderr[-2000:]
    assert where.stdout.strip() == str(site / "bucketrnn" / "conf")
    job = _outside(site, tmp_path, "-m", "bucketrnn", "--cfg", "job",
                   "bucketing.num_buckets=5")
    assert job.returncode == 0, job.stderr[-2000:]
    assert "num_buckets: 5" in job.stdout and "name: lstm_lm" in job.stdout
    plan = _outside(site, tmp_path, "-m", "bucketrnn.app.plan", "dataset.limit=200",
                    "bucketing.num_buckets=3")
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert "BucketPlan(strategy='optimal', buckets=3" in plan.stdout
    assert not os.listdir(tmp_path)  # nothing written where it ran
