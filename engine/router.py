"""The signal router: deduplication, time to live, bounds and approval policies.

Every method is synchronous, so between two ``await`` points of the engine a
check and its update cannot interleave with another coroutine: a proposal is
*claimed* before its decision is written, and only the claimant may decide it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum

from engine.models import Proposal, evolve


def confidence_at_least(fraction: float) -> str:
    """``≥ 70%``: an auto-approval threshold (a fraction) as every screen and log line
    shows it, a percentage with up to four significant digits (``≥ 1.5%``)."""
    return f"≥ {fraction * 100:.4g}%"


class Policy(StrEnum):
    """Who decides proposals."""

    MANUAL = "manual"
    AUTO = "auto"
    QUEUE_ONLY = "queue-only"


class Verdict(StrEnum):
    """What a policy says about a new proposal."""

    QUEUE = "queue"
    APPROVE = "approve"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Offered:
    """What happened to an offered proposal."""

    proposal: Proposal  # the queued one: the new proposal, or the one it merged into
    merged: bool
    evicted: tuple[Proposal, ...]  # the oldest, expired to stay within bounds


class SignalRouter:
    """Pending proposals, oldest first, with at most one per symbol and side in a window."""

    def __init__(
        self,
        max_pending: int,
        dedup_window_ms: int,
        policy: Policy = Policy.MANUAL,
        auto_confidence: float = 0.7,
        below_confidence: str = "queue",
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        if dedup_window_ms < 0:
            raise ValueError(f"dedup_window_ms must be >= 0, got {dedup_window_ms}")
        self.max_pending = max_pending
        self.dedup_window_ms = dedup_window_ms
        self.policy = policy
        self.auto_confidence = auto_confidence
        self.below_confidence = below_confidence
        self._pending: OrderedDict[str, Proposal] = OrderedDict()
        self._claimed: dict[str, Proposal] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def pending(self) -> list[Proposal]:
        """Pending proposals, oldest first (claimed ones excluded)."""
        return list(self._pending.values())

    def get(self, proposal_id: str) -> Proposal | None:
        return self._pending.get(proposal_id) or self._claimed.get(proposal_id)

    def restore(self, proposals: list[Proposal]) -> None:
        """Put proposals recovered from the store back in the queue."""
        for p in sorted(proposals, key=lambda p: p.created_at):
            self._pending[p.id] = p

    def offer(self, proposal: Proposal) -> Offered:
        """Queue ``proposal``, or merge it into a live one for the same symbol and side."""
        for existing in self._pending.values():
            if (
                existing.symbol == proposal.symbol
                and existing.side is proposal.side
                and proposal.created_at - existing.created_at <= self.dedup_window_ms
            ):
                merged = evolve(
                    existing,
                    merged=existing.merged + 1,
                    confidence=max(existing.confidence, proposal.confidence),
                )
                self._pending[existing.id] = merged
                return Offered(merged, True, ())
        self._pending[proposal.id] = proposal
        evicted: list[Proposal] = []
        while len(self._pending) > self.max_pending:
            _, oldest = self._pending.popitem(last=False)
            self._claimed[oldest.id] = oldest
            evicted.append(oldest)
        return Offered(proposal, False, tuple(evicted))

    def verdict(self, proposal: Proposal) -> Verdict:
        """What the policy decides for a new proposal."""
        if self.policy is Policy.AUTO:
            # A proposal the risk engine would not size waits for a person.
            if proposal.confidence >= self.auto_confidence and proposal.size > 0:
                return Verdict.APPROVE
            return Verdict.REJECT if self.below_confidence == "reject" else Verdict.QUEUE
        return Verdict.QUEUE

    def due(self, now_ms: int) -> list[Proposal]:
        """Claim every proposal whose time to live has run out (all of them under queue-only).

        Queue-only never approves: a proposal lives out its time to live and expires.
        """
        out = [p for p in self._pending.values() if p.expires_at <= now_ms]
        for p in out:
            self.claim(p.id)
        return out

    def claim(self, proposal_id: str) -> Proposal | None:
        """Take a proposal out of the queue to decide it; None if gone or already claimed."""
        p = self._pending.pop(proposal_id, None)
        if p is not None:
            self._claimed[proposal_id] = p
        return p

    def release(self, proposal_id: str) -> None:
        """Put a claimed proposal back (its decision could not be stored)."""
        p = self._claimed.pop(proposal_id, None)
        if p is not None:
            self._pending[proposal_id] = p
            self._pending.move_to_end(proposal_id, last=False)
            # Keep oldest-first order after a put-back.
            for key in sorted(self._pending, key=lambda k: self._pending[k].created_at):
                self._pending.move_to_end(key)

    def put_back(self, proposal: Proposal) -> None:
        """Queue a proposal decided and forgotten again (its decision could not be stored)."""
        self._claimed[proposal.id] = proposal
        self.release(proposal.id)

    def done(self, proposal_id: str) -> None:
        """Forget a claimed proposal whose decision is stored."""
        self._claimed.pop(proposal_id, None)
