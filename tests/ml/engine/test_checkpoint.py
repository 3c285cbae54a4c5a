"""Checkpoints are written to a temporary file, fsynced and renamed: a full disk or a crash mid-write
leaves the previous checkpoint intact."""

import errno

import pytest
import torch

from apps.ml.engine import checkpoint


def test_round_trip(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    checkpoint.save_tensors_atomic({"w": torch.arange(6.0)}, path, metadata={"step": "3"})
    assert torch.equal(checkpoint.load_tensors(path)["w"], torch.arange(6.0))
    checkpoint.save_json_atomic({"step": 3}, tmp_path / "state.json")
    assert checkpoint.load_json(tmp_path / "state.json") == {"step": 3}


def _disk_fills_up(tensors, filename, metadata=None):
    with open(filename, "wb") as fh:
        fh.write(b"half a checkpoint")  # some bytes make it to disk, then the disk is full
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    checkpoint.save_tensors_atomic({"w": torch.ones(4)}, path)
    before = path.read_bytes()
    monkeypatch.setattr(checkpoint, "save_file", _disk_fills_up)
    with pytest.raises(OSError) as error:
        checkpoint.save_tensors_atomic({"w": torch.zeros(4)}, path)
    assert error.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert torch.equal(checkpoint.load_tensors(path)["w"], torch.ones(4))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]  # no temporary file left behind


def test_a_failed_json_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    checkpoint.save_json_atomic({"step": 1}, path)

    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.json, "dump", fail)
    with pytest.raises(OSError):
        checkpoint.save_json_atomic({"step": 2}, path)
    assert checkpoint.load_json(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
