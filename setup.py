"""Build the required Cython extensions (no pure-Python fallback for either):
fastproxy._core (HTTP/1 reader, relay), and the recorder's fastproxy.io._handover (packing
captured exchanges for the writer process) and fastproxy.io._encode (the writer's encoder)."""
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "fastproxy._core",
        ["fastproxy/_core.pyx"],
        extra_compile_args=["-O2"],
    ),
    Extension(
        "fastproxy.io._encode",
        ["fastproxy/io/_encode.pyx"],
        extra_compile_args=["-O2"],
    ),
    Extension(
        "fastproxy.io._handover",
        ["fastproxy/io/_handover.pyx"],
        extra_compile_args=["-O2"],
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False},
    ),
)
