import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Export tests run torch on one thread: they share the CPU with onnxruntime."""
    try:
        import torch
    except ImportError:        # the torch-free checks run without it
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
