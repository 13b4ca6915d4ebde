"""The Kubernetes manifests in infra/k8s/ hold together and start what this repository has.

No Kubernetes cluster runs here, so these checks read the YAML and hold it against the code: every
object has its apiVersion, kind and name; containers run the image docker-compose.yml builds (or its
Redis); the reward Deployments run `python -m services.reward` with arguments its own parser accepts and
probe the gRPC health service on the port the container serves; every Service selects the pods of one
workload on a port they expose; the RayJob's entrypoint is the `r1forge` console script with Hydra
overrides that compose and pass `check_config` against the real config, reaching Redis and the reward
services through those Services, with the run of the two-node test; and every Ray pod gets the cluster's
auth token and the shared volume the run directory lives on.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from services.config import check_config
from services.config_loader import load_config
from services.reward.__main__ import parse_args
from services.reward.scorer import SCORER_NAMES

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "infra" / "k8s"
KINDS = {"ConfigMap", "Service", "StatefulSet", "Deployment", "PersistentVolumeClaim", "RayJob"}
# What a shell or Kubernetes would put in for "$VAR" / "$(VAR)": any non-empty value will do here.
ENV_REF = re.compile(r"\$\(?([A-Z_][A-Z0-9_]*)\)?")


def load_docs() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [dict(d, _file=path.name) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return load_docs()


def by_kind(docs, kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def rayjob(docs) -> dict:
    [job] = by_kind(docs, "RayJob")
    return job


def pod_specs(docs) -> list[tuple[str, dict, dict]]:
    """(owner, pod labels, pod spec) of every pod template: workloads, Ray head/workers, submitter."""
    pods = [
        (
            f"{d['kind']}/{d['metadata']['name']}",
            d["spec"]["template"]["metadata"]["labels"],
            d["spec"]["template"]["spec"],
        )
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
    ]
    job = rayjob(docs)["spec"]
    cluster = job["rayClusterSpec"]
    pods.append(("ray head", {}, cluster["headGroupSpec"]["template"]["spec"]))
    pods += [(f"ray group {g['groupName']}", {}, g["template"]["spec"]) for g in cluster["workerGroupSpecs"]]
    pods.append(("ray job submitter", {}, job["submitterPodTemplate"]["spec"]))
    return pods


def compose_images() -> set[str]:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return {s["image"] for s in [compose["x-r1forge"], *compose["services"].values()] if "image" in s}


def container_ports(spec: dict) -> dict:
    """Port names and numbers -> number, over the pod's containers."""
    ports = {}
    for c in spec["containers"]:
        for p in c.get("ports", []):
            ports[p["containerPort"]] = p["containerPort"]
            if "name" in p:
                ports[p["name"]] = p["containerPort"]
    return ports


def with_env(arg: str) -> str:
    return ENV_REF.sub(lambda m: f"from-{m.group(1).lower()}", arg)


def entrypoint(docs) -> list[str]:
    return shlex.split(rayjob(docs)["spec"]["entrypoint"])


def service_port(docs, address: str) -> tuple[dict, int]:
    """The Service a "name:port" address names, and that port; fails when there is none."""
    host, port = address.rsplit(":", 1)
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    assert host in services, f"{address}: no Service named {host!r} in infra/k8s ({sorted(services)})"
    assert int(port) in [p["port"] for p in services[host]["spec"]["ports"]], (
        f"{address}: Service has no such port"
    )
    return services[host], int(port)


def selected_pod(docs, service: dict) -> tuple[str, dict]:
    selector = service["spec"]["selector"]
    matches = [(o, s) for o, labels, s in pod_specs(docs) if labels and selector.items() <= labels.items()]
    assert len(matches) == 1, f"Service {service['metadata']['name']} selects {len(matches)} workloads"
    return matches[0]


def test_every_object_is_well_formed(docs):
    assert {d["kind"] for d in docs} == KINDS, {d["kind"] for d in docs}
    for d in docs:
        where = f"{d['_file']}: {d.get('kind')} {d.get('metadata', {}).get('name')}"
        assert d.get("apiVersion") and d.get("kind") and d["metadata"].get("name"), where
        assert "spec" in d or d["kind"] == "ConfigMap", where
        assert d["apiVersion"] == {
            "RayJob": "ray.io/v1",
            "Deployment": "apps/v1",
            "StatefulSet": "apps/v1",
        }.get(d["kind"], "v1"), where
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), names
    for d in by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet"):
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert d["spec"]["selector"]["matchLabels"].items() <= labels.items(), d["metadata"]["name"]


def test_containers_run_the_repository_image(docs):
    images = compose_images()
    assert "r1forge:latest" in images and any(i.startswith("redis:7") for i in images), images
    for owner, _, spec in pod_specs(docs):
        for c in spec["containers"]:
            assert c["image"] in images, f"{owner}: image {c['image']} is not one docker-compose.yml runs"


def test_reward_deployments_run_the_reward_entry_point_and_probe_its_grpc_health(docs):
    assert importlib.util.find_spec("services.reward.__main__") is not None
    scorers = set()
    for d in by_kind(docs, "Deployment"):
        [c] = d["spec"]["template"]["spec"]["containers"]
        cmd = c["command"]
        assert cmd[:3] == ["python", "-m", "services.reward"], cmd
        args = parse_args([with_env(a) for a in cmd[3:]])  # the service's own parser (SystemExit if bad)
        assert args.scorer in SCORER_NAMES and args.host == "0.0.0.0", args
        cfg = load_config(args.overrides)
        assert cfg.reward.token and cfg.reward.health_without_token, "the probes cannot send the token"
        ports = container_ports(d["spec"]["template"]["spec"])
        assert ports.get(args.port) == args.port, (
            f"{d['metadata']['name']}: serves {args.port}, exposes {ports}"
        )
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"]["port"] == args.port, (d["metadata"]["name"], probe, c[probe])
        scorers.add(args.scorer)
    assert scorers == set(load_config().reward.scorers), scorers  # the default run's services, all of them


def test_services_select_one_workload_on_a_port_it_exposes(docs):
    for s in by_kind(docs, "Service"):
        owner, spec = selected_pod(docs, s)
        for p in s["spec"]["ports"]:
            assert p["targetPort"] in container_ports(spec), (
                f"Service {s['metadata']['name']} -> {owner}: {p}"
            )


def test_redis_keeps_its_append_only_file_on_a_claim(docs):
    [sts] = by_kind(docs, "StatefulSet")
    conf = {}
    for cm in by_kind(docs, "ConfigMap"):
        for text in cm["data"].values():
            for line in text.splitlines():
                if line.strip() and not line.strip().startswith("#"):
                    key, _, value = line.strip().partition(" ")
                    conf[key] = value
    assert conf["appendonly"] == "yes" and conf["appendfsync"] == "everysec", conf
    [claim] = sts["spec"]["volumeClaimTemplates"]
    [c] = sts["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == conf["dir"], (mounts, conf["dir"])


def test_rayjob_entrypoint_is_r1forge_with_overrides_that_compose(docs):
    args = entrypoint(docs)
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert args[0] in scripts, args[0]
    overrides = [with_env(a) for a in args[1:]]
    cfg = load_config(overrides)
    check_config(cfg)
    assert cfg.launcher.ray_address == "auto"  # the job's driver joins the cluster it runs on
    service, _ = service_port(docs, cfg.redis.url.removeprefix("redis://").split("/")[0])
    assert selected_pod(docs, service)[0] == "StatefulSet/r1forge-redis"
    assert set(cfg.reward.addresses) == set(cfg.reward.scorers), cfg.reward.addresses
    for scorer, address in cfg.reward.addresses.items():
        service, port = service_port(docs, address)
        owner, spec = selected_pod(docs, service)
        cmd = spec["containers"][0]["command"]
        assert cmd[cmd.index("--scorer") + 1] == scorer and cmd[cmd.index("--port") + 1] == str(port), owner
    assert cfg.reward.token, "the reward services require the token"


def test_rayjob_runs_the_two_node_tests_run(docs):
    spec = importlib.util.spec_from_file_location(
        "two_node", REPO / "tests" / "integration" / "test_two_node_ray.py"
    )
    two_node = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = two_node  # its dataclass looks its module up there
    try:
        spec.loader.exec_module(two_node)
    finally:
        del sys.modules[spec.name]
    missing = [o for o in two_node.RUN if o not in entrypoint(docs)]
    assert not missing, f"the RayJob's entrypoint lacks the two-node test's overrides {missing}"


def test_ray_pods_offer_the_placement_resources_and_share_the_run_directory(docs):
    cfg = load_config([with_env(a) for a in entrypoint(docs)[1:]])
    cluster = rayjob(docs)["spec"]["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    offered = set()
    for g in groups:
        raw = g["rayStartParams"].get("resources")
        if raw:
            offered |= set(yaml.safe_load(yaml.safe_load(raw)))  # KubeRay's '"{\"name\": 1}"' quoting
    wanted = set(cfg.launcher.learner_resources) | set(cfg.launcher.rollout_resources)
    assert wanted and wanted <= offered, (wanted, offered)
    claims = {d["metadata"]["name"] for d in by_kind(docs, "PersistentVolumeClaim")}
    for g in groups:
        spec = g["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        [c] = spec["containers"]
        shared = [
            m["mountPath"]
            for m in c["volumeMounts"]
            if volumes[m["name"]].get("persistentVolumeClaim", {}).get("claimName") in claims
        ]
        assert any(cfg.run_dir.startswith(p) and cfg.model.cache_dir.startswith(p) for p in shared), (
            g.get("groupName", "head"),
            shared,
            cfg.run_dir,
        )


def test_every_ray_process_gets_the_clusters_token(docs):
    secrets = set()
    for owner, _, spec in pod_specs(docs):
        for c in spec["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    secrets.add(ref["name"])
            if owner.startswith("ray"):
                env = {e["name"]: e for e in c.get("env", [])}
                assert env["RAY_AUTH_MODE"]["value"] == "token", owner
                assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "ray-auth-token", owner
    assert secrets == {"r1forge-secrets"}, secrets
