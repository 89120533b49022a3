import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sci_edge.models.binary import BinaryTemporalBank, SignSTE  # noqa: E402
from sci_edge.models.end.fem import FEM  # noqa: E402


def test_sign_ste_forward_and_gradient():
    w = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.0, 1.5], requires_grad=True)
    out = SignSTE.apply(w)
    np.testing.assert_array_equal(out.detach().numpy(), [-1, -1, 1, 1, 1, 1])
    out.sum().backward()
    # identity gradient inside |w| <= 1, zero outside
    np.testing.assert_array_equal(w.grad.numpy(), [0, 1, 1, 1, 1, 0])


def test_bank_trains_latent_weights():
    bank = BinaryTemporalBank(5, [3], [(0, 0), (0, 2)], channels=4)
    x = (torch.rand(2, 5, 6, 7) < 0.5).float()
    y = bank(x)
    assert y.shape == (2, 2, 4, 6, 7)
    y.sum().backward()
    assert bank.weights[0].grad is not None and bank.weights[0].grad.abs().sum() > 0
    assert bank.bias.grad is not None


def test_bank_placement_must_fit():
    with pytest.raises(ValueError, match="does not fit"):
        BinaryTemporalBank(5, [3], [(0, 3)], channels=2)


@pytest.mark.parametrize("hw", [(1, 1), (9, 13), (32, 40)])
def test_torch_layer_bit_exact_with_kernel(hw):
    torch.manual_seed(3)
    fem = FEM()
    with torch.no_grad():  # move latent weights and biases off their init
        for p in list(fem.dorsal.parameters()) + list(fem.ventral.parameters()):
            p.add_(torch.randn_like(p) * 0.7)
    spikes = (torch.rand(1, 13, *hw) < 0.35)
    with torch.no_grad():
        torch_out = fem.temporal_responses(spikes.float())[0].numpy()
    bank = fem.export_filter_bank()
    np.testing.assert_array_equal(bank.apply(spikes[0].numpy().astype(np.uint8)), torch_out)
    assert bank.channels == torch_out.shape[0] == 64
