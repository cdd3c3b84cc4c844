"""dlenv's bundled PyTorch smoke test: one conclusive verdict, with figures, in under a minute.

This package is copied onto hosts and into containers and run as ``python -m dlenv_smoke``
in whatever Python environment the stack made there, usually without dlenv installed. It
therefore depends only on torch and the standard library, and importing the package itself
imports neither torch nor anything heavy (the CLI and the diagnosis rules must work even when
torch is missing or broken, because that is one of the things it diagnoses).

Exit codes: 0 passed on a GPU (or on CPU when ``--device cpu`` was asked for), 10 the job
passed but no usable GPU was found, 1 failed.
"""

from __future__ import annotations

__version__ = "0.1.0"

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_CPU_ONLY = 10
