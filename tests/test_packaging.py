"""The distribution: one package name, what the wheel carries, which way the packages depend on each other."""

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import capfilt

ROOT = Path(__file__).resolve().parent.parent
# Repository folder -> the package it installs as (setup.py's package_dir).
PACKAGES = {
    "src/capfilt": "capfilt",
    "pipeline": "capfilt.pipeline",
    "models": "capfilt.models",
    "demo": "capfilt.demo",
}
PRODUCTION = ("capfilt.pipeline", "capfilt.models")
# ARCHITECTURE.md's rule, lowest layer first: a module may import its own layer and the layers below it only.
# `capfilt` itself (the version) is below all; its command line (`capfilt.cli`, `python -m capfilt`) is above all.
LAYERS = ("capfilt.models", "capfilt.pipeline", "capfilt.demo", "capfilt.cli")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return next(dist.glob("capfilt-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> tuple[Path, dict]:
    """The wheel installed into a folder of its own, and an environment that sees capfilt only from there."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    # Dependencies from this environment, capfilt only from the wheel: with -S the editable install of this
    # checkout is not on the path.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]]),
        "PYTHONNOUSERSITE": "1",
    }
    return target, env


def test_wheel_installs_one_top_level_package_with_its_data(wheel):
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert archive.read(top_level).decode().split() == ["capfilt"]
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"capfilt"}
    assert "capfilt/pipeline/pipelines.yaml" in names
    for model in ("captioner", "itm", "clip"):
        assert f"capfilt/models/embedded/{model}/model.safetensors" in names
        assert f"capfilt/models/embedded/{model}/config.json" in names
    # embedded:clip loads its CLIPProcessor from these; a worker without them could not build one.
    for part in ("processor_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert f"capfilt/models/embedded/clip/{part}" in names
    assert "capfilt/demo/world.py" in names and "capfilt/__main__.py" in names
    # Training the demo checkpoints is a source-checkout tool; workers never run it.
    assert not [n for n in names if n.startswith("capfilt/demo/training/")]


def _user_folder(path: Path) -> Path:
    """A project folder of the kind most ML users have: its own models/, pipeline/ (with a select.py) and demo/,
    each of which fails loudly if anything imports it, and a select.py of its own."""
    for package in ("models", "pipeline", "demo"):
        (path / package).mkdir(parents=True)
        (path / package / "__init__.py").write_text(f"raise ImportError('the user\\'s {package}/ was imported')\n")
    (path / "pipeline" / "select.py").write_text("raise ImportError('the user\\'s pipeline/select.py was imported')\n")
    # A script of the user's own named like a standard-library module; `python -m` puts this folder first on the
    # path, so it shadows the real `select` for every program (it must not be one capfilt needs by that name).
    (path / "select.py").write_text("def select(rows):\n    return rows\n")
    return path


@pytest.mark.parametrize("entry", ["console_script", "python_m"])
def test_installed_wheel_runs_the_demo_beside_a_users_own_packages(installed, tmp_path, entry):
    target, env = installed
    folder = _user_folder(tmp_path / "project")
    head = (
        [sys.executable, "-S", str(target / "bin" / "capfilt")]
        if entry == "console_script"
        else [
            sys.executable,
            "-S",
            "-m",
            "capfilt",
        ]
    )
    probe = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            "import capfilt.cli as c, capfilt.models.loading as m; print(c.__file__)",
        ],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.startswith(str(target))
    small = ["--set", "demo_data.shards=1", "--set", "demo_data.samples_per_shard=16"]
    result = subprocess.run(
        [*head, "run", "demo", *small], env=env, cwd=folder, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = folder / "capfilt-demo" / "output"
    assert (out / "_SUCCESS").exists() and (out / "00000.tar").exists()
    assert json.loads((out / "report.json").read_text())["totals"]["input"] == 16
    version = subprocess.run([*head, "--version"], env=env, cwd=folder, capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip() == f"capfilt {capfilt.__version__}"


def test_production_modules_never_import_the_demo_package():
    """Import every module of capfilt.pipeline and capfilt.models in a fresh interpreter: no capfilt.demo."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import capfilt.pipeline, capfilt.models\n"
        "for package in (capfilt.pipeline, capfilt.models):\n"
        "    for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('capfilt.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    assert "capfilt.pipeline.beam_job" in loaded and "capfilt.pipeline.launch" in loaded
    assert not [m for m in loaded if m.startswith("capfilt.demo")]


def _imports(path: Path, module: str, is_package: bool):
    """(absolute module name, line, inside a function) of every import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for n in ast.walk(f)}
    here = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, id(node) in functions, 0
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            yield target, node.lineno, id(node) in functions, node.level


def _package_modules():
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            yield path, ".".join([package, *(parts[:-1] if is_package else parts)]), is_package


def _layer(module: str) -> int | None:
    """The module's place in ``LAYERS`` (None for ``capfilt`` itself and for other distributions)."""
    if module in ("capfilt.__main__",):
        return len(LAYERS) - 1
    return next((i for i, layer in enumerate(LAYERS) if module == layer or module.startswith(layer + ".")), None)


def test_packages_import_themselves_relatively_and_every_import_points_down_the_layers():
    problems = []
    for path, module, is_package in _package_modules():
        where = path.relative_to(ROOT)
        for target, line, _, level in _imports(path, module, is_package):
            top = target.split(".")[0]
            if level == 0 and top in ("pipeline", "models", "demo", "capfilt"):
                problems.append(f"{where}:{line}: absolute import of {target} inside the package")
            here, there = _layer(module), _layer(target)
            if here is not None and there is not None and there > here:
                problems.append(f"{where}:{line}: {module} ({LAYERS[here]}) imports {target}, a layer above it")
    assert not problems, "\n".join(problems)


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The walk above reads function-level and relative imports too: a pipeline module reaching the demo from
    inside a function, as the command line once did, is an arrow up."""
    path = tmp_path / "launch.py"
    path.write_text("def f():\n    from ..demo import commands\n")
    ((target, _, in_function, level),) = _imports(path, "capfilt.pipeline.launch", False)
    assert (target, in_function, level) == ("capfilt.demo", True, 2)
    assert _layer(target) > _layer("capfilt.pipeline.launch")


@pytest.mark.skipif(shutil.which("ruff", path=str(Path(sys.executable).parent)) is None, reason="ruff not installed")
def test_ruff_passes_including_the_ban_on_bare_folder_imports():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    result = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


HEAVY = ("torch", "transformers")


def _heavy_modules_after(argv: list[str]) -> tuple[int, list[str]]:
    """Run ``capfilt ARGV`` in a fresh interpreter; its exit code and which of ``HEAVY`` it imported."""
    code = (
        "import sys\n"
        "from capfilt.cli import main\n"
        "try:\n"
        f"    code = main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        f"print(code, sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    exit_code, _, heavy = done.stdout.strip().splitlines()[-1].partition(" ")
    return int(exit_code), ast.literal_eval(heavy)


def test_help_and_argument_errors_import_no_heavy_library():
    # `capfilt --help` and argument errors answer at once: Beam, torch and transformers load only for the work.
    code = (
        "import sys\n"
        "from capfilt.cli import build_parser\n"
        "build_parser().format_help()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'apache_beam', 'torch', 'transformers'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    assert _heavy_modules_after(["--help"]) == (0, [])
    assert _heavy_modules_after(["run", "--no-such-flag"]) == (2, [])


def test_check_and_report_read_an_output_folder_without_torch_or_transformers(tiny_models, shards, tmp_path):
    from tests.helpers import run

    out = tmp_path / "out"
    assert run(tiny_models, shards, out) == 0
    assert _heavy_modules_after(["check", str(out), "--min-kept-fraction", "0.5"]) == (0, [])
    assert _heavy_modules_after(["check", str(out), "--min-kept-fraction", "1.01"]) == (2, [])
    assert _heavy_modules_after(["report", str(out)]) == (0, [])
    assert (out / "report.html").exists()


def test_python_m_capfilt_ignores_a_users_module_named_like_the_standard_librarys(tmp_path):
    """`python -m capfilt` from a folder holding a select.py: Beam imports the standard library's select, never
    the user's (which would end the process with its message)."""
    (tmp_path / "select.py").write_text('raise SystemExit("a user select.py was imported")\n')
    done = subprocess.run(
        [sys.executable, "-m", "capfilt", "report", str(tmp_path / "nothing")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert "user select.py" not in done.stderr
    assert done.returncode == 2 and "no capfilt output here" in done.stderr
