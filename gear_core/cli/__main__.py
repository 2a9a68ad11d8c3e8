"""``python -m gear_core.cli``: the ``gear`` command."""

from gear_core.cli import main

raise SystemExit(main())
