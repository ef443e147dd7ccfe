"""SLURM script dry run and conda recipe consistency (issue 7)."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_sbatch_dry_run_prints_the_srun_command_and_hints():
    env = {**os.environ, "TANGO_HOST": "tango.example:20000", "REDIS_DATA_URL": "redis://r.example:25002",
           "NXPAR_MPI": "pmi2", "NXPAR_STRIPE_SIZE": "1048576"}
    out = subprocess.run(["bash", str(ROOT / "SLURM" / "nxpar.sbatch"), "nexuswriters", "--dry-run"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert "srun --mpi=pmi2 --cpu-bind=cores --kill-on-bad-exit=1" in out
    assert "NexusWriterService nexuswriters --log=INFO" in out
    assert "HDF5_USE_FILE_LOCKING=FALSE" in out
    assert "TANGO_HOST=tango.example:20000" in out
    # what the script exports is what nxpar reads (nxpar/writers/file_access.py): nothing refused
    from nxpar.writers.file_access import settings_from_env

    exported = dict(item.split("=", 1) for line in out.splitlines() if line.startswith("export ")
                    for item in line[7:].split() if item.startswith("NXPAR_"))
    settings = settings_from_env(exported)
    assert settings.problems == ()
    assert (settings.alignment_threshold, settings.alignment_interval) == (1048576, 1048576)
    assert {"romio_cb_write": "enable", "cb_buffer_size": "1048576", "striping_unit": "1048576"}.items() <= \
        dict(settings.mpio_hints).items()
    assert exported["NXPAR_STATE_DIR"].endswith("nxpar-state")


def test_sbatch_requires_tango_host():
    env = {k: v for k, v in os.environ.items() if k != "TANGO_HOST"}
    r = subprocess.run(["bash", str(ROOT / "SLURM" / "nxpar.sbatch"), "x", "--dry-run"], env=env,
                       capture_output=True, text=True)
    assert r.returncode != 0 and "TANGO_HOST" in r.stderr


def _recipe() -> dict:
    text = (ROOT / "conda-recipe" / "meta.yaml").read_text()
    text = re.sub(r"{%.*?%}", "", text)
    text = text.replace("{{ version }}", "0").replace("{{ PYTHON }}", "python").replace("{{ mpi }}", "mpich")
    return yaml.safe_load(text)


def test_conda_recipe_parses_and_matches_pyproject():
    recipe = _recipe()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name = lambda spec: re.split(r"[\s<>=!~\[]", spec.strip(), maxsplit=1)[0].lower()  # noqa: E731
    conda_names = {"redis-py": "redis"}  # conda-forge's name of PyPI's redis client ("redis" is the server)
    run = {conda_names.get(name(d), name(d)) for d in recipe["requirements"]["run"]} - {"python", "mpich"}
    assert run == {name(d) for d in project["dependencies"]}
    entry_points = {e.split("=")[0].strip() for e in recipe["build"]["entry_points"]}
    assert entry_points == set(project["scripts"])
    assert any("mpi_" in d for d in recipe["requirements"]["run"] if d.startswith("h5py"))
