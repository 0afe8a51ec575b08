"""Shared test set-up: no network, quiet libraries, one built-in tiny model per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_builtin() -> dict:
    """The built-in model's build config from conf/model/tiny.yaml."""
    import yaml

    return yaml.safe_load((REPO / "conf" / "model" / "tiny.yaml").read_text())["builtin"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_builtin) -> Path:
    """The built-in tiny model, built once for the whole test session."""
    from m2rl.models.tiny import ensure_tiny_model

    return ensure_tiny_model(tiny_builtin, tmp_path_factory.mktemp("tiny-cache"))


@pytest.fixture()
def ledger_with_sft(tmp_path, tiny_model_dir):
    """(a fresh ledger under tmp_path/runs, its one completed SFT run `sft`: the untrained tiny model)."""
    import shutil

    from m2rl.ledger import Ledger, attempt

    ledger = Ledger(tmp_path / "runs")
    sft = ledger.create("sft", "sft", {})
    with attempt(sft):
        shutil.copytree(tiny_model_dir, sft.model_dir)
    return ledger, sft


# ---------------------------------------------------------------------------------------------
# the code sandbox in each mode: as root, and unprivileged (a server started as `nobody`)
from m2rl.verifiers.sandbox import LocalSandbox  # noqa: E402

from sandbox_helpers import IS_ROOT, NOBODY, run_as_nobody  # noqa: E402


@pytest.fixture(scope="module")
def sandbox():
    box = LocalSandbox()
    box.start()
    yield box
    box.close()


@pytest.fixture(scope="module")
def unprivileged():
    """A server started by a user who is not root (the usual case off a container), simulated as
    root: `nobody` in a private mount namespace that exposes the Python installation to it."""
    if not IS_ROOT:
        pytest.skip("simulating a non-root server needs root; as non-root `sandbox` is that case")
    real_popen = subprocess.Popen

    def popen_as_nobody(*args, **kwargs):
        return real_popen(*args, **{**kwargs, "preexec_fn": run_as_nobody})

    box = LocalSandbox()
    subprocess.Popen = popen_as_nobody  # type: ignore[misc] - only for this server's start
    try:
        box.start()
    finally:
        subprocess.Popen = real_popen  # type: ignore[misc]
    with open(f"/proc/{box.server_pid}/status") as f:
        assert any(line.split()[:2] == ["Uid:", str(NOBODY)] for line in f)
    yield box
    box.close()


@pytest.fixture(scope="module", params=["root", "unprivileged"])
def box(request):
    """The sandbox in each mode."""
    if request.param == "root":
        if not IS_ROOT:
            pytest.skip("the root mode needs root")
        return request.getfixturevalue("sandbox")
    return request.getfixturevalue("unprivileged" if IS_ROOT else "sandbox")
