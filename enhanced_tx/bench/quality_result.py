"""What the quality bench measures: the shared settings, validation-loss curves and test scores."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class QualitySpec:
    """Both contenders' shape and data settings (the tiny model of conf/model/tiny.yaml, BPE 8192)."""

    d_model: int = 256
    n_heads: int = 4
    n_layers: int = 2  # encoder and decoder each
    ffn: int = 1024
    batch_size: int = 64  # pairs per step
    max_len: int = 128  # tokens a side; catalog messages are at most 120 characters
    max_new_tokens: int = 96  # greedy decoding limit on the test set
    eval_every: int = 100
    seed: int = 0


@dataclass
class Point:
    step: int
    seconds: float  # training time so far (evaluation excluded)
    val_loss: float


@dataclass
class Curve:
    """Validation loss by step and by training second, with the tokens trained on."""

    name: str
    points: list[Point] = field(default_factory=list)
    tokens: int = 0  # non-padding source + target tokens
    padded_tokens: int = 0  # source + target positions including padding
    train_seconds: float = 0.0

    def at_step(self, step: int) -> float | None:
        return next((p.val_loss for p in self.points if p.step == step), None)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.train_seconds if self.train_seconds else 0.0

    @property
    def steps(self) -> int:
        return self.points[-1].step if self.points else 0


@dataclass
class Outcome:
    """One training run of one contender, scored on the test set."""

    contender: str  # "bart", "ours", or "ours <overrides>"
    mode: str  # "steps" (an equal number of steps) or "seconds" (an equal wall-clock budget)
    precision: str
    curve: Curve
    chrf: float
    bleu: float

    def as_dict(self) -> dict:
        return asdict(self)


def outcome_from_dict(record: dict) -> Outcome:
    """An Outcome back from `as_dict()` (the bench's --json), for --merge."""
    curve = dict(record["curve"])
    curve["points"] = [Point(**p) for p in curve["points"]]
    return Outcome(**{**record, "curve": Curve(**curve)})
