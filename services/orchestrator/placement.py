"""Where a run's Ray actors go and where they went: custom-resource pinning and the node record.

On a cluster, `launcher.learner_resources` / `launcher.rollout_resources` pin the learner and the rollout
workers to the nodes that offer those custom resources (`ray start --resources='{"learner_node": 1}'`);
`actor_options` turns one of them into `.options(...)` keyword arguments, so the places that start actors
each add one call. `NodeRecord` asks every actor it is shown which node it runs on (through Ray's
`__ray_call__`, so the actor classes need no extra method) and resolves the answers once, before the run
shuts Ray down; the run writes them to summary.json as `ray_nodes`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


def actor_options(resources) -> dict:
    """`.options(**actor_options(...))` keyword arguments that pin an actor to nodes offering `resources`
    (a mapping resource name -> amount); empty when nothing is asked for."""
    return {"resources": {str(k): float(v) for k, v in resources.items()}} if resources else {}


def missing_resources(demand, cluster: dict[str, float]) -> dict[str, float]:
    """The resources of `demand` that no amount of the cluster's totals (`ray.cluster_resources()`) covers."""
    return {k: float(v) for k, v in (demand or {}).items() if cluster.get(k, 0.0) < float(v)}


def warn_if_unplaceable(lc, cluster: dict[str, float]) -> None:
    """Log (not raise: an autoscaler may still add such a node) a demand no node of the cluster offers."""
    for knob in ("learner_resources", "rollout_resources"):
        missing = missing_resources(lc.get(knob), cluster)
        if missing:
            offered = sorted(k for k in cluster if not k.startswith("node:"))
            log.warning(
                "launcher.%s asks for %s, which no node of the cluster offers (it has %s): those actors "
                "stay pending until a node with them joins (`ray start --resources=...`)",
                knob,
                missing,
                offered,
            )


def _node_id(actor) -> str:  # runs inside the actor
    import ray

    return ray.get_runtime_context().get_node_id()


@dataclass
class NodeRecord:
    """Role -> the Ray node ids its actors ran on, asked of each actor as it starts."""

    _asked: list[tuple[str, object]] = field(default_factory=list)
    nodes: dict[str, list[str]] = field(default_factory=dict)

    def ask(self, role: str, actor) -> None:
        """Queue the question behind the actor's constructor; nothing waits for it here."""
        self._asked.append((role, actor.__ray_call__.remote(_node_id)))

    def resolve(self, timeout_s: float) -> dict[str, list[str]]:
        """Collect the answers (before Ray shuts down). An actor that died before it answered is left out
        of the record with a log line; the run's own error, if any, says why it died."""
        import ray

        for role, ref in self._asked:
            try:
                node = ray.get(ref, timeout=timeout_s)
            except (ray.exceptions.RayError, TimeoutError) as e:
                log.info("no node recorded for a %s actor: %s", role, type(e).__name__)
                continue
            if node not in self.nodes.setdefault(role, []):
                self.nodes[role].append(node)
        self._asked = []
        return self.nodes
