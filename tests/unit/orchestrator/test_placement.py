"""Pinning actors to nodes by custom Ray resources: the options each actor start adds, and the demand
check against a cluster's resources (the cluster run itself is tests/integration/test_two_node_ray.py)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from services.orchestrator.placement import actor_options, missing_resources, warn_if_unplaceable


def test_actor_options_pin_to_the_resources_asked_for():
    assert actor_options({"learner_node": 0.01}) == {"resources": {"learner_node": 0.01}}
    assert actor_options({"a": 1, "b": 2}) == {"resources": {"a": 1.0, "b": 2.0}}


def test_no_resources_asked_for_add_no_options():
    # Ray's default placement (any node with a free CPU): `.options()` gets nothing, not resources={}.
    assert actor_options({}) == {} and actor_options(None) == {}


def test_missing_resources_are_the_ones_no_node_covers():
    cluster = {"CPU": 3.0, "learner_node": 1.0, "rollout_node": 1.0, "node:10.0.0.1": 1.0}
    assert missing_resources({"learner_node": 0.01}, cluster) == {}
    assert missing_resources({"learner_node": 2, "gpu_node": 0.01}, cluster) == {
        "learner_node": 2.0,
        "gpu_node": 0.01,
    }
    assert missing_resources({}, cluster) == {}


def test_an_unplaceable_demand_is_logged_naming_the_knob(caplog):
    lc = SimpleNamespace(learner_resources={"learner_node": 0.01}, rollout_resources={"rollout_nod": 0.01})
    lc.get = lambda key: getattr(lc, key)
    with caplog.at_level(logging.WARNING, logger="services.orchestrator.placement"):
        warn_if_unplaceable(lc, {"CPU": 2.0, "learner_node": 1.0, "rollout_node": 1.0, "node:x": 1.0})
    [record] = caplog.records
    assert "launcher.rollout_resources" in record.getMessage() and "rollout_nod" in record.getMessage()
    assert "node:x" not in record.getMessage()  # Ray's per-node resources are noise here
