"""``python -m backend.console``: the officer console and its users."""

from backend.console.cli import main

raise SystemExit(main())
