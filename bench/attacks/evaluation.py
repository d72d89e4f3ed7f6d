"""One evaluation: what is asked of a model, an attack in a ball (norm, eps as written), clean, corruptions, or
the sharpness and feature measures.

The plan, outcomes, rows, tables, the worst case, the site, the Hub card and the grid name an evaluation through
this type, so each of its names is formatted here once. No torch: reports and the row store use it.
"""
from __future__ import annotations

from dataclasses import dataclass

from zoo.radius import parse_eps

BALL_FREE = ("clean", "corruptions", "measures")  # evaluations with no norm and no radius


def eps_key(eps: float) -> float:
    """A radius as rows are matched on it: 8/255 written as a fraction and as a decimal meet."""
    return round(float(eps), 8)


def column_name(attack: str, eps_str: str) -> str:
    """A table's column for an attack at a radius (the table is one norm's): 'AA 8/255'."""
    from bench.attacks.registry import label_of

    return f"{label_of(attack)} {eps_str}"


@dataclass(frozen=True)
class Evaluation:
    attack: str  # an attack's catalogue name (bench.attacks.registry), corruptions or measures
    norm: str | None = None  # Linf | L2 | L1; None without a ball
    eps_str: str = "0"  # the radius as written ("8/255", "0.5"); "0" without a ball

    @classmethod
    def of(cls, row: dict) -> "Evaluation":
        """The evaluation a row (or a plan's spec) records."""
        norm = row.get("norm") if isinstance(row.get("norm"), str) and row.get("norm") else None
        return cls(str(row.get("attack") or ""), norm, str(row.get("eps_str") or "0") if norm else "0")

    @property
    def has_ball(self) -> bool:
        return self.attack not in BALL_FREE

    @property
    def eps(self) -> float:
        return parse_eps(self.eps_str) if self.norm else 0.0

    @property
    def key(self) -> tuple:
        """What rows of one evaluation share: (attack, norm, eps_key)."""
        return self.attack, self.norm, eps_key(self.eps)

    @property
    def ball(self) -> str:
        """'Linf 8/255'; '' without a ball."""
        return f"{self.norm} {self.eps_str}" if self.norm else ""

    @property
    def label(self) -> str:
        """How messages, missing lists and galleries name it: 'autoattack Linf 8/255', 'clean'."""
        return " ".join(p for p in (self.attack, self.ball) if p)

    @property
    def title(self) -> str:
        """How tables and reports name it, the attack by its catalogue label: 'AA Linf 8/255'."""
        from bench.attacks.registry import label_of

        return " ".join(p for p in (label_of(self.attack), self.ball) if p)

    @property
    def column(self) -> str:
        """Its column in a table of its norm: 'AA 8/255'."""
        return column_name(self.attack, self.eps_str)
