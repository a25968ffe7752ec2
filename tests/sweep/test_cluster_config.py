"""cluster.yaml and cluster-onprem.yaml: accepted by Ray's own launcher checks, and shaped for hamtune."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from hamtune.config import load_sweep
from hamtune.sweep.cluster import launcher_worker_types

from tests.support.shared import REPO


def _prepared(name: str) -> dict[str, Any]:
    config = prepare_config(yaml.safe_load((REPO / name).read_text()))
    validate_config(config)
    return config


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    return _prepared("cluster.yaml")


def _workers(cluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: spec for name, spec in cluster["available_node_types"].items() if name != cluster["head_node_type"]}


def test_ray_accepts_both_cluster_files() -> None:
    assert _prepared("cluster.yaml")["provider"]["type"] == "aws"
    assert _prepared("cluster-onprem.yaml")["provider"]["type"] == "local"


def test_the_head_runs_the_driver_but_no_trials(cluster: dict[str, Any]) -> None:
    head = cluster["available_node_types"][cluster["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    assert head["max_workers"] == 0


def test_gpu_workers_autoscale_from_zero(cluster: dict[str, Any]) -> None:
    workers = _workers(cluster)
    assert workers, "cluster.yaml needs a worker node type"
    for name, spec in workers.items():
        assert spec["resources"].get("GPU", 0) >= 1, name
        assert spec["min_workers"] == 0, name
        assert 1 <= spec["max_workers"] <= cluster["max_workers"], name
        assert spec["node_config"]["InstanceType"].startswith("g5."), name


def test_every_trial_of_the_cluster_sweep_fits_one_worker_and_none_the_head(cluster: dict[str, Any]) -> None:
    sweep = load_sweep(REPO / "sweeps" / "ham10000.yaml")
    head = cluster["available_node_types"][cluster["head_node_type"]]["resources"]
    for model in sweep.space.models:
        need = sweep.resources.for_model(model)
        assert need.gpus > 0, model
        fits = [name for name, spec in _workers(cluster).items()
                if need.cpus <= spec["resources"]["CPU"] and need.gpus <= spec["resources"]["GPU"]]
        assert fits, f"{model} ({need.cpus} CPU, {need.gpus} GPU) fits no worker type"
        assert need.cpus > head.get("CPU", 0) or need.gpus > head.get("GPU", 0)


def test_the_cluster_sweep_keeps_every_gpu_worker_busy(cluster: dict[str, Any]) -> None:
    """Fewer concurrent trials than workers leaves paid GPUs idle; more only queue."""
    sweep = load_sweep(REPO / "sweeps" / "ham10000.yaml")
    assert sweep.search.max_concurrent == cluster["max_workers"]


def test_the_docker_image_matches_the_installed_ray_and_python(cluster: dict[str, Any]) -> None:
    match = re.fullmatch(r"rayproject/ray:(?P<ray>[0-9.]+)-py(?P<python>[0-9]+)-gpu", cluster["docker"]["image"])
    assert match, cluster["docker"]["image"]
    assert match["ray"] == ray.__version__
    assert match["python"] == f"{sys.version_info.major}{sys.version_info.minor}"


def test_nodes_install_cuda_tensorflow_and_the_synced_project(cluster: dict[str, Any]) -> None:
    (remote,) = [path for path, local in cluster["file_mounts"].items() if local == "."]
    for commands in ("head_setup_commands", "worker_setup_commands"):
        assert any(f'-e "{remote}[gpu]"' in command for command in cluster[commands]), commands
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'gpu = \["tensorflow\[and-cuda\]', pyproject)


def _values(tree: Any, key: str) -> list[Any]:
    if isinstance(tree, dict):
        return [v for k, v in tree.items() if k == key] + [x for v in tree.values() for x in _values(v, key)]
    if isinstance(tree, list):
        return [x for item in tree for x in _values(item, key)]
    return []


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster-onprem.yaml"])
def test_no_port_is_opened_to_the_internet(name: str) -> None:
    config = _prepared(name)
    open_ranges = {"0.0.0.0/0", "::/0"}
    assert not open_ranges & set(_values(config, "CidrIp") + _values(config, "CidrIpv6"))
    if config["provider"]["type"] == "aws":  # without its own group, `ray up` opens SSH to 0.0.0.0/0
        for name, node_type in config["available_node_types"].items():
            assert node_type["node_config"].get("SecurityGroupIds"), name
    starts = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert "--dashboard-host" not in starts  # Ray's default: loopback only
    assert "--ray-client-server-port" not in starts


def test_the_launcher_config_on_the_head_names_the_gpu_workers(cluster: dict[str, Any], tmp_path: Path) -> None:
    bootstrap = tmp_path / "ray_bootstrap_config.yaml"
    bootstrap.write_text(json.dumps(cluster))  # `ray up` writes the prepared config as JSON
    assert launcher_worker_types(bootstrap) == sorted(_workers(cluster))
    assert launcher_worker_types(tmp_path / "absent.yaml") == []
