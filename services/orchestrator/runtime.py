"""Bring up what a pipeline runs on: Redis, the reward services, Ray and the rollout worker actors.

A flat tree: the driver owns the embedded Redis and the reward processes, which its `Supervisor`
health-checks and restarts (services/orchestrator/supervisor.py); Ray owns and restarts the actors.
Every start-up step has a deadline and fails with an error that names the service, and
`close()` tears everything down in reverse order, also on errors and Ctrl-C.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from services.orchestrator.cluster import join as join_cluster
from services.orchestrator.placement import NodeRecord, actor_options
from services.orchestrator.reward_procs import RewardProcesses, bring_up, check_given
from services.orchestrator.supervisor import Supervisor

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    cfg: object
    redis_url: str = ""
    reward_addresses: dict[str, str] = field(default_factory=dict)
    workers: list = field(default_factory=list)
    _redis: object = None
    _rewards: RewardProcesses = field(default_factory=RewardProcesses)
    _ray_started: bool = False
    _generation: int = 0  # bumped by restart_workers, so new actors never collide with dying ones' names
    supervisor: Supervisor | None = None
    nodes: NodeRecord = field(default_factory=NodeRecord)  # role -> Ray node ids, for summary.json
    weight_sync: object = None  # the rollout.weight_sync engine (services/weight_sync), made on first sync

    def start(self, model_dir: str, workers: bool = True) -> Runtime:
        """Bring everything up; `workers=False` skips the rollout workers (no stage samples)."""
        try:
            self._check_given_rewards()  # a given service that does not serve: fail before starting any
            self._start_redis()
            self._start_rewards()
            self._start_ray()
            if workers:
                self._start_workers(model_dir)
            self._start_supervisor()
        except BaseException:
            self.close()
            raise
        return self

    def _start_redis(self) -> None:
        from services.transport.redis_server import EmbeddedRedis, connect

        rcfg = self.cfg.redis
        if rcfg.url:
            connect(rcfg.url, password=rcfg.password, socket_timeout_s=rcfg.socket_timeout_s).close()
            self.redis_url = rcfg.url
        else:
            self._redis = EmbeddedRedis(password=rcfg.password, appendfsync=rcfg.appendfsync)
            self.redis_url = self._redis.start()
        log.info("redis at %s", self.redis_url.split("@")[-1])

    def _start_supervisor(self) -> None:
        """Watch what this run started: its reward processes and its embedded Redis."""
        sc = self.cfg.supervisor
        if not sc.enabled:
            return
        self.supervisor = Supervisor(sc)
        if self._redis is not None:
            self.supervisor.watch("redis", self._redis.check, self._redis.restart)
        for name in self._rewards.procs:
            self._watch_reward(name)
        self.supervisor.start()

    def _watch_reward(self, name: str) -> None:
        rw, sc, procs = self.cfg.reward, self.cfg.supervisor, self._rewards
        self.supervisor.watch(
            f"reward service {name}",
            lambda: procs.check(name, sc.check_timeout_s, rw.token, rw.get("tls_ca")),
            lambda: procs.restart(name, self.cfg.launcher.start_timeout_s),
        )

    def raise_if_failed(self) -> None:
        """Fail the run, naming the service, when the supervisor has given one up."""
        if self.supervisor is not None:
            self.supervisor.raise_if_failed()

    def _check_given_rewards(self) -> None:
        rw = self.cfg.reward
        check_given(rw, [s for s in rw.scorers if s in rw.addresses], self.cfg.launcher.start_timeout_s)

    def _start_rewards(self) -> None:
        rw = self.cfg.reward
        given = dict(rw.addresses)
        # A reward model this run trains (reward_model stage, no path given) starts once it exists.
        deferred = {"reward_model"} if not rw.reward_model_path else set()
        missing = [s for s in rw.scorers if s not in given and s not in deferred]
        started = bring_up(self._rewards, rw, missing, self.cfg.launcher.start_timeout_s)
        self.reward_addresses = {
            s: given.get(s) or started[s] for s in rw.scorers if s in given or s in started
        }

    def start_reward_service(self, name: str, overrides: list[str]) -> str:
        """Start reward service `name` mid-run (e.g. the reward model once trained); workers use it next."""
        import ray

        address = bring_up(
            self._rewards, self.cfg.reward, [name], self.cfg.launcher.start_timeout_s, overrides
        )[name]
        self.reward_addresses[name] = address
        if self.supervisor is not None:
            self._watch_reward(name)
        ray.get([w.add_reward_service.remote(name, address) for w in self.workers])
        return address

    def _start_ray(self) -> None:
        import ray

        lc = self.cfg.launcher
        if ray.is_initialized():
            return
        env = {
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
            # vLLM logs every weight reload at INFO: one line per RL step per worker otherwise.
            "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"),
        }
        os.environ.update(env)
        if lc.ray_address:
            join_cluster(lc, env)
        else:
            ray.init(
                num_cpus=lc.num_cpus,
                include_dashboard=lc.include_dashboard,
                runtime_env={"env_vars": env},
                log_to_driver=True,
                configure_logging=True,
                logging_level=logging.WARNING,
            )
        self._ray_started = True

    def _start_workers(self, model_dir: str) -> None:
        import ray

        from services.rollout.worker import RolloutWorker

        rc = self.cfg.rollout
        actor_cls = ray.remote(
            num_cpus=1,
            num_gpus=1 if rc.device == "cuda" else 0,
            max_restarts=3,  # a restart re-runs __init__ (initial weights); the driver re-syncs weights
            # Threaded: `update_weights`, `stop` and `ready` are answered while `serve` runs its loop (the
            # worker's engine lock keeps generate and weight loads apart).
            max_concurrency=4,
        )(RolloutWorker)
        self.workers = [
            actor_cls.options(
                name=f"rollout-{i}-g{self._generation}", **actor_options(self.cfg.launcher.rollout_resources)
            ).remote(
                f"rollout-{i}",
                model_dir,
                rc,
                self.cfg.reward,
                self.cfg.redis,
                self.redis_url,
                self.reward_addresses,
            )
            for i in range(rc.num_workers)
        ]
        for w in self.workers:
            self.nodes.ask("rollout", w)
        try:
            ray.get([w.ready.remote() for w in self.workers], timeout=self.cfg.launcher.start_timeout_s)
        except ray.exceptions.GetTimeoutError as e:
            raise TimeoutError(
                f"rollout workers did not start within {self.cfg.launcher.start_timeout_s:.0f}s "
                f"(engine={rc.engine}, device={rc.device}); see the worker log above"
            ) from e

    def restart_workers(self, model_dir: str) -> None:
        """Replace every rollout worker with one serving `model_dir` (a policy of another architecture,
        e.g. a distilled student: weight sync cannot change a model's shape)."""
        import ray

        for w in self.workers:
            ray.kill(w)
        self.workers, self._generation = [], self._generation + 1
        self.weight_sync = None  # the last weights are another architecture's: none for the new workers
        self._start_workers(model_dir)

    def close(self) -> None:
        import ray

        if self.supervisor is not None:  # first, or it would restart what is being stopped
            self.supervisor.stop()
        if self._ray_started:
            self.nodes.resolve(timeout_s=10.0)  # answered at start-up; only a dead actor's is missing
        for w in self.workers:
            try:
                ray.kill(w)
            except Exception:  # already dead: nothing left to stop
                pass
        self.workers = []
        if self._ray_started:
            ray.shutdown()
            self._ray_started = False
        self._rewards.stop()
        if self._redis is not None:
            self._redis.stop()
            self._redis = None
