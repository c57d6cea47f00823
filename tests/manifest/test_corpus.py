"""The malformed-manifest corpus: every file states the diagnostics it must produce.

Each ``corpus/*.yaml`` starts with a comment saying what it proves, then one
``# expect: LINE:COLUMN PATH: MESSAGE (HINT)`` line per diagnostic: the rendered
diagnostic without the file name. The plan is resolved too, so cycle errors (found
only across the whole system) are covered by the same table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.manifest import Diagnostic, ManifestError, format_path, parse
from corral.plan import resolve

CORPUS = Path(__file__).parent / "corpus"
FILES = sorted(CORPUS.glob("*.yaml"))


def expected(text: str) -> list[str]:
    """The ``# expect:`` lines of a corpus file, in order."""
    prefix = "# expect: "
    return [line.removeprefix(prefix) for line in text.splitlines() if line.startswith(prefix)]


def rendered(diagnostic: Diagnostic) -> str:
    """A diagnostic as the corpus writes it: ``line:column path: message (hint)``."""
    text = str(diagnostic)
    location = f"{diagnostic.file}:{diagnostic.line}:{diagnostic.column}: "
    assert text.startswith(location)
    return f"{diagnostic.line}:{diagnostic.column} {text.removeprefix(location)}"


def problems(text: str, name: str) -> ManifestError:
    """The error that loading and resolving ``text`` raises (fails the test if none)."""
    with pytest.raises(ManifestError) as caught:
        resolve(parse(text, name), python="python3")
    return caught.value


def test_corpus_is_large_enough() -> None:
    """The corpus holds at least 40 malformed manifests, each with an expectation."""
    assert len(FILES) >= 40
    assert all(expected(path.read_text(encoding="utf-8")) for path in FILES)


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_corpus_file(path: Path) -> None:
    """A malformed manifest yields exactly the diagnostics its header states, in order."""
    text = path.read_text(encoding="utf-8")
    name = f"some/dir/{path.name}"
    error = problems(text, name)
    assert [rendered(d) for d in error.diagnostics] == expected(text)
    assert {d.file for d in error.diagnostics} == {name}
    assert str(error).splitlines()[0].endswith(f"in {name}:")


def test_several_independent_mistakes_reported_together() -> None:
    """Mistakes in different services and sections all come back in one ManifestError."""
    text = (
        "name: shop\n"
        "services:\n"
        "  web:\n"
        "    command: python app.py\n"
        "    replica: 2\n"
        "    readiness: readyz\n"
        "  api:\n"
        "    command: python api.py\n"
        "    port: 70000\n"
        "    resources:\n"
        "      memory: 1GB\n"
    )
    error = problems(text, "corral.yaml")
    assert [(d.line, d.column, d.path) for d in error.diagnostics] == [
        (5, 5, ("services", "web", "replica")),
        (6, 5, ("services", "web", "readiness", "http")),
        (9, 5, ("services", "api", "port")),
        (11, 7, ("services", "api", "resources", "memory")),
    ]
    assert str(error).startswith("4 problems in corral.yaml:\n")


def test_several_cross_reference_mistakes_reported_together() -> None:
    """Cross-service checks (dependencies, ports, databases, reserved env) all report at once."""
    text = (
        "name: shop\n"
        "services:\n"
        "  api:\n"
        "    command: python api.py\n"
        "    port: 8080\n"
        "    depends_on: [nope]\n"
        "  web:\n"
        "    command: python app.py\n"
        "    port: 8080\n"
        "    database: {name: api}\n"
        "    env: {PORT: '1'}\n"
    )
    error = problems(text, "corral.yaml")
    assert [(d.line, format_path(d.path)) for d in error.diagnostics] == [
        (6, "services.api.depends_on.nope"),
        (9, "services.web.port"),
        (10, "services.web.database"),
        (11, "services.web.env.PORT"),
    ]


def test_diagnostics_name_the_path_given_to_parse() -> None:
    """The file in every diagnostic is exactly the path passed to parse(), as given."""
    error = problems("name: shop\n", "../elsewhere/corral.yaml")
    assert [d.file for d in error.diagnostics] == ["../elsewhere/corral.yaml"]
    assert str(error.diagnostics[0]).startswith("../elsewhere/corral.yaml:1:1: ")
