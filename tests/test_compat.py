"""One place chooses compiled or pure: ``_compat.load_twin``, used by the
dispatchers (``wire``, ``ring``, ``sync``), the group, the controller and
the tests' ``impl`` fixture."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import avatarkit_fast
from avatarkit_fast import AvatarController, SessionGroup, ring, sync, wire
from avatarkit_fast._compat import NO_EXTENSIONS, load_twin

TWINS = ("wire", "ring", "sync", "group")
PKG = Path(avatarkit_fast.__file__).resolve().parent


def test_load_twin_by_impl():
    for name in TWINS:
        assert load_twin(name, "py").__name__ == f"avatarkit_fast._{name}_py"
        default = load_twin(name)
        assert default.__name__ == f"avatarkit_fast._{name}_{'py' if NO_EXTENSIONS else 'c'}"
        if not NO_EXTENSIONS:
            mod = load_twin(name, "c")
            assert mod is default
            assert not mod.__file__.endswith(".py"), "the compiled module, not the linked source"


@pytest.mark.parametrize("bad", ["C", "cython", "", 1])
def test_load_twin_refuses_an_unknown_impl(bad):
    with pytest.raises(ValueError, match="impl must be 'c', 'py' or None"):
        load_twin("wire", bad)


def test_load_twin_c_of_a_module_never_built_is_an_import_error():
    with pytest.raises(ImportError):
        load_twin("nonexistent", "c")
    with pytest.raises(ImportError):
        load_twin("nonexistent")


def test_every_dispatcher_and_the_controller_follow_load_twin():
    tag = "py" if NO_EXTENSIONS else "c"
    assert wire.decode_animation is load_twin("wire").decode_animation
    assert ring.PcmRing is load_twin("ring").PcmRing and ring.KeyframeStore is load_twin("ring").KeyframeStore
    assert sync.SyncEngine is load_twin("sync").SyncEngine
    for impl in (None, "py") if NO_EXTENSIONS else (None, "c", "py"):
        ctrl = AvatarController(_impl=impl)
        want = impl or tag
        assert ctrl.engine_kind == want
        assert type(ctrl.playout_engine()) is sync.module(want).SyncEngine
        assert repr(SessionGroup([ctrl])).endswith(f"impl={want}>")
    with pytest.raises(ValueError):
        AvatarController(_impl="fast")


def _python(code: str, env_extra: dict, path: Path | None = None) -> str:
    env = dict(os.environ, **env_extra)
    if path is not None:
        env["PYTHONPATH"] = str(path)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=60, cwd=str(path or PKG.parent))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


PROBE = """
from avatarkit_fast import AvatarController, SessionGroup, ring, sync, wire
from avatarkit_fast._compat import load_twin
c = AvatarController()
print(wire.decode_animation.__module__, ring.PcmRing.__module__, sync.SyncEngine.__module__,
      c.engine_kind, repr(SessionGroup([c])).split()[-1])
try:
    load_twin("sync", "c")
except ImportError as exc:
    print("ImportError")
else:
    print("loaded")
"""


def test_no_extensions_selects_every_twin():
    out = _python(PROBE, {"AVATARKIT_NO_EXTENSIONS": "1"}, PKG.parent)
    first, second = out.splitlines()
    assert first.split() == ["avatarkit_fast._wire_py", "avatarkit_fast._ring_py",
                             "avatarkit_fast._sync_py", "py", "impl=py>"]
    # a forced "c" still loads what was built (the tests' impl fixture runs
    # only "py" then); never the linked source
    assert second == ("ImportError" if not list(PKG.glob("_sync_c.*.so")) + list(PKG.glob("_sync_c.*.pyd"))
                      else "loaded")


def test_a_source_tree_without_a_build_falls_back_to_the_twins(tmp_path):
    """The compiled modules absent (``_sync_c.py`` is there, as the link to
    the twin): the default is the twins; ``impl="c"`` is an ImportError."""
    dst = tmp_path / "avatarkit_fast"
    shutil.copytree(PKG, dst, symlinks=True,
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "*.c", "__pycache__"))
    link = dst / "_sync_c.py"
    if not link.exists():
        # An installed wheel leaves the link out (setup.py's BuildPy); a source
        # tree has it, pointing at the twin.
        link.symlink_to("_sync_py.py")
    # A link to the twin, or (a pure-Python install, a checkout without links) its copy.
    assert link.read_bytes() == (dst / "_sync_py.py").read_bytes()
    out = _python(PROBE, {"AVATARKIT_NO_EXTENSIONS": "0"}, tmp_path)
    first, second = out.splitlines()
    assert first.split() == ["avatarkit_fast._wire_py", "avatarkit_fast._ring_py",
                             "avatarkit_fast._sync_py", "py", "impl=py>"]
    assert second == "ImportError"
