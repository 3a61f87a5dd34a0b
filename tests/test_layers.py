"""The layers and the install: facelm/ is the library and never imports a stage; the stages install under facelm; the
release recipes live in one place; the CLI's help and version."""
from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from facelm.cli import main as facelm
from facelm.runs import current_args
from facelm.student import train as student_train
from facelm.teacher import train as teacher_train

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("teacher", "student", "export", "bench")
APPLICATIONS = ("facelm.reports", "facelm.video", "facelm.photos")


def imported_modules(path: Path) -> set[str]:
    """Every module an `import` or `from ... import` statement in the file names, at any depth."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def is_under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_nothing_in_facelm_imports_a_stage():
    offenders = {f"{path.relative_to(ROOT)}: {name}" for path in (ROOT / "facelm").rglob("*.py")
                 for name in imported_modules(path)
                 if any(is_under(name, stage) or is_under(name, f"facelm.{stage}") for stage in STAGES)}
    assert offenders == set()


def test_the_library_never_imports_the_applications_above_it():
    """Modules directly under facelm/ (the CLI aside, which dispatches to everything) import neither the reports,
    video nor photos sub-packages."""
    library = [p for p in (ROOT / "facelm").glob("*.py") if p.name != "cli.py"] + list((ROOT / "facelm" / "models").glob("*.py"))
    offenders = {f"{path.relative_to(ROOT)}: {name}" for path in library for name in imported_modules(path)
                 if any(is_under(name, app) for app in APPLICATIONS)}
    assert offenders == set()


def test_the_import_check_catches_a_stage_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from facelm.student.train import RECIPE\n    import bench.measure\n")
    assert {"facelm.student.train", "bench.measure"} <= imported_modules(module)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of the checkout, so the build leaves nothing (build/, *.egg-info) in it."""
    out, source = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("source") / "facelm"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "runs", "build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(source)], check=True, capture_output=True, cwd=out)
    return next(out.glob("facelm-*.whl"))


def test_the_wheel_installs_the_stages_under_facelm_only(wheel):
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"facelm"}
    names = set(zipfile.ZipFile(wheel).namelist())
    for stage in STAGES:
        assert f"facelm/{stage}/__init__.py" in names
    assert "facelm/bench/run.py" in names and "facelm/weights/student_mobilenetv2_035.pt" in names


def test_installed_package_imports_facelm_teacher_not_teacher(wheel, tmp_path):
    """The wheel unpacked as site-packages would hold it, in an interpreter that sees neither this checkout nor its
    editable install (-S: no site hooks): `import teacher` fails, `import facelm.teacher.train` works, the released
    weights resolve inside the package, and `facelm --version` prints."""
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    env = {"PYTHONPATH": f"{target}:{sysconfig.get_paths()['purelib']}", "PATH": ""}

    def run(code: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)

    assert "No module named 'teacher'" in run("import teacher").stderr
    done = run("import facelm.teacher.train, facelm.bench.measure, facelm.paths as p; print(facelm.teacher.train.__file__);"
               " print(p.RELEASED_STUDENT.is_file())")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(target / "facelm" / "teacher" / "train.py"), "True"]
    version = run("import sys; from facelm.cli import main; sys.exit(main(['--version']))")
    assert version.returncode == 0 and version.stdout.strip() == "facelm 0.1.0"


def make_variable(name: str) -> str:
    match = re.search(rf"^{name} \?=(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, f"Makefile has no {name}"
    return match.group(1).strip()


def make_recipe(target: str) -> str:
    return re.search(rf"^{target}: .*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M).group(1)


def teacher_defaults() -> dict:
    args = teacher_train.get_args_parser().parse_args([])
    return vars(args) | {"source_share": teacher_train.resolved_source_share(args)}


@pytest.mark.parametrize("stage, module, defaults, card", [
    ("teacher", teacher_train, teacher_defaults, "teacher_resnet18"),
    ("student", student_train, lambda: vars(student_train.get_args_parser().parse_args([])), "student_mobilenetv2_035")])
def test_makefile_model_card_and_defaults_agree_on_the_release_recipe(stage, module, defaults, card):
    """`make teacher` / `make student` add nothing to the command's defaults, and the released model's card records
    those defaults for every recipe option, the release recipe (RECIPE) among them."""
    assert make_variable(f"{stage.upper()}_ARGS") == ""
    assert re.fullmatch(rf"\t\$\(FACELM\) {stage} \$\(DATA_ARG\) --out \$\(RUNS\)/{stage} \$\({stage.upper()}_ARGS\)\n",
                        make_recipe(stage))
    defaults = defaults()
    recorded = current_args(json.loads((ROOT / "weights" / f"{card}.json").read_text())["config"]["args"])
    assert {key: recorded.get(key) for key in module.RECIPE} == module.RECIPE
    from facelm.reports.release import CARD_ARGS

    differing = {key: (recorded[key], defaults[key]) for key in CARD_ARGS
                 if key in recorded and key in defaults and key != "device" and recorded[key] != defaults[key]}
    assert differing == {}


def test_help_goes_to_stdout_in_aligned_columns_and_version_prints(capsys):
    assert facelm(["--help"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "commands" in out
    rows = [line for line in out.splitlines() if line.startswith("  ") and not line.startswith("  -")]
    starts = {len(line) - len(line[2:].split(maxsplit=1)[1]) for line in rows}
    assert len(rows) >= 20 and len(starts) == 1  # every help text starts in one column
    assert facelm(["--version"]) == 0 and capsys.readouterr().out.strip() == "facelm 0.1.0"
    assert facelm(["no-such-command"]) == 2 and "unknown command 'no-such-command'" in capsys.readouterr().err


def test_bench_and_gate_are_facelm_commands(capsys):
    for command in ("bench", "gate"):
        with pytest.raises(SystemExit) as done:
            facelm([command, "--help"])
        assert done.value.code == 0 and f"usage: facelm {command}" in capsys.readouterr().out


def test_default_paths_do_not_depend_on_the_working_folder(tmp_path, monkeypatch):
    from facelm.paths import RELEASED_STUDENT

    monkeypatch.chdir(tmp_path)
    assert RELEASED_STUDENT.is_absolute() and RELEASED_STUDENT.is_file()
    assert teacher_train.get_args_parser().parse_args([]).out == ROOT / "runs" / "teacher"
