"""Everything a person sees: argument parsing, tables, progress, summaries and exit codes.

``runner.py`` enters at :func:`runner_main`; ``python -m qpipe`` (and the ``qpipe`` script) at
:func:`main`. Each command group is one module here, registered in :data:`qpipe.cli.main.COMMANDS`.
The library below never prints: it returns values or emits ``on_event(kind, data)`` events, and
these modules render them. Only this package imports ``rich`` and ``argparse``.
"""

from qpipe.cli._app import EXIT_BUG, EXIT_INTERRUPTED, EXIT_USER_ERROR, guarded
from qpipe.cli.main import main
from qpipe.cli.runner import runner_main

__all__ = ["EXIT_BUG", "EXIT_INTERRUPTED", "EXIT_USER_ERROR", "guarded", "main", "runner_main"]
