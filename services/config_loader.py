"""Compose the r1forge config outside the `r1forge` Hydra main (service entry points, tests).

Uses the same configs/ tree and the same schema as the CLI, so a service started by hand sees
exactly what the orchestrator would have given it.
"""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from services.config import register_configs
from services.paths import CONFIG_DIR


def load_config(overrides: list[str] | None = None, run_dir: str = "runs/adhoc") -> DictConfig:
    """Return the composed, schema-checked config with `overrides` ("key=value") applied."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=[f"run_dir={run_dir}", *(overrides or [])])
    OmegaConf.set_readonly(cfg, True)
    return cfg
