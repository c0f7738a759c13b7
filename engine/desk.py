"""The approval desk: the router (policies, TTL, dedup, claims), when each proposal
was shown, and the decisions with their latency. No awaits.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Literal

from engine.models import Decision, DecisionAction, Proposal
from engine.router import Offered, SignalRouter, Verdict
from engine.step import CommandError

DecidedBy = Literal["human", "policy", "engine"]


class ApprovalDesk:
    """Pending proposals and the decisions on them; ``clock`` times the latency."""

    def __init__(self, router: SignalRouter, clock: Callable[[], float]) -> None:
        self.router = router
        self._clock = clock
        self._shown_at: dict[str, float] = {}  # clock when each proposal appeared

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

    def release(self, proposal: Proposal) -> None:
        """Put a decided proposal back in the queue: its decision could not be stored."""
        self.router.put_back(proposal)
        self._shown_at.setdefault(proposal.id, self._clock())

    def done(self, proposal_id: str) -> None:
        """Forget a claimed proposal: its decision is made."""
        self.router.done(proposal_id)
