"""tunelab's driver-side package, which shares its name with the standard library's `platform`.

Under `python -m platform.tune` from the repository root this package wins on `sys.path`, so
every library that does `import platform; platform.system()` (Ray, torch, pytest, ...) gets
this module. To keep them working, it loads the standard module from the interpreter's stdlib
directory and re-exports all of its names. Nothing that is pickled to Ray workers lives here:
workers import the standard `platform` before our code reaches them.
"""

import importlib.util as _importlib_util
import os as _os
import sysconfig as _sysconfig

_STDLIB_PATH = _os.path.join(_sysconfig.get_paths()["stdlib"], "platform.py")
_spec = _importlib_util.spec_from_file_location("_stdlib_platform", _STDLIB_PATH)
_stdlib_platform = _importlib_util.module_from_spec(_spec)
_spec.loader.exec_module(_stdlib_platform)

globals().update({name: value for name, value in vars(_stdlib_platform).items() if not name.startswith("__")})
