"""Shared fixtures and the network guard.

Every test runs offline: Hugging Face libraries are put in offline mode, and any attempt to open a
connection to a host other than loopback fails the test (even when library code swallows the error).
Tests may start their own servers on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[_name] = "1"
os.environ.setdefault("TQDM_DISABLE", "1")

NETWORK_ATTEMPTS: list[str] = []
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths and the like stay on this machine
        return True
    host = str(address[0])
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _guarded(real):
    def connect(self, address):
        if not _is_loopback(address):
            NETWORK_ATTEMPTS.append(repr(address))
            raise ConnectionRefusedError(f"tests may not reach the network (tried {address!r})")
        return real(self, address)

    return connect


socket.socket.connect = _guarded(_real_connect)  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded(_real_connect_ex)  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def no_network_attempts():
    """Fail any test during which something tried to reach a non-loopback host."""
    start = len(NETWORK_ATTEMPTS)
    yield
    attempts = NETWORK_ATTEMPTS[start:]
    assert not attempts, f"the test tried to reach the network: {attempts}"


@pytest.fixture(scope="session")
def synth_capture(tmp_path_factory) -> Path:
    """A small synthetic capture (24 frames at 96x72, seed 0), generated once per session."""
    from relationfield.synth import generate_capture

    out = tmp_path_factory.mktemp("synth") / "capture"
    generate_capture(out, seed=0, num_frames=24, resolution=(96, 72), progress=False)
    return out


LEARN_STEPS = 300
"""Steps of the shared short training run (a few minutes on a 2-core CPU)."""


def lite_config(capture: Path, labels_dir: Path, output_dir: Path, steps: int):
    """relationfield-lite for tests: CPU, no viewer, a checkpoint at the end."""
    from relationfield.config import lite_run_config

    return lite_run_config(capture, labels_dir, output_dir, steps, device="cpu")


@pytest.fixture(scope="session")
def labels_dir(synth_capture, tmp_path_factory) -> Path:
    """Ground-truth label store of the shared synthetic capture (written outside the capture)."""
    from relationfield.labels.gt_labeler import label_from_ground_truth

    return label_from_ground_truth(synth_capture, labels_dir=tmp_path_factory.mktemp("labels"), progress=False)


def train_on_one_thread(config) -> Path:
    """Train ``config`` through nerfstudio's loop on one thread; returns the run's config.yml.

    One thread: multi-threaded CPU kernels add up in a varying order, so two runs differ in the last bits and,
    after a few hundred steps, in which small fragments the export finds. On one thread a run is the same in
    every session and CI run (checked: identical checkpoints), so the tests that read it cannot flake.
    """
    import torch
    from nerfstudio.scripts.train import main as train_main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_main(config)
    finally:
        torch.set_num_threads(threads)
    return config.get_base_dir() / "config.yml"


@pytest.fixture(scope="session")
def trained_run(synth_capture, labels_dir, tmp_path_factory) -> Path:
    """config.yml of a relationfield-lite run trained for LEARN_STEPS steps through nerfstudio's loop."""
    return train_on_one_thread(lite_config(synth_capture, labels_dir, tmp_path_factory.mktemp("runs"), LEARN_STEPS))
