"""python -m opendl --cmakedir | --include | --libdir | --version: locations for C++ users."""

import argparse
import os

from . import __version__, cmake_dir

p = argparse.ArgumentParser(prog="python -m opendl")
g = p.add_mutually_exclusive_group(required=True)
g.add_argument("--cmakedir", action="store_true", help="directory of opendlConfig.cmake")
g.add_argument("--include", action="store_true", help="directory of the C++ headers")
g.add_argument("--libdir", action="store_true", help="directory of libopendl.so")
g.add_argument("--version", action="store_true")
a = p.parse_args()
here = os.path.dirname(__file__)
if a.cmakedir:
    print(cmake_dir())
elif a.include:
    print(os.path.join(here, "include"))
elif a.libdir:
    print(os.path.join(here, "lib"))
else:
    print(__version__)
