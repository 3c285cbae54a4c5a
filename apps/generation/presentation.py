"""What the generation pages show of a conditional generator: its classes' counts before and after, as bars."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassBar:
    name: str
    real: int
    generated: int
    real_percent: float  # of the longest bar (real + generated), for the bar's width
    generated_percent: float

    @property
    def total(self) -> int:
        return self.real + self.generated


def class_bars(classes: list[dict], generated: dict[str, int] | None = None) -> list[ClassBar]:
    """One bar per class: its real photos, and the images a job adds (empty for a one-class generator)."""
    generated = generated or {}
    totals = [c["image_count"] + generated.get(c["name"], 0) for c in classes]
    longest = max(totals, default=0) or 1
    return [
        ClassBar(
            c["name"],
            c["image_count"],
            generated.get(c["name"], 0),
            round(100 * c["image_count"] / longest, 1),
            round(100 * generated.get(c["name"], 0) / longest, 1),
        )
        for c in classes
    ]
