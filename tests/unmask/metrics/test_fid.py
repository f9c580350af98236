import numpy as np
import pytest
import torch

from unmask import metrics
from unmask.metrics import fid
from unmask.metrics.fid_inception import FID_WEIGHTS_NAME, FIDInceptionV3, FIDWeightsError, load_fid_inception


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    return fid.frechet_distance(fid.FeatureStats.from_features(features1), fid.FeatureStats.from_features(features2))


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(300, 8)) @ np.diag([1, 2, 3, 1, 0.5, 1, 2, 1])


def test_identical_sets_have_zero_fid(features):
    assert fid_from_features(features, features.copy()) == pytest.approx(0.0, abs=1e-6)


def test_mean_shift_gives_squared_distance(features):
    shift = np.arange(8) * 0.25
    # equal covariances: the trace terms cancel, FID = |mu1 - mu2|^2
    assert fid_from_features(features, features + shift) == pytest.approx(shift @ shift, rel=1e-6)


def test_hand_computed_gaussians():
    stats1 = fid.FeatureStats(np.zeros(2), np.diag([1.0, 4.0]), 10)
    stats2 = fid.FeatureStats(np.array([1.0, 0.0]), np.diag([4.0, 1.0]), 10)
    # 1 + (1 + 4) + (4 + 1) - 2 tr(sqrt(diag(4, 4))) = 11 - 8
    assert fid.frechet_distance(stats1, stats2) == pytest.approx(3.0, abs=1e-9)


def test_singular_covariances_are_regularized():
    # fewer samples than dimensions: singular covariances, the pytorch-fid eps path
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 16)), rng.normal(size=(5, 16))
    value = fid_from_features(a, b)
    assert np.isfinite(value) and value > 0


class TinyFeatureNet:
    """A stand-in for Inception: a fixed random conv net on uint8 images -> 6-d features."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 6, 3, stride=2), torch.nn.Tanh(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        ).eval()

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).float() / 255
        return self.net(x).double().numpy()


@pytest.fixture(scope="module")
def image_set() -> np.ndarray:
    rng = np.random.default_rng(2)
    return rng.integers(40, 216, size=(64, 16, 16, 3)).astype(np.uint8)


def perturbed(images: np.ndarray, sigma: float) -> np.ndarray:
    noise = np.random.default_rng(3).normal(0, sigma, images.shape)
    return np.clip(images + noise, 0, 255).round().astype(np.uint8)


def test_fid_grows_with_perturbation(image_set):
    extractor = TinyFeatureNet()
    values = []
    for sigma in (0, 10, 30, 60):
        acc = metrics.get("fid").accumulator(feature_extractor=extractor)
        acc.update_batch(perturbed(image_set, sigma), image_set)
        values.append(acc.result().value)
    assert values[0] == pytest.approx(0.0, abs=1e-6)
    assert values == sorted(values) and len(set(values)) == 4


def test_result_counts_and_one_image_at_a_time(image_set):
    acc = metrics.get("fid").accumulator(feature_extractor=TinyFeatureNet())
    for pred, target in zip(image_set[:10], image_set[:10], strict=True):
        acc.update(pred, target)
    result = acc.result()
    assert result.value == pytest.approx(0.0, abs=1e-6)
    assert result.count == 10 and result.details["count_real"] == 10


def test_precomputed_real_stats(tmp_path, image_set):
    extractor = TinyFeatureNet()
    fid.FeatureStats.from_features(extractor(image_set)).save(tmp_path / "real.npz")
    real_stats = fid.FeatureStats.load(tmp_path / "real.npz")
    acc = fid.FIDAccumulator(feature_extractor=extractor, real_stats=real_stats)
    acc.update(pred=perturbed(image_set, 30))
    direct = fid_from_features(extractor(perturbed(image_set, 30)), extractor(image_set))
    assert acc.result().value == pytest.approx(direct, rel=1e-12)


def test_too_few_images_give_none_with_reason(image_set):
    acc = metrics.get("fid").accumulator(feature_extractor=TinyFeatureNet())
    acc.update(image_set[0], image_set[0])
    result = acc.result()
    assert result.value is None and "at least 2" in result.reason


def test_without_weights_fid_is_none_with_reason(tmp_path, monkeypatch, image_set):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty hub cache
    fid_metric = metrics.get("fid")
    availability = fid_metric.availability()
    assert not availability and FID_WEIGHTS_NAME in availability.reason
    acc = fid_metric.accumulator()
    acc.update_batch(image_set[:4], image_set[:4])
    result = acc.result()
    assert result.value is None and "not found" in result.reason
    missing = fid_metric.availability(weights_path=tmp_path / "nope.pth")
    assert not missing and "nope.pth" in missing.reason
    assert "fid" not in metrics.list_metrics(available_only=True)


def test_other_weights_under_the_canonical_name_are_rejected(tmp_path, monkeypatch, image_set):
    # files named like the FID checkpoint that do not hold its bytes (SHA-256 6726825d0af5...)
    cached = tmp_path / "checkpoints" / FID_WEIGHTS_NAME
    explicit = tmp_path / "elsewhere" / FID_WEIGHTS_NAME
    for path in (cached, explicit):
        path.parent.mkdir()
        torch.save({"fc.bias": torch.zeros(1008)}, path)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    availability = metrics.get("fid").availability()  # the cache's: refused, and only looked at (tests run offline)
    assert not availability and "SHA-256 expected 6726825d0af5f729" in availability.reason and cached.exists()
    assert metrics.get("fid").availability(weights_path=explicit)  # the file given is there...
    acc = metrics.get("fid").accumulator(weights_path=explicit)
    acc.update_batch(image_set[:2], image_set[:2])
    result = acc.result()
    assert result.value is None and "SHA-256" in result.reason  # ...but no number comes from it


def test_inception_matches_the_fid_checkpoint_layout():
    model = FIDInceptionV3()
    # torchvision's Inception3 has 27,161,264 parameters; minus the aux classifier (3,326,696),
    # plus 8 more classes in fc (16,392): the FID graph's 23,850,960
    assert sum(p.numel() for p in model.parameters()) == 23_850_960
    keys = model.state_dict()
    for key, shape in [
        ("Conv2d_1a_3x3.conv.weight", (32, 3, 3, 3)),
        ("Conv2d_4a_3x3.bn.running_var", (192,)),
        ("Mixed_5b.branch_pool.conv.weight", (32, 192, 1, 1)),
        ("Mixed_6e.branch7x7dbl_5.conv.weight", (192, 192, 1, 7)),
        ("Mixed_7a.branch7x7x3_4.conv.weight", (192, 192, 3, 3)),
        ("Mixed_7c.branch3x3dbl_3b.bn.weight", (384,)),
        ("fc.weight", (1008, 2048)),
    ]:
        assert tuple(keys[key].shape) == shape


def test_inception_loads_a_state_dict_and_extracts_2048_features(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "random_inception.pth"  # no hash in the name: only the layout is checked
    torch.save(FIDInceptionV3().state_dict(), path)
    extract = fid.inception_feature_extractor(path)
    images = np.random.default_rng(5).integers(0, 256, size=(1, 64, 64, 3)).astype(np.uint8)
    features = extract(images)  # resized to 299 inside, like pytorch-fid
    assert features.shape == (1, 2048) and np.isfinite(features).all()


def test_wrong_state_dict_is_rejected(tmp_path):
    path = tmp_path / "not_inception.pth"
    torch.save(torch.nn.Linear(3, 3).state_dict(), path)
    with pytest.raises(FIDWeightsError, match="not the FID Inception"):
        load_fid_inception(path)
