"""``avatarkit-fast serve``: every bad value of every option is one line on
stderr and exit status 2, never a traceback; the edge values that are good
start the server.  The real command runs in a subprocess each time.

``serve`` takes no path, so there is no missing-file or directory case here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import avatarkit_fast

pytest.importorskip("aiohttp", reason="the local motion server needs aiohttp")

LIMIT_S = 20.0


def _env() -> dict:
    env = dict(os.environ)
    pkg_parent = str(Path(avatarkit_fast.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH", "")) if p)
    return env


# option -> bad values (each given as "--option VALUE"): negative, zero, huge, NaN,
# infinite, wrong type, empty, what a header cannot carry.
BAD = {
    "--host": ["", " ", "a host", "tab\there"],
    "--port": ["-1", "65536", "99999", "1e3", "8.5", "nan", "http", "", str(2**64)],
    "--speed": ["0", "-0", "-1", "nan", "inf", "-inf", "1e400", "1001", "fast", ""],
    "--max-session-seconds": ["0", "-5", "nan", "inf", "604801", "1e400", "soon", ""],
    "--max-sessions": ["0", "-1", "100001", str(10**30), "1.5", "nan", "many", ""],
    "--api-key": ["", ":app", "key:", "a key", "key:an app", "k\x01y"],
    "--avatar": ["", "an avatar", "\x7f"],
}
CASES = [pytest.param([opt, value], id=f"{opt}={value!r}") for opt, values in BAD.items() for value in values]
CASES += [
    pytest.param(["--port"], id="--port-missing-value"),
    pytest.param(["--speed"], id="--speed-missing-value"),
    pytest.param(["--max-sessions"], id="--max-sessions-missing-value"),
    pytest.param(["--verbose=1"], id="--verbose-with-a-value"),
    pytest.param(["--no-such-option"], id="unknown-option"),
    pytest.param(["extra-argument"], id="extra-argument"),
]


def _run(args: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "avatarkit_fast", "serve", *args],
        env=_env(), capture_output=True, text=True, timeout=LIMIT_S + 10,
    )
    return proc, time.monotonic() - start


def _assert_usage_error(proc: subprocess.CompletedProcess, elapsed: float) -> None:
    err = proc.stderr
    assert proc.returncode == 2, (proc.returncode, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3, err
    assert lines[0].startswith("avatarkit-fast"), err  # unknown options: the top-level parser speaks
    assert proc.stdout == "", proc.stdout  # nothing started: no endpoint printed
    assert elapsed < LIMIT_S, elapsed


@pytest.mark.parametrize("args", CASES)
def test_a_bad_value_is_one_line_and_exit_2(args):
    proc, elapsed = _run(args)
    _assert_usage_error(proc, elapsed)
    option = args[0].split("=")[0]
    if option in BAD:
        assert option in proc.stderr  # the message names the option


def test_a_port_already_taken_is_one_line_and_exit_2():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc, elapsed = _run(["--host", "127.0.0.1", "--port", str(port)])
    _assert_usage_error(proc, elapsed)
    assert f"127.0.0.1:{port}" in proc.stderr


def test_python_m_server_gives_the_same_one_line():
    proc = subprocess.run([sys.executable, "-m", "avatarkit_fast.server", "--speed", "0"],
                          env=_env(), capture_output=True, text=True, timeout=LIMIT_S + 10)
    _assert_usage_error(proc, 0.0)


GOOD_EDGES = [
    pytest.param([], id="port-0-alone"),
    pytest.param(["--speed", "1000"], id="speed-max"),
    pytest.param(["--speed", "1e-3"], id="speed-tiny"),
    pytest.param(["--max-sessions", "1"], id="max-sessions-1"),
    pytest.param(["--max-sessions", "100000"], id="max-sessions-max"),
    pytest.param(["--max-session-seconds", "604800"], id="max-session-seconds-max"),
    pytest.param(["--api-key", "k:app", "--api-key", "k2", "--avatar", "a-1"], id="keys-and-avatar"),
]


@pytest.mark.parametrize("args", GOOD_EDGES)
def test_an_edge_value_that_is_good_starts_the_server(args):
    proc = subprocess.Popen(
        [sys.executable, "-m", "avatarkit_fast", "serve", "--port", "0", *args],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("console_endpoint_url=http://127.0.0.1:"), (line, proc.poll())
        port = int(line.strip().rsplit(":", 1)[1])
        assert 0 < port <= 65535  # port 0 picked a real one
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        proc.terminate()
        proc.wait(timeout=LIMIT_S)
    assert "Traceback" not in proc.stderr.read()


_NO_AIOHTTP = "import sys; sys.modules['aiohttp'] = None; "


def test_without_aiohttp_the_server_says_what_to_install_once():
    """aiohttp is checked once, when the app module is imported: a clear ImportError
    there, the synth still importable, and ``serve`` one line with exit 1 (an
    installation problem, not a wrong argument); ``serve --help`` still works."""
    code = _NO_AIOHTTP + (
        "import avatarkit_fast.server as s; from avatarkit_fast.server.motion import MotionSynth\n"
        "try:\n    s.MotionServer\nexcept ImportError as e:\n    print(e)\nelse:\n    print('imported')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=LIMIT_S)
    assert proc.returncode == 0, proc.stderr
    assert "needs aiohttp" in proc.stdout and "avatarkit-fast[server]" in proc.stdout
    code = _NO_AIOHTTP + "from avatarkit_fast.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "serve", "--port", "0"], env=_env(),
                          capture_output=True, text=True, timeout=LIMIT_S)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "needs aiohttp" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", code, "serve", "--help"], env=_env(),
                          capture_output=True, text=True, timeout=LIMIT_S)
    assert proc.returncode == 0 and "--max-sessions" in proc.stdout


@pytest.mark.parametrize("kw", [
    {"speed": 0}, {"speed": -1.0}, {"speed": float("nan")}, {"speed": float("inf")}, {"speed": 1001.0},
    {"max_sessions": 0}, {"max_sessions": -1}, {"max_sessions": 1.5}, {"max_sessions": True},
    {"max_session_seconds": 0}, {"max_session_seconds": float("nan")},
])
def test_the_server_refuses_the_same_values_when_embedded(kw):
    from avatarkit_fast.server import MotionServer

    name = next(iter(kw))
    with pytest.raises(ValueError, match=name):
        MotionServer(**kw)
