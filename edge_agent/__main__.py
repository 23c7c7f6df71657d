"""``python -m edge_agent --config lane.toml``."""

import sys

from edge_agent.app import main

sys.exit(main())
