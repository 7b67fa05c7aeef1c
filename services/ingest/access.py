"""Who may call: the Bearer key, the project's IP allow-list, and the limits that apply."""

from __future__ import annotations

from collections.abc import Sequence

from services.ingest.account_store import AccountStore, Caller
from services.ingest.client_ip import Network, client_ip
from services.ingest.ratelimit import Limits
from shared.accounts import Project
from shared.errors import ErrorCode, GatewayError


class AccessControl:
    def __init__(self, accounts: AccountStore, defaults: Limits, trusted_proxies: Sequence[Network]) -> None:
        self._accounts = accounts
        self._defaults = defaults
        self._trusted_proxies = trusted_proxies

    @property
    def default_limits(self) -> Limits:
        return self._defaults

    def authenticate(self, authorization: str | None) -> Caller:
        """The caller whose key the Authorization header's value carries (Bearer)."""
        scheme, _, key = (authorization or "").partition(" ")
        caller = self._accounts.authenticate(key.strip()) if scheme.lower() == "bearer" else None
        if caller is None:
            raise GatewayError(ErrorCode.UNAUTHORIZED)
        if caller.project.suspended:
            # The key is right, so say so: the client should call its administrator, not rotate keys.
            raise GatewayError(ErrorCode.FORBIDDEN, "Project is suspended; contact your administrator")
        return caller

    def check_ip(self, caller: Caller, peer: str, forwarded_for: Sequence[str]) -> None:
        """`peer` is the socket's address ("" when the server gave none), `forwarded_for`
        every X-Forwarded-For line of the request, in order: a client's forged line may
        come before the proxy's."""
        if not caller.project.ip_allowlist:
            return
        ip = client_ip(peer, forwarded_for, self._trusted_proxies)
        if ip is None or not caller.ip_allowed(ip):
            raise GatewayError(ErrorCode.IP_NOT_WHITELISTED)

    def limits_for(self, project: Project) -> Limits:
        own = project.limits
        return Limits(
            requests_per_minute=own.requests_per_minute or self._defaults.requests_per_minute,
            tag_requests_per_minute=own.tag_requests_per_minute or self._defaults.tag_requests_per_minute,
            concurrent_requests=own.concurrent_requests or self._defaults.concurrent_requests,
            reads_per_minute=self._defaults.reads_per_minute,
        )
