"""Rollout worker: samples groups of completions with a sampling engine and scores them."""
