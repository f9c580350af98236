"""BRISQUE's feature scaling is read from shipped JSON, never unpickled; its values are the brisque
package's own."""

from __future__ import annotations

import ast
import configparser
import importlib.util
import json
import pickle
import shutil

import numpy as np
import pytest

from tests.testdata import REPO
from unmask.metrics import brisque


class _DataOnly(pickle.Unpickler):
    """Plain containers and numbers only: a pickle that names any class or function is refused."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing {module}.{name}")


@pytest.fixture(scope="module")
def package_models():
    if importlib.util.find_spec("brisque") is None:
        pytest.skip("brisque package not installed (it ships the SVR and the pickled scaling)")
    folder, reason = brisque.default_model_dir()
    assert folder is not None, reason
    return folder


def test_the_shipped_scaling_equals_the_packages_pickle(package_models):
    with open(package_models / "normalize.pickle", "rb") as f:
        pickled = _DataOnly(f).load()
    shipped = json.loads(brisque.SCALING_FILE.read_text())
    assert shipped["min_"] == pickled["min_"] and shipped["max_"] == pickled["max_"]  # exact floats
    model = brisque.load_model()
    assert np.array_equal(model.feature_min, pickled["min_"]) and np.array_equal(model.feature_max, pickled["max_"])


def test_no_module_unpickles_the_model_files():
    tree = ast.parse((REPO / "unmask" / "metrics" / "brisque.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names} | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "pickle" not in imported


def test_the_json_is_package_data():
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    assert brisque.SCALING_FILE.name in setup["options.package_data"]["unmask.metrics"].split()


def test_another_svr_needs_its_own_scaling(package_models, tmp_path):
    (tmp_path / "svm.txt").write_text((package_models / "svm.txt").read_text().replace("gamma 0.05", "gamma 0.06", 1))
    brisque.load_model.cache_clear()
    try:
        with pytest.raises(ValueError, match="normalize.json"):
            brisque.load_model(tmp_path)
        shutil.copy(brisque.SCALING_FILE, tmp_path / brisque.OWN_SCALING)
        assert brisque.load_model(tmp_path).feature_min.shape == (36,)
    finally:
        brisque.load_model.cache_clear()
