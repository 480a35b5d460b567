"""Build the required Cython extension fastproxy._core (no pure-Python fallback)."""
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "fastproxy._core",
        ["fastproxy/_core.pyx"],
        extra_compile_args=["-O2"],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False},
    ),
)
