"""Build the Cython kernels in kernels/ into private modules sci_edge._kernels.<name>.

Each kernel is listed explicitly. Flags:
- -O3 and OpenMP (prange over pixels) where the compiler supports it;
- -ffp-contract=off so that no a*b+c is fused into an FMA: aarch64 (Jetson)
  fuses by default, which would break bit-exactness with the numpy references;
- SCI_EDGE_NATIVE=1 adds -march=native for a build that only runs where it is built.
"""
import glob
import os
import sys
import tempfile
import shutil
import subprocess

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

KERNELS = {
    # name: (sources, uses OpenMP)
    "if_sim": (["kernels/if_sim.pyx"], True),
    "bitpack": (["kernels/bitpack.pyx"], True),
    "isi": (["kernels/isi.pyx"], True),
    "tfilter": (["kernels/tfilter.pyx"], True),
    "rans": (["kernels/rans.pyx"], False),
}
OPENMP_MODULES = {f"sci_edge._kernels.{name}" for name, (_, omp) in KERNELS.items() if omp}


def _compiler_accepts(flag: str) -> bool:
    cc = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "t.c")
        with open(src, "w") as f:
            f.write("int main(void){return 0;}\n")
        try:
            res = subprocess.run([cc, flag, src, "-o", os.path.join(tmp, "t")],
                                 capture_output=True, check=False)
        except OSError:
            return False
        return res.returncode == 0


class BuildExt(build_ext):
    def build_extensions(self):
        is_msvc = self.compiler.compiler_type == "msvc"
        openmp = False if is_msvc else _compiler_accepts("-fopenmp")
        if not openmp and not is_msvc:
            print("sci_edge: compiler has no OpenMP; kernels run single-threaded", file=sys.stderr)
        for ext in self.extensions:
            if is_msvc:
                ext.extra_compile_args += ["/O2", "/fp:precise"]
                if ext.name in OPENMP_MODULES:
                    ext.extra_compile_args += ["/openmp"]
                continue
            ext.extra_compile_args += ["-O3", "-ffp-contract=off", "-fno-math-errno"]
            if os.environ.get("SCI_EDGE_NATIVE") == "1":
                ext.extra_compile_args += ["-march=native"]
            if openmp and ext.name in OPENMP_MODULES:
                ext.extra_compile_args += ["-fopenmp"]
                ext.extra_link_args += ["-fopenmp"]
        super().build_extensions()


class BuildPy(build_py):
    """Wheels carry the top-level device profiles (profiles/*.toml) inside the package,
    as sci_edge/profiling/profiles/, where sci_edge.profiling.devices looks first."""

    def run(self):
        super().run()
        dest = os.path.join(self.build_lib, "sci_edge", "profiling", "profiles")
        os.makedirs(dest, exist_ok=True)
        for path in sorted(glob.glob("profiles/*.toml")):
            shutil.copy(path, dest)


def _extensions():
    exts = []
    for name, (sources, _) in KERNELS.items():
        ext = Extension(
            f"sci_edge._kernels.{name}",
            sources=sources,
            include_dirs=[np.get_include(), "kernels"],
            depends=sorted(glob.glob("kernels/*.h")),  # rebuild on header edits; ship in sdists
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        )
        exts.append(ext)
    return cythonize(
        exts,
        build_dir="build/cython",
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt, "build_py": BuildPy})
