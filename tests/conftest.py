import os
import shutil
import sys
import tempfile
from pathlib import Path

# Tests never reach a hub (this machine has no network): fail fast instead of retrying connections.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# ... and never write into the user's own data folder (`effft run` appends to its calibration history there)
os.environ["EFFFT_DATA_DIR"] = tempfile.mkdtemp(prefix="effft-tests-")

import pytest

from worker.ray_env import PRIVATE_CLUSTER_ENV, set_defaults

set_defaults(PRIVATE_CLUSTER_ENV)  # every Ray the tests start is a private one


def pytest_collection_modifyitems(config, items):
    has_cuda = False
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        pass
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU; this machine has none"))


@pytest.fixture
def repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def effft_bin():
    # the script beside this interpreter first: `make test` runs .venv/bin/python without the venv on PATH
    beside = Path(sys.executable).parent / "effft"
    path = str(beside) if beside.exists() else shutil.which("effft")
    if path is None:
        pytest.skip("the effft console script is not installed (pip install -e .)")
    return path


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
