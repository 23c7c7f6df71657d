"""``python -m edge_agent --config lane.toml``."""

import sys

from edge_agent.service import main

sys.exit(main())
