"""The CRM mirror: accounts, contacts, deals, owners, and where each lives in which source system."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, Index, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from orchestrator.models.base import Base, IdMixin, utcnow

if TYPE_CHECKING:
    from orchestrator.models.health import AccountHealth
    from orchestrator.models.journeys import Journey


class JourneyStage(StrEnum):
    ACQUIRE = "acquire"
    ONBOARD = "onboard"
    ADOPT = "adopt"
    EXPAND = "expand"
    RENEW = "renew"


class Owner(IdMixin, Base):
    """A person who can own accounts and work tasks: never a team."""

    __tablename__ = "owners"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(60), index=True)  # ae, csm, sdr, cs-lead, ...
    team: Mapped[str | None] = mapped_column(String(100))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("owners.id"))
    timezone: Mapped[str | None] = mapped_column(String(64))  # IANA name; None: the default calendar's
    # {"workdays": ["mon", ...], "hours": "09:00-17:00", "holidays": "US"}; empty = configured default
    working_hours: Mapped[dict[str, Any]] = mapped_column(default=dict)
    active: Mapped[bool] = mapped_column(default=True)
    out_of_office_until: Mapped[datetime | None]
    max_open_tasks: Mapped[int | None]  # capacity cap; None = no cap
    last_assigned_at: Mapped[datetime | None]  # round-robin cursor
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    manager: Mapped[Owner | None] = relationship(remote_side="Owner.id")

    def available(self, at: datetime) -> bool:
        """Active and not out of office at `at`."""
        return self.active and (self.out_of_office_until is None or self.out_of_office_until <= at)


class Account(IdMixin, Base):
    __tablename__ = "accounts"

    name: Mapped[str] = mapped_column(String(300))
    domain: Mapped[str | None] = mapped_column(String(253), unique=True)  # lowercase, see validator
    segment: Mapped[str | None] = mapped_column(String(60))
    industry: Mapped[str | None] = mapped_column(String(120))
    arr: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))  # annual recurring revenue
    health: Mapped[int | None]  # 0..100 health score as the CRM or CS tooling imports it
    renewal_date: Mapped[datetime | None]
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("owners.id"), index=True)
    csm_id: Mapped[int | None] = mapped_column(ForeignKey("owners.id"))  # customer success manager
    stage: Mapped[str] = mapped_column(String(20), default=JourneyStage.ACQUIRE)
    stage_entered_at: Mapped[datetime] = mapped_column(default=utcnow)
    churned_at: Mapped[datetime | None]
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)  # custom CRM fields
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @validates("domain")
    def _lowercase_domain(self, _key: str, value: str | None) -> str | None:
        # Domains are case-insensitive; storing them lowercase keeps the lookup on the index.
        return value.strip().lower() if value else value

    owner: Mapped[Owner | None] = relationship(foreign_keys=[owner_id])
    csm: Mapped[Owner | None] = relationship(foreign_keys=[csm_id])
    contacts: Mapped[list[Contact]] = relationship(back_populates="account")
    deals: Mapped[list[Deal]] = relationship(back_populates="account")
    # The score a health model keeps (models/health.py); `health_score` is what conditions read.
    health_state: Mapped[AccountHealth | None] = relationship()

    @property
    def health_score(self) -> int | None:
        """The account's health: the health model's current score, else the imported field."""
        state = self.health_state
        return state.score if state is not None else self.health


class Contact(IdMixin, Base):
    __tablename__ = "contacts"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    title: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str | None] = mapped_column(String(60))  # champion, admin, economic_buyer, user
    is_primary: Mapped[bool] = mapped_column(default=False)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)

    account: Mapped[Account] = relationship(back_populates="contacts")


class Deal(IdMixin, Base):
    __tablename__ = "deals"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(300))
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    stage: Mapped[str | None] = mapped_column(String(100))  # the CRM's own pipeline stage
    kind: Mapped[str] = mapped_column(String(30), default="new")  # new, expansion, renewal
    close_date: Mapped[datetime | None]
    is_closed: Mapped[bool] = mapped_column(default=False)
    is_won: Mapped[bool] = mapped_column(default=False)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("owners.id"))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)

    account: Mapped[Account] = relationship(back_populates="deals")
    owner: Mapped[Owner | None] = relationship()


class ExternalId(IdMixin, Base):
    """Where a local record lives in an outside system (`salesforce`, `hubspot`, ...).

    One table for all kinds so that "resolve (source, external id) to a local row"
    is one indexed lookup whatever the record kind.
    """

    __tablename__ = "external_ids"
    __table_args__ = (
        UniqueConstraint("kind", "source", "external_id"),
        UniqueConstraint("kind", "local_id", "source"),
    )

    kind: Mapped[str] = mapped_column(String(20))  # account, contact, deal, owner
    local_id: Mapped[int]
    source: Mapped[str] = mapped_column(String(40))
    external_id: Mapped[str] = mapped_column(String(255))


class StageChange(IdMixin, Base):
    """An account moved between journey stages; time-in-stage reports read these."""

    __tablename__ = "stage_changes"
    __table_args__ = (Index(None, "account_id", "at"),)

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    from_stage: Mapped[str | None] = mapped_column(String(20))
    to_stage: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime]
    seconds_in_previous: Mapped[int | None]
    journey_id: Mapped[int | None] = mapped_column(ForeignKey("journeys.id"))
    reason: Mapped[str] = mapped_column(String(500), default="")
    # Never read: it makes the unit of work write the journey before this row, both ids known (models/ids.py).
    journey: Mapped[Journey | None] = relationship()
