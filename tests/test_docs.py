"""The documentation: every complete program in README.md and docs/ runs as
written, the documentation site builds with ``mkdocs build --strict`` (broken
links and anchors fail it), and the README's own links resolve.

A complete program is a fenced ``python`` block right after a line
``<!-- complete program -->``, or ``<!-- complete program; prints: A | B -->``
when its output must contain the lines A and B.  A program that talks to
``127.0.0.1:8765`` gets a local motion server (``avatarkit-fast serve``) on a
free port instead.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO_ROOT

DOCS = REPO_ROOT / "docs"
MARK = re.compile(r"^<!-- complete program(?:; prints: (?P<prints>.*?))? -->$")
SERVER_ADDRESS = "127.0.0.1:8765"


@dataclass
class Program:
    file: Path
    line: int  # of the marker, 1-based
    code: str
    prints: list[str]

    @property
    def id(self) -> str:
        return f"{self.file.relative_to(REPO_ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted(DOCS.glob("**/*.md"))]


def programs() -> list[Program]:
    found = []
    for path in doc_files():
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            m = MARK.match(line.strip())
            if not m:
                continue
            if i + 1 >= len(lines) or lines[i + 1].strip() != "```python":
                raise AssertionError(f"{path}:{i + 1}: a complete-program marker not followed by ```python")
            end = next((j for j in range(i + 2, len(lines)) if lines[j].strip() == "```"), None)
            if end is None:
                raise AssertionError(f"{path}:{i + 1}: the program's fence never closes")
            prints = [p.strip() for p in (m.group("prints") or "").split("|") if p.strip()]
            found.append(Program(path, i + 1, "\n".join(lines[i + 2 : end]) + "\n", prints))
    return found


PROGRAMS = programs()


def test_the_programs_are_found():
    """README.md and the pages of docs/ hold the complete programs the tests run:
    the README's example, host mode, SDK mode, the controller and SessionGroup."""
    where = {p.file.name for p in PROGRAMS}
    assert {"README.md", "host-mode.md", "sdk-mode.md", "controller.md"} <= where, where
    assert len(PROGRAMS) >= 5


def _imports(code: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def _serve():
    """``avatarkit-fast serve`` on a free loopback port: (process, port)."""
    proc = subprocess.Popen([sys.executable, "-m", "avatarkit_fast", "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    assert line.startswith("console_endpoint_url="), line
    return proc, line.rsplit(":", 1)[1]


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.id for p in PROGRAMS])
def test_complete_program_runs_as_written(program, tmp_path):
    for name in sorted(_imports(program.code)):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{program.id} imports {name}, which is not installed")
    code, server = program.code, None
    if SERVER_ADDRESS in code:
        pytest.importorskip("aiohttp", reason="the local motion server needs aiohttp")
        server, port = _serve()
        code = code.replace(SERVER_ADDRESS, f"127.0.0.1:{port}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, cwd=tmp_path, env=env)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
    assert proc.returncode == 0, f"{program.id}\n{proc.stdout}\n{proc.stderr}"
    for text in program.prints:
        assert text in proc.stdout, f"{program.id}: {text!r} not printed\n{proc.stdout}"


def test_docs_site_builds_strictly(tmp_path):
    """``mkdocs build --strict``: every page in the nav, every link and anchor resolves."""
    pytest.importorskip("mkdocs", reason="the docs extra (mkdocs-material) is not installed")
    pytest.importorskip("material", reason="the docs extra (mkdocs-material) is not installed")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = tmp_path / "site"
    assert (site / "index.html").is_file()
    for page in ("host-mode", "controller", "wire", "relay", "sdk-mode", "server",
                 "guarantees", "benchmarks", "cli", "development"):
        assert (site / page / "index.html").is_file(), page
    assert (site / "images" / "demo-timeline.png").is_file()


def test_readme_links_resolve():
    """The README is read on its own (a code host, the package index): its
    relative links point at files of the repository."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert local, "the README links to no page of docs/"
    missing = [t for t in local if not (REPO_ROOT / t).exists()]
    assert not missing, missing


def test_every_docs_page_is_in_the_nav():
    """A page outside the nav builds but cannot be found; one in the nav but
    absent fails the build (the test above)."""
    yml = (REPO_ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = set(re.findall(r":\s*([\w/-]+\.md)\s*$", yml, flags=re.M))
    pages = {str(p.relative_to(DOCS)) for p in DOCS.glob("**/*.md")}
    assert pages == nav, (pages - nav, nav - pages)


def test_fresh_machine_section_names_every_test_that_needs_the_vendor_recording():
    """Each test file with a test that takes the ``recording`` fixture (the
    vendor's recording, absent from a fresh clone) is named in the README."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## On a fresh machine", 1)[1].split("\n## ", 1)[0]
    users = set()
    for path in sorted((REPO_ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
                if any(a.arg == "recording" for a in node.args.args):
                    users.add(path.name)
    assert users, "no test takes the vendor recording"
    unnamed = sorted(u for u in users if u not in section)
    assert not unnamed, f"the README's fresh-machine section does not name {unnamed}"


def test_readme_figures_are_the_bench_commands_table():
    """The README's one figures table is what ``avatarkit-fast bench`` prints:
    the same header and the same cases in the same order (the figures are a
    machine's; the rows are the command's)."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Figures", 1)[1].split("\n## ", 1)[0]
    assert "avatarkit-fast bench" in section
    blocks = [body for info, body in re.findall(r"^```(\w*)\n(.*?)^```", section, flags=re.S | re.M)
              if not info]
    assert len(blocks) == 1, "one table in the README's figures"
    lines = blocks[0].splitlines()
    proc = subprocess.run([sys.executable, "-m", "avatarkit_fast", "bench", "--rounds", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    printed = proc.stdout.splitlines()
    assert lines[0] == printed[0] and set(lines[1]) == {"-"}

    def cases(rows):
        return [r[:38].strip() for r in rows if r and not set(r) <= {"-"}]

    assert cases(lines[2:-1]) == cases(printed[2:-1]) and lines[-1] == printed[-1]
