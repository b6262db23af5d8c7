"""``python -m mlwatch`` is the ``mlwatch`` command."""

from mlwatch.cli import main

raise SystemExit(main())
