"""Error tracking: Sentry, optional, on only when ``SENTRY_DSN`` is set.

``cma run`` calls :func:`start_tracking` once, after the log is set up. Without
``SENTRY_DSN`` in the environment nothing happens and ``sentry_sdk`` is not imported.
With it, the ``sentry`` extra (``pip install 'crypto-market-agents[sentry]'``) must be
installed; an event then goes to Sentry for each error the log file records (an engine
stopped on an error, an agent switched off, an exception nobody caught).

What leaves the machine passes the same redaction as the log file (:mod:`tui.logs`):

* every event (:meth:`Scrubber.event`): the settings' secrets (the exchange keys), the
  DSN itself, and an exchange's signatures and key headers or parameters
  (:func:`engine.exchange.errors.redact`) are blotted out of every string in it, the
  exception's message and the stack frames' local variables included;
* every breadcrumb (:meth:`Scrubber.breadcrumb`, the log lines and HTTP calls that led
  up to an event) carries no amounts either: its numbers are written ``#`` and its
  numeric fields are dropped, so no price, quantity or balance reaches Sentry.

No personal data is sent (``send_default_pii`` off); no performance tracing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tui.logs import MASK, _Redactor

if TYPE_CHECKING:
    from sentry_sdk.transport import Transport

#: The environment variable holding the DSN (the name Sentry's own tools use).
DSN_ENV = "SENTRY_DSN"
#: What a number in a breadcrumb becomes.
NUMBER_MASK = "#"
_NUMBER = re.compile(r"\d+(?:[.,_]\d+)*(?:[eE][-+]?\d+)?")
#: What a tracking start that cannot work says (cma then exits 2).
_INSTALL = "pip install 'crypto-market-agents[sentry]'"


class TrackingError(Exception):
    """``SENTRY_DSN`` is set but tracking cannot start (no sentry-sdk, a malformed DSN)."""


def dsn_from(environ: Mapping[str, str] | None = None) -> str | None:
    """The configured DSN, or None (unset or blank: tracking is off)."""
    env = os.environ if environ is None else environ
    dsn = env.get(DSN_ENV, "").strip()
    return dsn or None


class Scrubber:
    """``before_send`` and ``before_breadcrumb``: the log file's redaction, and no amounts
    in breadcrumbs (see the module docstring)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._redactor = _Redactor(secrets)

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(self._redactor.secrets)

    def text(self, value: str) -> str:
        """``value`` with the secrets, signatures and key parameters blotted out."""
        from engine.exchange.errors import redact

        value = self._redactor.text(value)
        # Also without any key known: a signed query string is never sent.
        return redact(value, self._redactor.secrets)

    def _walk(self, value: Any, amounts: bool) -> Any:
        if isinstance(value, str):
            value = self.text(value)
            return value if amounts else _NUMBER.sub(NUMBER_MASK, value)
        if isinstance(value, Mapping):
            out = {}
            for key, item in value.items():
                if not amounts and _is_number(item):
                    continue  # a price, a quantity, a balance: dropped
                out[self.text(key) if isinstance(key, str) else key] = self._walk(item, amounts)
            return out
        if isinstance(value, list | tuple):
            items = [v for v in value if amounts or not _is_number(v)]
            return [self._walk(v, amounts) for v in items]
        if value is None or isinstance(value, bool | int | float):
            return value
        if hasattr(value, "get_secret_value"):  # a SecretStr that reached an extra
            return MASK
        return self._walk(repr(value), amounts)  # as the log file renders it: its repr

    def event(self, event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
        """Sentry's ``before_send``: every string of the event redacted. Breadcrumbs inside
        it went through :meth:`breadcrumb` already; they are scrubbed again all the same."""
        cleaned: dict[str, Any] = {}
        for key, value in event.items():
            if key == "breadcrumbs":
                cleaned[key] = self._breadcrumbs(value)
            elif key == "timestamp" or key == "start_timestamp":
                cleaned[key] = value  # the event's own time (a datetime or a float)
            else:
                cleaned[key] = self._walk(value, amounts=True)
        return cleaned

    def _breadcrumbs(self, value: Any) -> Any:
        if isinstance(value, Mapping) and isinstance(value.get("values"), list):
            return {**value, "values": [self.breadcrumb(dict(b), {}) for b in value["values"]]}
        return self._walk(value, amounts=False)

    def breadcrumb(self, crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
        """Sentry's ``before_breadcrumb``: redacted, with no number left in it."""
        kept: dict[str, Any] = {
            k: crumb[k] for k in ("timestamp", "level", "category", "type") if k in crumb
        }
        for key in ("message", "data"):
            if key in crumb:
                kept[key] = self._walk(crumb[key], amounts=False)
        return kept


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def start_tracking(
    secrets: Iterable[str] = (),
    *,
    environ: Mapping[str, str] | None = None,
    transport: Transport | None = None,
) -> bool:
    """Start Sentry when ``SENTRY_DSN`` is set (``transport``: where envelopes go instead
    of Sentry's HTTP one, for tests); whether it started. Raises :class:`TrackingError`
    when the DSN is set but tracking cannot work (its text never shows the DSN)."""
    dsn = dsn_from(environ)
    if dsn is None:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.utils import BadDsn
    except ImportError:
        missing = f"{DSN_ENV} is set but sentry-sdk is not installed ({_INSTALL})"
        raise TrackingError(missing) from None
    scrubber = Scrubber([*secrets, dsn])
    options: dict[str, Any] = {}
    if transport is not None:
        options["transport"] = transport
    try:
        sentry_sdk.init(
            dsn=dsn,
            release=f"cma@{_version()}",
            send_default_pii=False,
            traces_sample_rate=None,
            before_send=scrubber.event,  # type: ignore[arg-type]  # Event: a TypedDict
            before_breadcrumb=scrubber.breadcrumb,
            **options,
        )
    except BadDsn:
        raise TrackingError(f"{DSN_ENV}: not a valid Sentry DSN") from None
    return True


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("crypto-market-agents")
    except PackageNotFoundError:
        return "unknown"
