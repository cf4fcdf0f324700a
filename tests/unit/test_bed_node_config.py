"""The bed node's configuration (tests/testbed/node.py) keeps every pod and node process on this
machine, and the image builder (tests/testbed/images.py) writes OCI layouts whose digests hold."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml
from testbed import images, node


def test_cni_config_gives_pods_no_default_route_no_masquerade_and_no_gateway_forwarding(tmp_path: Path) -> None:
    subnet = ipaddress.IPv4Network("10.201.0.0/16")
    conflist = json.loads(node._cni_conflist("flinkop-x", "fkbrx", subnet, "10.201.0.1", tmp_path))
    (bridge,) = conflist["plugins"]
    assert bridge["type"] == "bridge"
    assert bridge["ipMasq"] is False
    assert bridge["isGateway"] is False  # would turn on the host's ip_forward
    assert bridge["isDefaultGateway"] is False
    assert bridge["ipam"]["routes"] == []
    (range_,) = bridge["ipam"]["ranges"][0]
    assert ipaddress.ip_address(range_["rangeStart"]) > ipaddress.ip_address("10.201.0.1")  # the host's address
    assert bridge["ipam"]["dataDir"] == str(tmp_path)


def test_containerd_config_restricts_oom_score_adj_and_sends_every_registry_to_a_closed_loopback_port(
    tmp_path: Path,
) -> None:
    text = node._containerd_config(tmp_path, tmp_path / "root", tmp_path / "c.sock", "localhost/pause:x", tmp_path)
    config = tomllib.loads(text)
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["stream_server_address"] == "127.0.0.1"
    assert cri["sandbox_image"] == "localhost/pause:x"
    mirrors = cri["registry"]["mirrors"]
    assert {name: m["endpoint"] for name, m in mirrors.items()} == {
        "docker.io": ["http://127.0.0.1:9"],
        "*": ["http://127.0.0.1:9"],
    }
    assert config["root"] == str(tmp_path / "root")
    assert config["plugins"]["io.containerd.internal.v1.opt"]["path"].startswith(str(tmp_path))
    assert cri["containerd"]["runtimes"]["runc"]["options"]["Root"].startswith(str(tmp_path))


def test_kubelet_listens_on_loopback_only_authenticates_by_certificate_and_writes_no_iptables_rules(
    tmp_path: Path,
) -> None:
    config = yaml.safe_load(node._kubelet_config(tmp_path, 10250, 10248, tmp_path / "ca.crt", "/flinkop-node-x"))
    assert config["address"] == "127.0.0.1"
    assert config["healthzBindAddress"] == "127.0.0.1"
    assert config["readOnlyPort"] == 0
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["authorization"]["mode"] == "Webhook"
    assert config["makeIPTablesUtilChains"] is False
    assert config["resolvConf"] == str(tmp_path / "kubelet" / "resolv.conf")
    assert config["cgroupRoot"] == "/flinkop-node-x"


def test_node_processes_get_aws_metadata_disabled_and_only_a_closed_loopback_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    env = node._closed_proxy_env()
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert env[key] == "http://127.0.0.1:9"


def test_image_tar_is_an_oci_layout_whose_digests_match_its_blobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLINKOP_CACHE_DIR", str(tmp_path))
    payload = tmp_path / "hello.txt"
    payload.write_text("hello\n")
    layer = images._tar_layer("unit", "k1", lambda tar: images._add_file(tar, "hello.txt", payload))
    built = images._image("localhost/unit:1", [layer], {"Cmd": ["cat", "/hello.txt"]}, 0.0)

    with tarfile.open(built.path) as tar:
        blobs = {
            m.name.rsplit("/", 1)[-1]: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile() and m.name.startswith("blobs/sha256/")
        }
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    for digest, data in blobs.items():
        assert hashlib.sha256(data).hexdigest() == digest
    (entry,) = index["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == "localhost/unit:1"
    assert "sha256:" + hashlib.sha256(blobs[entry["digest"].removeprefix("sha256:")]).hexdigest() == entry["digest"]
    assert entry["digest"] == built.manifest_digest
    manifest = json.loads(blobs[entry["digest"].removeprefix("sha256:")])
    config = json.loads(blobs[manifest["config"]["digest"].removeprefix("sha256:")])
    assert config["rootfs"]["diff_ids"] == [layer.diff_id]
    assert manifest["layers"][0]["digest"] == layer.digest

    again = images._image("localhost/unit:1", [layer], {"Cmd": ["cat", "/hello.txt"]}, 0.0)
    assert again.cached and again.path == built.path


def test_a_detached_node_writes_pid_files_in_its_directory_and_an_attached_one_none(tmp_path: Path) -> None:
    assert node._detached(tmp_path, "kubelet", True) == {"detach": True, "pid_path": tmp_path / "pids" / "kubelet.pid"}
    assert node._detached(tmp_path, "kubelet", False) == {"detach": False, "pid_path": None}


def test_stopping_a_detached_node_where_none_was_started_does_nothing_and_an_unreadable_state_is_named(
    tmp_path: Path,
) -> None:
    assert node.stop_detached_node(tmp_path, None) is False
    (tmp_path / node.DETACHED_STATE).write_text("{not json")
    with pytest.raises(node.NodeError, match=node.DETACHED_STATE):
        node.stop_detached_node(tmp_path, None)
