"""train_classifier's long-tail options: per-image loss weights, logit adjustment, early stopping.

Each case is built so that the option changes the answer: without it the classifier says otherwise."""

import pytest
import torch

from apps.ml.quality.classifier import ClassifierSettings, predict, predict_proba, train_classifier

SMALL = ClassifierSettings(steps=120, batch_size=32, width=8, image_size=8, shift=0, class_balanced=False)


def halves(n: int, side: str, seed: int) -> torch.Tensor:
    """uint8 [n, 1, 8, 8] images bright on the ``side`` half, a little noise elsewhere."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 40, (n, 1, 8, 8), generator=gen, dtype=torch.uint8)
    columns = slice(0, 4) if side == "left" else slice(4, 8)
    x[..., columns] = torch.randint(200, 256, (n, 1, 8, 4), generator=gen, dtype=torch.uint8)
    return x


def test_images_weighted_zero_teach_nothing_and_weighted_one_do():
    # Class 1 holds 100 left-bright images besides its own right-bright ones: mislabelled. Drawn at
    # natural frequencies they outnumber class 0's 20, so a left-bright image reads as class 1 ...
    left, right, wrong = halves(20, "left", 0), halves(20, "right", 1), halves(100, "left", 2)
    classes = [left, torch.cat([right, wrong])]
    test_left = halves(50, "left", 3)
    counted = train_classifier(classes, seed=0, settings=SMALL)
    assert (predict(counted, test_left, image_size=8) == 1).float().mean() > 0.8
    # ... unless those images weigh nothing in the loss.
    weights = [torch.ones(20), torch.cat([torch.ones(20), torch.zeros(100)])]
    ignored = train_classifier(classes, seed=0, settings=SMALL, weights=weights)
    assert (predict(ignored, test_left, image_size=8) == 0).float().mean() > 0.8


def test_weights_must_match_the_images():
    with pytest.raises(ValueError, match="one value per image"):
        train_classifier(
            [halves(4, "left", 0), halves(4, "right", 1)],
            seed=0,
            settings=SMALL,
            weights=[torch.ones(4), torch.ones(3)],
        )


def test_logit_adjustment_stops_the_prior_from_deciding():
    # The two classes' images are all the same grey: only the prior (10 vs 90 images) tells them apart.
    noise = lambda n: torch.full((n, 1, 8, 8), 128, dtype=torch.uint8)  # noqa: E731
    classes, probe = [noise(10), noise(90)], noise(200)
    plain = train_classifier(classes, seed=0, settings=SMALL)
    adjusted = train_classifier(classes, seed=0, settings=ClassifierSettings(**{**SMALL.__dict__, "logit_adjust": 1.0}))
    assert predict_proba(plain, probe, image_size=8)[:, 0].mean() < 0.25  # the majority class wins
    assert 0.3 < predict_proba(adjusted, probe, image_size=8)[:, 0].mean() < 0.7  # no class is favoured
    # Told the classes are equally common (e.g. generated images fill the small one), it adjusts nothing.
    told = train_classifier(
        classes, seed=0, settings=ClassifierSettings(**{**SMALL.__dict__, "logit_adjust": 1.0}), class_counts=[50, 50]
    )
    assert predict_proba(told, probe, image_size=8)[:, 0].mean() < 0.25


def test_early_stopping_stops_when_validation_stops_improving_and_keeps_the_best_weights():
    classes = [halves(30, "left", 0), halves(30, "right", 1)]
    validation = [halves(10, "left", 5), halves(10, "right", 6)]
    settings = ClassifierSettings(**{**SMALL.__dict__, "steps": 2000, "check_every": 10, "patience": 3})
    model = train_classifier(classes, seed=0, settings=settings, validation=validation)
    # An easy task: validation accuracy reaches its ceiling within a few checks, so training stops long
    # before step 2000.
    assert model.steps_run < 200 and model.best_step <= model.steps_run and model.best_step % 10 == 0
    assert (predict(model, validation[0], image_size=8) == 0).all() and (
        predict(model, validation[1], image_size=8) == 1
    ).all()
    # Without validation photos every step runs.
    full = train_classifier(classes, seed=0, settings=ClassifierSettings(**{**SMALL.__dict__, "steps": 50}))
    assert full.steps_run == 50 and full.best_step == 50


def test_validation_needs_a_tensor_per_class():
    with pytest.raises(ValueError, match="one tensor per class"):
        train_classifier(
            [halves(4, "left", 0), halves(4, "right", 1)], seed=0, settings=SMALL, validation=[halves(2, "left", 2)]
        )
