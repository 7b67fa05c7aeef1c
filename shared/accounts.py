"""The accounts file: projects, their keys, tags, IP allow-lists and limits, in TOML.

The file is declarative and the only source of truth; `rsms accounts …` edits it and the
ingest service picks changes up without a restart (`account_store.py`). Keys are stored
only as SHA-256 hashes. Example:

    [projects.acme]
    name = "Acme AS"
    store_bodies = true
    ip_allowlist = ["203.0.113.0/24"]
    allowed_countries = ["NO", "SE"]
    allowed_number_types = ["premium_rate"]

    [projects.acme.limits]
    requests_per_minute = 300

    [[projects.acme.keys]]
    id = "key_3f9a1c2b7d4e"
    kind = "live"
    sha256 = "9c1185a5c5e9fc54612808977ee8f548b2258d31..."
    created_at = 2026-11-24T21:00:00Z

    [projects.acme.tags.R-COV1RSMS]
    sender = "RSMS"
    active = true

    [projects.acme.webhook]
    url = "https://acme.example/rsms-events"
    secret = "whsec_..."

A project's `inbound_numbers` are the numbers, short codes or alphanumeric addresses it
receives SMS on (the dispatcher routes an inbound message to the project that owns its
destination); no two projects share one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import tempfile
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import tomli_w
from phonenumbers import SUPPORTED_REGIONS
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.keys import KeyKind, generate_key, generate_key_id, hash_key
from shared.private_dir import private_directory

PROJECT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
PHONE_SENDER = re.compile(r"^\+?[1-9]\d{1,14}$")
SHORT_CODE = re.compile(r"^\d{3,8}$")

NumberType = Literal["premium_rate", "shared_cost", "international_network"]
"""Destination types refused unless a project allows them (`services/ingest/number_policy.py`)."""
NUMBER_TYPES: tuple[NumberType, ...] = get_args(NumberType)


class AccountsError(ValueError):
    """The accounts file or an edit of it is not valid; the message says why."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectLimits(_Model):
    """Overrides of the service-wide defaults; unset means the default applies."""

    requests_per_minute: int | None = Field(None, ge=1)
    tag_requests_per_minute: int | None = Field(None, ge=1)
    concurrent_requests: int | None = Field(None, ge=1)
    # Caps against runaway cost (toll fraud, a loop gone wrong); off unless set.
    segments_per_message: int | None = Field(None, ge=1, description="Most SMS segments per message.")
    daily_spend_cap: Decimal | None = Field(
        None, gt=0, description="Most estimated cost of live sends per UTC day, in the gateway's currency."
    )


class ApiKeyRecord(_Model):
    id: str
    kind: KeyKind
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: datetime


class TagRecord(_Model):
    sender: str
    active: bool = True

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        if not (ALPHANUMERIC_SENDER.match(value) or PHONE_SENDER.match(value)):
            raise ValueError(f"sender {value!r} must be 1-11 letters/digits (at least one letter) or a phone number")
        return value


def inbound_address_key(address: str) -> str:
    """What two spellings of one inbound address have in common: a number's digits (carriers
    write `+4790000000`, `4790000000`, a short code `2222` or `+2222`), an alphanumeric
    address case-folded."""
    stripped = address.strip()
    digits = stripped.removeprefix("+")
    return digits if digits.isdigit() else stripped.casefold()


def _inbound_address(value: str) -> str:
    if not (PHONE_SENDER.match(value) or SHORT_CODE.match(value) or ALPHANUMERIC_SENDER.match(value)):
        raise ValueError(
            f"inbound number {value!r} must be a phone number (E.164), a short code of 3-8 digits "
            "or 1-11 letters/digits with at least one letter"
        )
    return value


WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 -- a prefix, not a secret


def generate_webhook_secret() -> str:
    """A new signing secret: the prefix and 32 random bytes (`secrets`), URL-safe."""
    return WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(32)


class WebhookEndpoint(_Model):
    """Where a project's webhook events go, and the secret they are signed with.

    Unlike an API key the secret is kept as it is (the sender needs it to sign); the
    accounts file is its owner's only (0600).
    """

    url: str
    secret: str = Field(min_length=16)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook URL {value!r} must be an http:// or https:// URL with a host")
        return value


class Project(_Model):
    name: str
    store_bodies: bool = True
    suspended: bool = Field(False, description="Keys still authenticate, but every request is FORBIDDEN.")
    ip_allowlist: list[IPv4Network | IPv6Network] = Field(default_factory=list)
    allowed_countries: list[str] = Field(
        default_factory=list, description="Destination countries (ISO 3166 alpha-2); empty: any country."
    )
    allowed_number_types: list[NumberType] = Field(
        default_factory=list, description="Destination types otherwise refused that this project may send to."
    )
    limits: ProjectLimits = Field(default_factory=ProjectLimits)
    keys: list[ApiKeyRecord] = Field(default_factory=list)
    tags: dict[str, TagRecord] = Field(default_factory=dict)
    inbound_numbers: list[str] = Field(
        default_factory=list, description="Numbers, short codes or alphanumerics it receives SMS on."
    )

    @field_validator("inbound_numbers")
    @classmethod
    def _inbound_numbers(cls, value: list[str]) -> list[str]:
        return [_inbound_address(v) for v in value]

    webhook: WebhookEndpoint | None = Field(None, description="None: the project gets no webhook requests.")

    @field_validator("ip_allowlist", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if isinstance(value, list):
            return [ip_network(str(v), strict=False) for v in value]
        return value

    @field_validator("allowed_countries")
    @classmethod
    def _countries(cls, value: list[str]) -> list[str]:
        for country in value:
            if country not in SUPPORTED_REGIONS:
                raise ValueError(f"{country!r} is not a country code (ISO 3166 alpha-2, upper case, such as NO)")
        return sorted(set(value))

    @field_validator("allowed_number_types")
    @classmethod
    def _number_types(cls, value: list[NumberType]) -> list[NumberType]:
        return sorted(set(value))

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, TagRecord]) -> dict[str, TagRecord]:
        for tag in value:
            if not 1 <= len(tag) <= 50:
                raise ValueError(f"tag {tag!r} must be 1-50 characters")
        return value


class AccountsFile(_Model):
    projects: dict[str, Project] = Field(default_factory=dict)

    @field_validator("projects")
    @classmethod
    def _unique_keys_and_inbound_numbers(cls, value: dict[str, Project]) -> dict[str, Project]:
        seen: set[str] = set()
        owners: dict[str, str] = {}
        for project_id, project in value.items():
            for number in project.inbound_numbers:
                owner = owners.setdefault(inbound_address_key(number), project_id)
                if owner != project_id:
                    raise ValueError(f"inbound number {number!r} of project {project_id!r} is also {owner!r}'s")
            if not PROJECT_ID.match(project_id):
                raise ValueError(f"project id {project_id!r}: lowercase letters, digits, - and _")
            live = [k for k in project.keys if k.kind == "live"]
            if len(live) > 1:
                raise ValueError(f"project {project_id!r} has {len(live)} live keys; one is allowed")
            for key in project.keys:
                if key.sha256 in seen:
                    raise ValueError(f"a key of project {project_id!r} is also used elsewhere")
                seen.add(key.sha256)
        return value

    def project(self, project_id: str) -> Project:
        try:
            return self.projects[project_id]
        except KeyError:
            raise AccountsError(f"no project {project_id!r}") from None


def load_accounts(path: Path) -> AccountsFile:
    if not path.exists():
        return AccountsFile()
    try:
        return AccountsFile.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except tomllib.TOMLDecodeError as exc:
        raise AccountsError(f"{path}: not valid TOML: {exc}") from exc
    except ValidationError as exc:
        raise AccountsError(f"{path}: {exc}") from exc


def save_accounts(path: Path, accounts: AccountsFile) -> None:
    """Write atomically, so the ingest service never reads half a file."""
    private_directory(path.parent)  # key hashes: the owner's only
    data: dict[str, Any] = accounts.model_dump(mode="json", exclude_none=True)
    for project in data["projects"].values():
        project["ip_allowlist"] = [str(n) for n in project["ip_allowlist"]]
        if not project["limits"]:
            del project["limits"]
        if not project["inbound_numbers"]:
            del project["inbound_numbers"]  # a file without any still loads in an older version
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".accounts-", suffix=".toml")
    try:
        with os.fdopen(fd, "wb") as out:
            tomli_w.dump(data, out)
        Path(tmp).chmod(0o600)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def editing(path: Path) -> Iterator[AccountsFile]:
    """Load, let the caller change, validate and save, holding a lock against other edits."""
    private_directory(path.parent)  # key hashes: the owner's only
    with (path.parent / ".accounts.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        accounts = load_accounts(path)
        yield accounts
        try:
            validated = AccountsFile.model_validate(accounts.model_dump())
        except ValidationError as exc:
            raise AccountsError(str(exc)) from exc
        save_accounts(path, validated)


def create_project(accounts: AccountsFile, project_id: str, name: str, *, store_bodies: bool = True) -> None:
    if project_id in accounts.projects:
        raise AccountsError(f"project {project_id!r} exists already")
    if not PROJECT_ID.match(project_id):
        raise AccountsError(f"project id {project_id!r}: use lowercase letters, digits, - and _")
    accounts.projects[project_id] = Project(name=name, store_bodies=store_bodies)


def issue_key(accounts: AccountsFile, project_id: str, kind: KeyKind) -> tuple[ApiKeyRecord, str]:
    """A new key for the project; a new live key replaces the old one (rotation).

    Returns the record and the key itself, which exists nowhere else afterwards.
    """
    project = accounts.project(project_id)
    key = generate_key(kind)
    record = ApiKeyRecord(id=generate_key_id(), kind=kind, sha256=hash_key(key), created_at=datetime.now(UTC))
    if kind == "live":
        project.keys = [k for k in project.keys if k.kind != "live"]
    project.keys.append(record)
    return record, key


def revoke_key(accounts: AccountsFile, project_id: str, key_id: str) -> None:
    project = accounts.project(project_id)
    remaining = [k for k in project.keys if k.id != key_id]
    if len(remaining) == len(project.keys):
        raise AccountsError(f"project {project_id!r} has no key {key_id!r}")
    project.keys = remaining


def set_tag(accounts: AccountsFile, project_id: str, tag: str, sender: str, *, active: bool = True) -> None:
    try:
        accounts.project(project_id).tags[tag] = TagRecord(sender=sender, active=active)
    except ValidationError as exc:
        raise AccountsError(exc.errors()[0]["msg"]) from exc


def set_tag_active(accounts: AccountsFile, project_id: str, tag: str, *, active: bool) -> None:
    tags = accounts.project(project_id).tags
    if tag not in tags:
        raise AccountsError(f"project {project_id!r} has no tag {tag!r}")
    tags[tag] = tags[tag].model_copy(update={"active": active})


def set_allowlist(accounts: AccountsFile, project_id: str, cidrs: list[str]) -> None:
    try:
        networks = [ip_network(c, strict=False) for c in cidrs]
    except ValueError as exc:
        raise AccountsError(str(exc)) from exc
    accounts.project(project_id).ip_allowlist = networks


def set_countries(accounts: AccountsFile, project_id: str, countries: list[str]) -> None:
    project = accounts.project(project_id)
    unknown = [c for c in countries if c.upper() not in SUPPORTED_REGIONS]
    if unknown:
        raise AccountsError(f"not a country code (ISO 3166 alpha-2, such as NO): {', '.join(unknown)}")
    project.allowed_countries = sorted({c.upper() for c in countries})


def set_number_types(accounts: AccountsFile, project_id: str, types: list[NumberType]) -> None:
    accounts.project(project_id).allowed_number_types = sorted(set(types))


def set_suspended(accounts: AccountsFile, project_id: str, *, suspended: bool) -> None:
    accounts.project(project_id).suspended = suspended


def set_limits(accounts: AccountsFile, project_id: str, limits: ProjectLimits) -> None:
    accounts.project(project_id).limits = limits


def add_inbound_number(accounts: AccountsFile, project_id: str, number: str) -> None:
    """Raises `AccountsError` for a malformed number or one another project owns already."""
    project = accounts.project(project_id)
    try:
        _inbound_address(number)
    except ValueError as exc:
        raise AccountsError(str(exc)) from None
    key = inbound_address_key(number)
    for other_id, other in accounts.projects.items():
        if any(inbound_address_key(n) == key for n in other.inbound_numbers):
            if other_id == project_id:
                return
            raise AccountsError(f"inbound number {number!r} belongs to project {other_id!r}")
    project.inbound_numbers.append(number)


def remove_inbound_number(accounts: AccountsFile, project_id: str, number: str) -> None:
    project = accounts.project(project_id)
    key = inbound_address_key(number)
    remaining = [n for n in project.inbound_numbers if inbound_address_key(n) != key]
    if len(remaining) == len(project.inbound_numbers):
        raise AccountsError(f"project {project_id!r} has no inbound number {number!r}")
    project.inbound_numbers = remaining


def set_webhook(accounts: AccountsFile, project_id: str, url: str, secret: str | None = None) -> str:
    """Point the project's webhook at `url`; returns the secret (a new one unless given)."""
    project = accounts.project(project_id)
    chosen = secret or generate_webhook_secret()
    try:
        project.webhook = WebhookEndpoint(url=url, secret=chosen)
    except ValidationError as exc:
        raise AccountsError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from exc
    return chosen


def remove_webhook(accounts: AccountsFile, project_id: str) -> None:
    project = accounts.project(project_id)
    if project.webhook is None:
        raise AccountsError(f"project {project_id!r} has no webhook")
    project.webhook = None
