"""Build script: cythonizes every compiled twin under src/avatarkit_fast.

A compiled module is either ``_NAME_c.pyx`` (hand-written C-level code) or
``_NAME_c.py`` (the pure twin ``_NAME_py.py`` compiled as-is against
``_NAME_c.pxd``).  ``AVATARKIT_NO_EXTENSIONS=1`` skips the build entirely and
the package runs on its pure-Python twins; ``AVATARKIT_CYTHON_DEBUG=1`` turns
bounds checks, wraparound and line tracing back on.
"""

import os
import platform
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
PKG = HERE / "src" / "avatarkit_fast"

NO_EXTENSIONS = (
    os.environ.get("AVATARKIT_NO_EXTENSIONS", "") not in ("", "0")
    or platform.python_implementation() != "CPython"
)
DEBUG = os.environ.get("AVATARKIT_CYTHON_DEBUG", "") not in ("", "0")


def _heal_twin_links():
    """``_X_c.py`` is a symbolic link to ``_X_py.py`` (one source, compiled
    against ``_X_c.pxd``).  Where a checkout cannot make links (Git on Windows
    by default) it holds the link's target as text: copy the twin there."""
    for pxd in PKG.rglob("_*_c.pxd"):
        link = pxd.with_suffix(".py")
        twin = pxd.with_name(pxd.stem[: -len("_c")] + "_py.py")
        if not twin.is_file() or not link.exists() or link.is_symlink():
            continue
        if link.read_bytes().strip() == twin.name.encode():
            link.write_bytes(twin.read_bytes())


# Floating point as the pure twins compute it: no fused multiply-add, which
# rounds once where numpy rounds twice (the default contraction on arm64 and
# macOS, and with -mfma on x86).  These flags come after the environment's
# CFLAGS, so they win over a -ffp-contract=fast there; the C code does not
# depend on them either (see akf_blend in _ring_c.pyx).
_FP_GCC = ["-ffp-contract=off"]  # gcc, clang, and clang-cl (which takes it too)
_FP_MSVC = ["/fp:precise"]  # no contraction under /fp:precise since VS 2022


def _compile_args():
    if os.name == "nt":
        import sysconfig

        cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "").lower()
        if "clang" in cc:  # clang-cl: MSVC's switches and clang's
            return _FP_MSVC + ["-ffp-contract=off"]
        return list(_FP_MSVC)
    return (["-O1", "-g"] if DEBUG else ["-O3", "-g0"]) + _FP_GCC


def _extensions():
    from Cython.Build import cythonize

    _heal_twin_links()
    from setuptools import Extension
    import numpy

    sources = sorted(PKG.rglob("_*_c.pyx")) + sorted(PKG.rglob("_*_c.py"))
    exts = []
    for src in sources:
        rel = src.relative_to(HERE / "src").with_suffix("")
        name = ".".join(rel.parts)
        macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
        if DEBUG:
            macros += [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]
        exts.append(
            Extension(
                name,
                [str(src.relative_to(HERE))],
                include_dirs=[numpy.get_include()],
                define_macros=macros,
                extra_compile_args=_compile_args(),
            )
        )
    directives = {
        "language_level": 3,
        "boundscheck": DEBUG,
        "wraparound": DEBUG,
        "cdivision": not DEBUG,
        "initializedcheck": DEBUG,
        "embedsignature": True,
    }
    if DEBUG:
        directives["linetrace"] = True
    return cythonize(exts, compiler_directives=directives, quiet=True)


class BuildPy(build_py):
    """Leaves out a ``_NAME_c.py`` source when it is compiled: the wheel ships
    the extension, and the twin ``_NAME_py.py`` stays as the readable fallback."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        if NO_EXTENSIONS:
            return modules
        return [m for m in modules if not m[1].endswith("_c")]


setup(
    ext_modules=[] if NO_EXTENSIONS else _extensions(),
    cmdclass={"build_py": BuildPy},
)
