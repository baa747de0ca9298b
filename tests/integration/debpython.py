"""Run a test under Debian's python3 when the interpreter ctest found (a
pyenv shim, say) lacks a module that only Debian's packages install there
(python3-websockets)."""
import importlib.util
import os
import sys

SYSTEM_PYTHON = "/usr/bin/python3"


def reexec_for(module, script):
    """Re-execute `script` with its arguments under /usr/bin/python3 when
    `module` cannot be imported here and that is another interpreter;
    otherwise return (an import error later says what is missing)."""
    if (importlib.util.find_spec(module) is None
            and os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON)
            and os.access(SYSTEM_PYTHON, os.X_OK)):
        os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON, os.path.abspath(script)] + sys.argv[1:])
