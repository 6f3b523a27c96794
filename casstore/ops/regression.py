"""Regression policies: when is a candidate version's metric worse enough to refuse or roll back.

A policy is a list of rules, one per metric: higher-is-better or lower-is-better, with an
absolute or relative threshold. Loaded from JSON::

    {"rules": [
        {"metric": "accuracy", "direction": "higher", "threshold": 0.01},
        {"metric": "loss", "direction": "lower", "threshold": 0.05, "relative": true}
    ]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from casstore.errors import InvalidInputError


class MetricRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    metric: str
    direction: Literal["higher", "lower"] = "higher"
    threshold: float = Field(default=0.0, ge=0.0)  # allowed worsening
    relative: bool = False  # threshold is a fraction of the baseline value
    required: bool = False  # a candidate missing this metric violates the rule

    def check(self, candidate: dict[str, float], baseline: dict[str, float]) -> str | None:
        """A description of the violation, or None when the rule holds."""
        c, b = candidate.get(self.metric), baseline.get(self.metric)
        if c is None:
            return f"{self.metric} missing from candidate" if self.required else None
        if b is None:
            return None
        worse = (b - c) if self.direction == "higher" else (c - b)
        allowed = self.threshold * abs(b) if self.relative else self.threshold
        if worse > allowed + 1e-12:
            kind = f"{self.threshold:.2%} relative" if self.relative else f"{self.threshold:g}"
            return (
                f"{self.metric} {b:g} -> {c:g} ({'-' if self.direction == 'higher' else '+'}"
                f"{abs(worse):g}, allowed {kind}, {self.direction} is better)"
            )
        return None


class RegressionPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    rules: tuple[MetricRule, ...] = Field(min_length=1)

    def violations(self, candidate: dict[str, float], baseline: dict[str, float]) -> list[str]:
        return [v for r in self.rules if (v := r.check(candidate, baseline)) is not None]

    @classmethod
    def load(cls, path: str | Path) -> RegressionPolicy:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise InvalidInputError(f"cannot read policy {path}: {e.strerror}") from e
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, where: str = "policy") -> RegressionPolicy:
        try:
            return cls.model_validate(json.loads(text))
        except (ValueError, ValidationError) as e:
            raise InvalidInputError(f"{where} is not a valid regression policy: {e}") from e
