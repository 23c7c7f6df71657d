"""The lane's state diagram, drawn from the transition table itself.

``python -m edge_agent.lane.diagram > docs/lane-states.md`` writes it; a test fails when the
page and the table disagree, so the picture is always the machine's.
"""

from __future__ import annotations

import sys
from collections import defaultdict

from edge_agent.lane.machine import TRANSITIONS, LaneState
from edge_agent.lane.table import Ignored, On


def render() -> str:
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    ignored: list[tuple[str, str, str]] = []
    for state, row in TRANSITIONS.items():
        for kind, entry in row.items():
            if isinstance(entry, On):
                order = list(LaneState)
                for target in sorted(entry.to, key=lambda s: order.index(LaneState(s.value))):
                    edges[(state.value, str(target.value))].append(kind.__name__)
            elif isinstance(entry, Ignored):
                ignored.append((str(state.value), kind.__name__, entry.why))
    lines = [
        "# Lane states",
        "",
        "Generated from `edge_agent/lane/machine.py` `TRANSITIONS` by",
        "`python -m edge_agent.lane.diagram > docs/lane-states.md`; a test keeps it current.",
        "Each arrow is labelled with the inputs that may take the lane along it.",
        "",
        "```mermaid",
        "stateDiagram-v2",
        f"    [*] --> {LaneState.IDLE.value}",
    ]
    for (source, to), kinds in edges.items():
        lines.append(f"    {source} --> {to}: {', '.join(kinds)}")
    lines += [
        "```",
        "",
        "## Inputs a state ignores, and why",
        "",
        "| state | input | why |",
        "|---|---|---|",
        *(f"| {name} | {kind} | {why} |" for name, kind, why in ignored),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render())
