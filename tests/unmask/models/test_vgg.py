import pytest
import torch

from tests.unmask.testutils import TORCHVISION_CONVS, TORCHVISION_KEYS, torchvision_like_state
from unmask.losses import PerceptualLoss
from unmask.models import vgg
from unmask.models.vgg import VGG19Features, find_vgg19_weights, load_vgg19_features


def test_parameter_names_are_torchvision_names():
    model = VGG19Features()
    assert list(model.state_dict()) == TORCHVISION_KEYS
    for index, width in TORCHVISION_CONVS.items():
        assert model.features[index].out_channels == width
    assert len(model.features) == 37
    assert vgg.LAYER_INDEX["relu1_1"] == 1 and vgg.LAYER_INDEX["relu5_1"] == 29


def test_torchvision_state_dict_loads_strictly(tmp_path):
    keys_and_shapes = {k: v.shape for k, v in VGG19Features().state_dict().items()}
    state = {k: torch.randn(shape) for k, shape in keys_and_shapes.items()}
    VGG19Features().load_state_dict(state, strict=True)
    path = tmp_path / "vgg19.pth"
    torch.save(torchvision_like_state(), path)
    model = load_vgg19_features(path)
    assert torch.equal(model.features[34].weight, torchvision_like_state()["features.34.weight"])
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


def test_features_are_imagenet_normalised_and_truncated():
    model = VGG19Features()
    model.load_state_dict({k: v for k, v in torchvision_like_state().items() if k.startswith("features.")})
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    relu1_1, relu2_1 = model(image, ("relu1_1", "relu2_1"))
    x = (((image + 1) / 2 - torch.tensor(vgg.IMAGENET_MEAN).view(1, 3, 1, 1))
         / torch.tensor(vgg.IMAGENET_STD).view(1, 3, 1, 1))
    assert torch.allclose(relu1_1, torch.relu(model.features[0](x)), atol=1e-6)
    assert relu2_1.shape == (1, 128, 16, 16)
    loss = PerceptualLoss(model, ("relu1_1", "relu2_1"), (1.0, 1.0))
    assert loss(image, image).item() == 0.0
    assert loss(image, -image).item() > 0.0


def test_weight_discovery(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    path, reason = find_vgg19_weights()
    assert path is None and "vgg19-dcbb9e9d.pth" in reason
    cached = tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")  # not torchvision's file: refused, and (offline, as tests run) left alone, never used
    path, reason = find_vgg19_weights()
    assert path is None and reason.startswith(f"no VGG19 weights: refused {cached}: SHA-256 expected dcbb9e9d")
    assert cached.read_bytes() == b""
    with pytest.raises(FileNotFoundError):
        find_vgg19_weights(tmp_path / "missing.pth")
