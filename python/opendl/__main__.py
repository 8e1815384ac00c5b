"""python -m opendl: the opendl command (train / evaluate / predict) and, for C++ users, --cmakedir,
--include, --libdir, --version."""

import sys

from .cli import main

sys.exit(main())
