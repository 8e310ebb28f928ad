"""Bank files are checked when the API activates them: registered sha256 and max_bank_rows (409)."""

from __future__ import annotations


def _saved_bank(path, rows: int, version: int) -> str:
    import torch

    from model.bank import MemoryBank
    from model.calibration import choose_threshold

    bank = MemoryBank([torch.randn(rows, c) for c in (40, 80, 112, 192)], product_class="brick", version=version,
                      shots=1, encoder_name="efficientnet-lite0", image_size_px=224,
                      calibration=choose_threshold([0.1], [0.5]))
    path.parent.mkdir(parents=True, exist_ok=True)
    return bank.save(path)


def test_activating_a_bank_file_changed_since_registration_is_409_naming_both_hashes(client, auth, repository,
                                                                                     settings):
    from model.bank import file_sha256

    path = settings.banks_dir / "brick" / "v1.safetensors"
    recorded = _saved_bank(path, 8, 1)
    repository.register_bank("brick", 1, str(path), recorded, 1, "efficientnet-lite0",
                             {"threshold": 0.5}, activate=False)
    _saved_bank(path, 9, 1)  # replaced behind the registry's back
    response = client.post("/api/banks/brick/1/activate", headers=auth)
    assert response.status_code == 409
    error = response.json()["error"]
    assert recorded in error
    assert file_sha256(path) in error
    assert repository.active_banks() == {}


def test_activating_an_oversized_bank_is_409_naming_the_limit(tmp_path):
    from fastapi.testclient import TestClient

    from linesight.api.app import create_app
    from linesight.settings import load_settings
    from tests.helpers import open_repository
    from tests.unit.api.helpers import TOKEN

    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'b.db'}", data_dir=tmp_path / "data",
                             max_bank_rows=10)
    path = settings.banks_dir / "brick" / "v1.safetensors"
    recorded = _saved_bank(path, 11, 1)
    repositories = open_repository(settings.database_url)
    repository = next(repositories)
    repository.register_bank("brick", 1, str(path), recorded, 1, "efficientnet-lite0", {"threshold": 0.5})
    with TestClient(create_app(settings, token=TOKEN, repository=repository, stream_snapshot=lambda: None)) as c:
        response = c.post("/api/banks/brick/1/activate", headers={"Authorization": f"Bearer {TOKEN}"})
    next(repositories, None)
    assert response.status_code == 409
    assert "11 rows; the limit is 10 (max_bank_rows)" in response.json()["error"]
