"""The loader's bounds (size, nesting, alias expansion): each refusal is a located
diagnostic, reached without the memory or stack the input asks for.

The small cases are in the corpus (``yaml_alias_*``, ``yaml_deep_*``); these need inputs
too large to keep as files, or a real ``corral validate`` process.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from corral.manifest import ManifestError, load, parse
from corral.manifest._limits import MAX_DEPTH, MAX_MANIFEST_BYTES, MAX_VALUES

HEAD = "name: shop\nservices:\n  web:\n    command: python app.py\n    labels:\n"

BOMB = HEAD + "".join(
    [
        "      a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
        *(
            f"      {name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
            for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)
"""Nine levels of nine aliases: 387 million values once expanded (as the corpus's)."""


def only_problem(text: str) -> str:
    """The single diagnostic that parsing ``text`` raises, rendered."""
    with pytest.raises(ManifestError) as caught:
        parse(text, "corral.yaml")
    assert len(caught.value.diagnostics) == 1
    return str(caught.value.diagnostics[0])


def test_deep_block_mappings_stop_at_the_depth_bound() -> None:
    """1,000 nested block mappings (one space of indent each) are a located error."""
    keys = "".join(f"{' ' * (6 + depth)}k{depth}:\n" for depth in range(1000))
    problem = only_problem(HEAD + keys.rstrip(":\n") + ": x\n")
    # The root is level 1 and labels' mapping level 4, so key k{i} is at level 5 + i:
    # the first past the bound is k{MAX_DEPTH - 4}, on line 6 + MAX_DEPTH - 4.
    first = MAX_DEPTH - 4
    assert problem.startswith(f"corral.yaml:{6 + first}:{7 + first}: services.web.labels.k0.k1.")
    assert f".k{first - 1}: nested deeper than {MAX_DEPTH} levels" in problem


def test_many_values_without_aliases_stop_at_the_value_bound() -> None:
    """A flow list of more values than the bound is refused at the value that crosses it."""
    problem = only_problem(HEAD + "      big: [" + "1," * MAX_VALUES + "1]\n")
    assert f"holds more than {MAX_VALUES:,} values" in problem
    assert problem.startswith("corral.yaml:6:")
    assert ": services.web.labels.big[" in problem


def test_text_over_the_size_bound_is_refused_before_parsing() -> None:
    """Text longer than a manifest may be is one error at 1:1, whatever it holds."""
    problem = only_problem(HEAD + "#" * MAX_MANIFEST_BYTES)
    assert problem.startswith("corral.yaml:1:1: (top level): the manifest is ")
    assert f"it may be at most {MAX_MANIFEST_BYTES:,}" in problem


def test_file_over_the_size_bound_is_refused(tmp_path: Path) -> None:
    """load() refuses a file over the bound (and says it read no further)."""
    path = tmp_path / "corral.yaml"
    path.write_text(HEAD + "#" * MAX_MANIFEST_BYTES, encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        load(path)
    (problem,) = caught.value.diagnostics
    assert (problem.file, problem.line, problem.column) == (str(path), 1, 1)
    assert f"{MAX_MANIFEST_BYTES + 1:,} bytes or more" in problem.message


def test_a_redefined_anchor_prints_no_python_warning() -> None:
    """YAML 1.2 lets an anchor be defined again; the user sees no Python warning."""
    text = "name: shop\nservices:\n  web: &x\n    command: a\n  api: &x\n    command: b\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sorted(parse(text, "corral.yaml").spec.services) == ["api", "web"]


def test_yaml_1_1_spellings_print_no_python_warning() -> None:
    """ruamel.yaml's warnings about YAML 1.1 floats never reach the user's terminal; the
    value is checked like any other."""
    text = "%YAML 1.1\n---\nname: shop\nservices:\n  web:\n    command: x\n    replicas: 1e3\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        problem = only_problem(text)
    assert problem == "corral.yaml:7:5: services.web.replicas: expected an integer, got 1000.0"


def limited(megabytes: int) -> None:
    """In the child: no more than ``megabytes`` of address space."""
    resource.setrlimit(resource.RLIMIT_AS, (megabytes * 2**20, megabytes * 2**20))


CORRAL = Path(sys.executable).with_name("corral")
ADDRESS_SPACE_MB = 512
"""`corral validate` of a small manifest needs under 300 MB of address space here."""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bomb", "corral.yaml:11:14: services.web.labels.f[0]: alias *e repeats 66,430"),
        ("zero", "/dev/zero:1:1: (top level): the manifest is 1,048,577 bytes or more"),
    ],
)
def test_validate_stays_within_bounded_memory(tmp_path: Path, name: str, expected: str) -> None:
    """`corral validate` on an alias bomb, or on an endless file (/dev/zero), answers with
    the located error within a fixed address space (it used to grow without limit)."""
    if name == "bomb":
        (tmp_path / "corral.yaml").write_text(BOMB, encoding="utf-8")
        target = "corral.yaml"
    else:
        target = "/dev/zero"
    child = subprocess.Popen(
        [str(CORRAL), "validate", target],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: limited(ADDRESS_SPACE_MB),
    )
    out, err = child.communicate(timeout=100)
    assert child.returncode == 1, (out, err[-2000:])
    assert "Traceback" not in err
    assert expected in err.replace("\n", " "), err[-2000:]
