"""The shared trainer, tested once with a tiny third type: reports, cancel, resume, checkpoints, EMA."""

import errno

import pytest
import torch

from apps.ml.engine import checkpoint, trainer, training
from apps.ml.engine.ema import EMA, decay_for_half_life
from tests.ml.tiny_type import TinyType, tiny_config, tiny_images, tiny_labels

torch.set_num_threads(1)


def weights(model: TinyType) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.decoder.state_dict().items()}


def checkpoint_tensors(directory) -> dict[str, torch.Tensor]:
    return checkpoint.load_tensors(directory / trainer.CHECKPOINT_FILE)


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_reports_checkpoints_and_grids(tmp_path):
    reports = []
    result = TinyType(tiny_config(total_steps=10)).train(
        tiny_images(), checkpoint_dir=tmp_path, on_progress=reports.append
    )
    # Every report_every (3) steps, every checkpoint_every (4) steps, and at the end.
    assert [p.step for p in reports] == [3, 4, 6, 8, 9, 10]
    assert [p.step for p in reports if p.checkpointed] == [4, 8, 10]
    assert all(set(p.losses) == {"loss"} and p.total_steps == 10 for p in reports)
    grids = [p.sample_grid for p in reports if p.checkpointed]
    assert [g.relative_to(tmp_path).as_posix() for g in grids] == [
        "samples/step_000004.png",
        "samples/step_000008.png",
        "samples/step_000010.png",
    ]
    assert all(g.exists() for g in grids) and all(p.sample_grid is None for p in reports if not p.checkpointed)
    assert result.steps == 10 and not result.stopped_early and result.final_losses == reports[-1].losses
    suffixes = {p.suffix for p in tmp_path.rglob("*") if p.is_file()}
    assert suffixes == {".safetensors", ".png"}  # no pickles


def test_losses_are_read_from_the_device_only_at_reports(tmp_path, monkeypatch):
    reads = []
    read = trainer._LossSums.read_and_reset
    monkeypatch.setattr(trainer._LossSums, "read_and_reset", lambda self: reads.append(self.count) or read(self))
    TinyType(tiny_config(total_steps=12, report_every=6, checkpoint_every=100)).train(
        tiny_images(), checkpoint_dir=tmp_path
    )
    assert reads == [6, 6]  # each read is the mean over the steps since the last one


def test_cancel_is_checked_before_every_step_and_saves_a_checkpoint(tmp_path):
    calls = []
    reports = []

    def stop_after_five():
        calls.append(1)
        return len(calls) > 5

    config = tiny_config(report_every=100, checkpoint_every=100)
    result = TinyType(config).train(
        tiny_images(), checkpoint_dir=tmp_path, on_progress=reports.append, should_stop=stop_after_five
    )
    assert result.stopped_early and result.steps == 5 and len(calls) == 6
    assert [(p.step, p.checkpointed) for p in reports] == [(5, True)] and reports[0].losses
    assert (tmp_path / "samples" / "step_000005.png").exists()

    resumed = []
    second = TinyType(config).train(tiny_images(), checkpoint_dir=tmp_path, on_progress=resumed.append)
    assert second.steps == 12 and not second.stopped_early and [p.step for p in resumed] == [12]
    assert second.seconds >= result.seconds  # training time adds up over sessions
    third = TinyType(config).train(tiny_images(), checkpoint_dir=tmp_path, on_progress=resumed.append)
    assert third.steps == 12 and len(resumed) == 1  # a finished run does no more steps


def test_a_stop_right_after_a_checkpoint_writes_no_second_one(tmp_path):
    reports = []
    model = TinyType(tiny_config())
    steps_done = iter(range(100))
    result = model.train(
        tiny_images(), checkpoint_dir=tmp_path, on_progress=reports.append, should_stop=lambda: next(steps_done) >= 4
    )
    assert result.steps == 4 and result.stopped_early
    assert [(p.step, p.checkpointed) for p in reports] == [(3, False), (4, True)]


@pytest.mark.parametrize("num_classes", [0, 3])  # unlabelled, and with a label per image
@pytest.mark.parametrize("stop_at", [4, 5])  # at a checkpoint and between two
def test_a_resumed_run_trains_exactly_the_weights_of_an_uninterrupted_one(tmp_path, stop_at, num_classes):
    images = tiny_images()
    labels = tiny_labels(num_classes=num_classes) if num_classes else None
    config = tiny_config(num_classes=num_classes)
    whole = TinyType(config)
    whole.train(images, labels=labels, checkpoint_dir=tmp_path / "whole")

    calls = iter(range(100))
    TinyType(config).train(
        images, labels=labels, checkpoint_dir=tmp_path / "parts", should_stop=lambda: next(calls) >= stop_at
    )
    resumed = TinyType(config)
    resumed.train(images, labels=labels, checkpoint_dir=tmp_path / "parts")

    assert_same_tensors(weights(resumed), weights(whole))  # EMA weights: the sampler
    # Networks, EMA and the optimizer's moments and step count, all equal.
    assert_same_tensors(checkpoint_tensors(tmp_path / "parts"), checkpoint_tensors(tmp_path / "whole"))
    sample_labels = tiny_labels(4, num_classes) if num_classes else None
    assert torch.equal(resumed.sample(4, seed=1, labels=sample_labels), whole.sample(4, seed=1, labels=sample_labels))


def test_labels_reach_the_training_step_and_train_other_weights(tmp_path, monkeypatch):
    seen = []
    step_of = TinyType.training_step
    monkeypatch.setattr(
        TinyType,
        "training_step",
        lambda self, parts, data, step, rng: seen.append(data) or step_of(self, parts, data, step, rng),
    )
    config = tiny_config(num_classes=3, total_steps=4)
    labelled = TinyType(config)
    labelled.train(tiny_images(), labels=tiny_labels(), checkpoint_dir=tmp_path / "a")
    assert len(seen) == 4 and all(isinstance(data, training.LabelledImages) for data in seen)
    assert torch.equal(seen[0].labels, tiny_labels()) and seen[0].labels.dtype == torch.long
    relabelled = TinyType(config)
    relabelled.train(tiny_images(), labels=tiny_labels().flip(0), checkpoint_dir=tmp_path / "b")
    assert not torch.equal(weights(labelled)["label_embed.weight"], weights(relabelled)["label_embed.weight"])


def test_labels_are_checked_and_refused_by_a_type_that_learns_no_classes(tmp_path):
    with pytest.raises(ValueError, match="learns no classes"):
        TinyType(tiny_config()).train(tiny_images(), labels=tiny_labels(), checkpoint_dir=tmp_path)
    conditional = TinyType(tiny_config(num_classes=3))
    with pytest.raises(ValueError, match="one label per image"):
        conditional.train(tiny_images(), labels=tiny_labels(15), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        conditional.train(tiny_images(), labels=tiny_labels(num_classes=4), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="integer class indices"):
        conditional.train(tiny_images(), labels=tiny_labels().float(), checkpoint_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # refused before any step


def test_a_run_that_crashed_resumes_from_its_last_checkpoint_with_the_same_result(tmp_path, monkeypatch):
    images = tiny_images()
    whole = TinyType(tiny_config())
    whole.train(images, checkpoint_dir=tmp_path / "whole")

    step_of = TinyType.training_step

    def crash_at_step_seven(self, parts, data, step, rng):
        if step == 7:
            raise RuntimeError("worker killed")
        return step_of(self, parts, data, step, rng)

    monkeypatch.setattr(TinyType, "training_step", crash_at_step_seven)
    with pytest.raises(RuntimeError):
        TinyType(tiny_config()).train(images, checkpoint_dir=tmp_path / "crashed")
    monkeypatch.undo()
    assert trainer.checkpoint_step(tmp_path / "crashed") == 4  # what a run resumes from, not the step it reached
    assert trainer.checkpoint_step(tmp_path / "nothing-here") == 0
    reports = []
    resumed = TinyType(tiny_config())
    resumed.train(images, checkpoint_dir=tmp_path / "crashed", on_progress=reports.append)
    assert reports[0].step == 6  # steps 5 and 6 (after the checkpoint at 4) are trained again
    assert_same_tensors(weights(resumed), weights(whole))


def test_training_leaves_the_callers_random_state_alone(tmp_path):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    TinyType(tiny_config()).train(tiny_images(), checkpoint_dir=tmp_path)
    assert torch.equal(torch.get_rng_state(), before)


def test_another_seed_trains_other_weights(tmp_path):
    a, b = TinyType(tiny_config()), TinyType(tiny_config(seed=1))
    a.train(tiny_images(), checkpoint_dir=tmp_path / "a")
    b.train(tiny_images(), checkpoint_dir=tmp_path / "b")
    assert not torch.equal(weights(a)["net.0.weight"], weights(b)["net.0.weight"])


def test_a_failed_checkpoint_write_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    images = tiny_images()
    whole = TinyType(tiny_config())
    whole.train(images, checkpoint_dir=tmp_path / "whole")

    writes = []
    save_file = checkpoint.save_file

    def disk_full_at_second_write(tensors, filename, metadata=None):
        writes.append(filename)
        if len(writes) == 2:
            with open(filename, "wb") as fh:
                fh.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", disk_full_at_second_write)
    with pytest.raises(OSError):
        TinyType(tiny_config()).train(images, checkpoint_dir=tmp_path / "full")
    monkeypatch.undo()
    left = sorted(p.name for p in (tmp_path / "full").iterdir() if p.is_file())
    assert left == [trainer.CHECKPOINT_FILE]  # the step-4 checkpoint, and no temporary file
    reports = []
    resumed = TinyType(tiny_config())
    resumed.train(images, checkpoint_dir=tmp_path / "full", on_progress=reports.append)
    assert reports[0].step == 6
    assert_same_tensors(weights(resumed), weights(whole))


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    TinyType(tiny_config(total_steps=4)).train(tiny_images(), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="another architecture"):
        TinyType(tiny_config(total_steps=8, width=32)).train(tiny_images(), checkpoint_dir=tmp_path)
    # Settings outside the architecture (here the learning rate) may change on resume.
    assert TinyType(tiny_config(total_steps=8, lr=1e-3)).train(tiny_images(), checkpoint_dir=tmp_path).steps == 8


def test_images_of_the_wrong_shape_are_refused(tmp_path):
    with pytest.raises(ValueError, match="expected images shaped"):
        TinyType(tiny_config()).train(torch.zeros(4, 3, 8, 8), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="no training images"):
        TinyType(tiny_config()).train(torch.zeros(0, 1, 8, 8), checkpoint_dir=tmp_path)


def test_uint8_images_are_scaled_to_minus_one_one():
    data = training.prepare_images(
        torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1), channels=1, resolution=1, device=torch.device("cpu")
    )
    assert data.flatten().tolist() == [-1.0, 1.0]


def test_ema_warms_up_then_averages_with_its_decay():
    net = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(net, decay=decay_for_half_life(10))
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(10_000) == pytest.approx(0.5**0.1)
    with torch.no_grad():
        net.weight.fill_(0.0)
        ema.model.weight.fill_(1.0)
    for step in range(10_000, 10_010):  # ten steps of the half-life's decay halve the distance
        ema.update(net, step)
    assert float(ema.model.weight) == pytest.approx(0.5, rel=1e-4)
    assert not ema.model.weight.requires_grad
