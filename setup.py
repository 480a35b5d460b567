"""Build the required Cython extensions (there is no pure-Python fallback): fastproxy._core
(HTTP/1 reader, relay), and for recording fastproxy.io._handover (capturing exchanges on
the loop and packing them for the writer process), fastproxy.io._ring (the shared memory
between the two) and fastproxy.io._encode (the writer's encoder)."""
import os

from Cython.Build import cythonize
from Cython.Compiler import Options
from setuptools import Extension, setup

Options.warning_errors = True  # a Cython warning fails `make build`, as aiohttp's does

LINETRACE = os.environ.get("FASTPROXY_LINETRACE") == "1"  # `make debug`: for profilers
MODULES = {
    "fastproxy._core": "fastproxy/_core.pyx",
    "fastproxy.io._encode": "fastproxy/io/_encode.pyx",
    "fastproxy.io._handover": "fastproxy/io/_handover.pyx",
    "fastproxy.io._ring": "fastproxy/io/_ring.pyx",
}

extensions = [
    Extension(name, [source], extra_compile_args=["-O2"],
              define_macros=[("CYTHON_TRACE", "1")] if LINETRACE else [])
    for name, source in MODULES.items()
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False,
                             "linetrace": LINETRACE},
    ),
)
