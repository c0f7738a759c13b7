"""The approval desk: the router (policies, TTL, dedup, claims), when each proposal
was shown, and the decisions with their latency. No awaits.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Literal

from engine.config import Settings
from engine.models import QTY_QUANTUM, Decision, DecisionAction, Proposal
from engine.router import Offered, Policy, SignalRouter, Verdict, confidence_at_least
from engine.step import CommandError

DecidedBy = Literal["human", "policy", "engine"]

#: The largest order quantity a person may type (no market trades 10^15 units of anything).
MAX_ORDER_QTY = Decimal(10) ** 15


def qty_problem(qty: Decimal) -> str | None:
    """Why ``qty`` cannot be an order quantity (None if it can): finite, above zero,
    at most :data:`MAX_ORDER_QTY`, and no finer than :data:`QTY_QUANTUM`."""
    if not qty.is_finite():
        return "the quantity must be a finite number"
    if qty <= 0:
        return "the quantity must be above zero"
    if qty > MAX_ORDER_QTY:
        return f"the quantity must be at most {MAX_ORDER_QTY:,}"
    if qty != qty.quantize(QTY_QUANTUM, rounding="ROUND_DOWN"):
        return f"the quantity has more decimal places than {QTY_QUANTUM:f} allows"
    return None


class ApprovalDesk:
    """Pending proposals and the decisions on them; ``clock`` times the latency."""

    def __init__(self, router: SignalRouter, clock: Callable[[], float]) -> None:
        self.router = router
        self._clock = clock
        self._shown_at: dict[str, float] = {}  # clock when each proposal appeared

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], float]) -> ApprovalDesk:
        ap = settings.approval
        router = SignalRouter(
            max_pending=ap.max_pending,
            dedup_window_ms=int(ap.dedup_window_seconds * 1000),
            policy=Policy(ap.policy),
            auto_confidence=ap.auto_confidence,
            below_confidence=ap.below_confidence,
        )
        return cls(router, clock)

    def offer(self, proposal: Proposal) -> Offered:
        offered = self.router.offer(proposal)
        if not offered.merged:
            self._shown_at[proposal.id] = self._clock()
        return offered

    def verdict(self, proposal: Proposal) -> Verdict:
        return self.router.verdict(proposal)

    def is_pending(self, proposal_id: str) -> bool:
        return any(p.id == proposal_id for p in self.router.pending())

    def restore(self, pending: list[Proposal]) -> None:
        """Proposals recovered from the store: shown again from now."""
        self.router.restore(pending)
        now = self._clock()
        for p in pending:
            self._shown_at[p.id] = now

    def claim(self, proposal_id: str) -> Proposal:
        """Take a pending proposal to decide it; CommandError if it is gone."""
        proposal = self.router.claim(proposal_id)
        if proposal is None:
            raise CommandError(
                f"proposal {proposal_id} is no longer pending (already decided or expired)"
            )
        return proposal

    def due(self, now_ms: int) -> list[Proposal]:
        """Claim the proposals whose time to live ran out."""
        return self.router.due(now_ms)

    def next_expiry(self) -> int | None:
        """When the first pending proposal's time to live runs out (None: none pending)."""
        return min((p.expires_at for p in self.router.pending()), default=None)

    def claim_all(self) -> list[Proposal]:
        """Claim every pending proposal (to expire them on stop)."""
        return [p for p in self.router.pending() if self.router.claim(p.id) is not None]

    def decide(
        self,
        proposal: Proposal,
        action: DecisionAction,
        decided_at: int,
        by: DecidedBy,
        *,
        reason: str | None = None,
        size: Decimal | None = None,
        resized: bool = False,
    ) -> Decision:
        """The decision on a claimed proposal, with the time since it was shown."""
        shown = self._shown_at.pop(proposal.id, None)
        latency = 0 if shown is None else max(0, round((self._clock() - shown) * 1000))
        return Decision(
            proposal_id=proposal.id,
            action=action,
            reason=reason,
            size=size,
            resized=resized,
            latency_ms=latency,
            decided_at=decided_at,
            decided_by=by,
        )

    def set_policy(self, policy: str, auto_confidence: float | None = None) -> str:
        """Switch the approval policy; the line that says so. CommandError for a policy
        or a confidence out of range (nothing changes then)."""
        try:
            new = Policy(policy)
        except ValueError:
            raise CommandError(
                f"policy must be one of {', '.join(p.value for p in Policy)}, got {policy!r}"
            ) from None
        if auto_confidence is not None:
            if not 0.0 <= auto_confidence <= 1.0:
                raise CommandError(f"confidence must lie in [0, 1], got {auto_confidence}")
            self.router.auto_confidence = auto_confidence
        self.router.policy = new
        text = f"approval policy is now {new.value}"
        if new is Policy.AUTO:
            text += f" (approve at confidence {confidence_at_least(self.router.auto_confidence)})"
        return text

    def release(self, proposal: Proposal) -> None:
        """Put a decided proposal back in the queue: its decision could not be stored."""
        self.router.put_back(proposal)
        self._shown_at.setdefault(proposal.id, self._clock())

    def done(self, proposal_id: str) -> None:
        """Forget a claimed proposal: its decision is made."""
        self.router.done(proposal_id)
