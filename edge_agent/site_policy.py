"""The lane machine's decision policy as the configuration file sets it.

``[passes]``: the declared-weight rule (``tolerance_rule``, ``default_tolerance_kg`` for the
absolute rule, ``tolerance_percent``) and the site's tares per plate; ``[plates]``,
``[containers]`` and ``[eseal]``: the identity checks, their waits (a decision waits the
longest of the checks made) and what an unread plate, container or seal means. Remote settings
(``default_tolerance_kg``) reach the machine through here too: the agent rebuilds the policy
on every change of the effective configuration.
"""

from __future__ import annotations

from edge_agent.config import AgentConfig
from edge_agent.lane.identity import CONTAINER, PLATE, SEAL, IdentityPolicy
from edge_agent.lane.policy import PolicyConfig
from edge_agent.weighing.declared import Tare, TolerancePolicy


def policy_from_config(config: AgentConfig) -> PolicyConfig:
    passes, plates = config.passes, config.plates
    made = [(PLATE.kind, plates.configured, plates.wait_s, plates.unread),
            (CONTAINER.kind, config.containers.check, config.containers.wait_s,
             config.containers.unread),
            (SEAL.kind, config.eseal.url is not None, config.eseal.wait_s, config.eseal.unread)]
    checked = [(kind, wait_s, unread) for kind, on, wait_s, unread in made if on]
    identity = IdentityPolicy(
        checks=tuple(kind for kind, _, _ in checked),
        wait_s=max((wait_s for _, wait_s, _ in checked), default=plates.wait_s),
        unread={kind: unread for kind, _, unread in checked},
    )
    return PolicyConfig(
        e_kg=config.weighbridge.e_kg,
        default_tolerance_kg=passes.default_tolerance_kg,
        tolerance=TolerancePolicy(rule=passes.tolerance_rule,
                                  absolute_kg=passes.default_tolerance_kg,
                                  percent=passes.tolerance_percent),
        tares={plate: Tare(kg, band) for plate, (kg, band) in passes.tare_table().items()},
        identity=identity,
    )
