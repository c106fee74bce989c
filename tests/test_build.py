"""The compiled extensions must load wherever they were meant to be built."""

import importlib
import pkgutil

import avatarkit_fast
from avatarkit_fast._compat import NO_EXTENSIONS


def _twin_names():
    names = {m.name for m in pkgutil.walk_packages(avatarkit_fast.__path__, "avatarkit_fast.")}
    return sorted(n[: -len("_py")] for n in names if n.endswith("_py"))


def test_every_pure_twin_has_a_compiled_module_that_loads():
    twins = _twin_names()
    assert twins, "no pure-Python twin modules found"
    if NO_EXTENSIONS:
        return
    for base in twins:
        mod = importlib.import_module(base + "_c")
        # A compiled module is a shared library, never the .py source.
        assert not mod.__file__.endswith(".py"), f"{base}_c loaded from source: {mod.__file__}"


def test_public_modules_use_compiled_code_when_available():
    from avatarkit_fast import wire

    expected = "_wire_py" if NO_EXTENSIONS else "_wire_c"
    assert wire.decode_animation.__module__.endswith(expected)
