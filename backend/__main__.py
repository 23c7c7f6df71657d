"""``python -m backend``: the same as ``gatelane-backend``."""

from backend.cli import main

raise SystemExit(main())
