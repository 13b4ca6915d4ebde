"""Orchestrator: the `r1forge` entry point, pipeline stages, launchers, evaluation and reports."""
