"""The installed package, outside the checkout: a new venv with `pip install ".[train,eval]"` (a regular install, not
editable) holds only the `rvqgan` namespace and runs every `python -m` entry point's `--help`, the `rvqgan` command,
the shipped model and configs.

The new venv sees the dependencies of the test environment through a `.pth` line (so pip finds them installed and
nothing is downloaded), but not the checkout: commands run in an empty folder without PYTHONPATH."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds a venv

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINTS = [
    "rvqgan.training.train",
    "rvqgan.training.make_default_data",
    "rvqgan.training.tokenize_dataset",
    "rvqgan.training.push_to_hub",
    "rvqgan.training.plot_curves",
    "rvqgan.training.export_default",
    "rvqgan.modeling.convert",
    "rvqgan.evaluation.make_eval_set",
    "rvqgan.cli",
]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The python of a new venv with the package installed from a copy of the checkout's files."""
    folder = tmp_path_factory.mktemp("venv")
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], capture_output=True, text=True
    ).stdout.strip()
    Path(site, "test-environment.pth").write_text(sysconfig.get_path("purelib") + "\n")
    source = folder / "source"  # the tracked files only, as a clean clone has them
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    install = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-build-isolation"]
    result = subprocess.run(
        [*install, "-c", str(ROOT / "constraints-cpu.txt"), f"{source}[train,eval]"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return python


def run(python: Path, cwd: Path, *arguments: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    return subprocess.run([python, *arguments], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_entry_point_help_runs_from_the_installed_package(installed, tmp_path, module):
    result = run(installed, tmp_path, "-m", module, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage:"), result.stdout[:500]


def test_installed_package_is_not_the_checkout_and_ships_model_and_configs(installed, tmp_path):
    code = (
        "import rvqgan, rvqgan.training.config as c, pathlib, sys; from rvqgan import load_model; "
        "assert not pathlib.Path(rvqgan.__file__).is_relative_to(sys.argv[1]), rvqgan.__file__; "
        "m, _ = load_model(None); print(m.config.sampling_rate, m.config.n_codebooks); "
        "print(*sorted(p.stem for p in c.CONFIGS.glob('*.yaml'))); print(c.load_config('tiny').batch_size)"
    )
    result = run(installed, tmp_path, "-c", code, str(ROOT))
    assert result.returncode == 0, result.stderr[-2000:]
    model, configs, batch = result.stdout.splitlines()
    assert model == "44100 9"
    assert configs.split() == sorted(p.stem for p in (ROOT / "training" / "configs").glob("*.yaml"))
    assert int(batch) > 0
    command = run(installed.parent / "rvqgan", tmp_path, "--help")  # the console script
    assert command.returncode == 0 and command.stdout.startswith("usage: rvqgan"), command.stderr[-2000:]


def test_installs_only_rvqgan_named_top_level_packages(installed, tmp_path):
    code = (
        "from importlib.metadata import distribution; "
        "files = distribution('rvqgan').files; "
        "print(*sorted({f.parts[0] for f in files if f.suffix == '.py' and f.parts[0] != '..'}))"
    )
    result = run(installed, tmp_path, "-c", code)
    assert result.returncode == 0, result.stderr[-2000:]
    top_level = result.stdout.split()
    assert top_level == ["rvqgan"], top_level
