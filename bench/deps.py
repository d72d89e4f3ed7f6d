"""Third-party packages the bench imports only when a job needs them, each prepared in this one place.

pyautoattack is installed under that name, but robustbench (and RobustBench's own code) import it as
`autoattack`; robustbench 1.1.1 imports setuptools' pkg_resources, whose deprecation warning would otherwise
print on every run that touches it (that one warning is filtered, nothing else).
"""
from __future__ import annotations

import sys
import warnings


def import_autoattack():
    """pyautoattack's AutoAttack class, with the package also importable as `autoattack`."""
    import pyautoattack

    sys.modules.setdefault("autoattack", pyautoattack)
    return pyautoattack.AutoAttack


def import_robustbench():
    """The robustbench package, importable (autoattack aliased) and quiet about pkg_resources."""
    import_autoattack()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import robustbench
        import robustbench.loaders  # noqa: F401 - the module that imports pkg_resources
    return robustbench
