"""Lease-based leader election, so that two or more operator replicas are safe: one reconciles, the rest wait.

kopf's peering is not leader election (kopf#734, #1266): peers pause for each other by priority, without a lease
that bounds in time who may act. This module follows client-go's `leaderelection` on a coordination.k8s.io/v1
Lease instead:

- A candidate takes the Lease when nobody holds it, or when the holder's record has not changed for the holder's
  leaseDurationSeconds as measured on the candidate's own monotonic clock (no trust in other machines' clocks).
- The leader renews every retry period. When it cannot renew for the renew deadline, or finds another holder, it
  exits at once without finishing in-flight work, as controller-runtime does: the pod restarts as a standby, and
  since the renew deadline is shorter than the lease duration, the old leader is gone before anyone takes over.
- A leader that stops gracefully (SIGTERM, e.g. a rolling update) releases the Lease, so a standby takes over at
  its next retry instead of waiting for the lease to expire.

A standby serves /healthz on the operator's health port while it waits, so that probes keep it alive; it hands the
port to kopf's liveness endpoint when it becomes the leader.
"""

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NoReturn

import httpx2
from aiohttp import web
from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from modeldeploy_operator import metrics
from modeldeploy_operator.kube import default_client
from modeldeploy_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)

# controller-runtime's manager exits with 1 when it loses the election; so do we.
EXIT_LEADERSHIP_LOST = 1
# Up to this fraction of the retry period is added to a standby's waits, so candidates do not poll in lockstep.
_JITTER = 0.2
_API_ERRORS = (ApiError, httpx2.HTTPError, OSError, TimeoutError)


class LeadershipLost(Exception):
    """The leader can no longer prove that it holds the Lease."""


@dataclass(frozen=True)
class LeaseRecord:
    """The part of a Lease that leader election reads and writes."""

    holder: str
    lease_duration_seconds: int
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int

    @classmethod
    def of(cls, lease: Lease) -> "LeaseRecord":
        spec = lease.spec or LeaseSpec()
        return cls(
            holder=spec.holderIdentity or "",
            lease_duration_seconds=spec.leaseDurationSeconds or 0,
            acquire_time=spec.acquireTime,
            renew_time=spec.renewTime,
            transitions=spec.leaseTransitions or 0,
        )

    def spec(self) -> LeaseSpec:
        return LeaseSpec(
            holderIdentity=self.holder,
            leaseDurationSeconds=self.lease_duration_seconds,
            acquireTime=self.acquire_time,
            renewTime=self.renew_time,
            leaseTransitions=self.transitions,
        )


def claim(
    current: LeaseRecord | None, *, identity: str, now: datetime, lease_duration_seconds: int, holder_expired: bool
) -> LeaseRecord | None:
    """The record that takes or renews the Lease for `identity`, or None while another holder's lease is valid."""
    if current is None:
        return LeaseRecord(identity, lease_duration_seconds, now, now, 0)
    if current.holder == identity:
        return replace(current, lease_duration_seconds=lease_duration_seconds, renew_time=now)
    if current.holder and not holder_expired:
        return None
    return LeaseRecord(identity, lease_duration_seconds, now, now, current.transitions + 1)


def released(current: LeaseRecord, now: datetime) -> LeaseRecord:
    """The record a leader leaves behind when it stops: no holder, so the next candidate need not wait."""
    return LeaseRecord("", 1, now, now, current.transitions)


def default_identity() -> str:
    """The pod's name (its hostname) plus a random part, unique even when a pod restarts under the same name."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:12]}"


class LeaderElector:
    """Takes, keeps and releases one Lease through the API. Time comes from injectable clocks for tests."""

    def __init__(
        self,
        client: AsyncClient,
        settings: OperatorSettings,
        identity: str,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._namespace = settings.leader_election_namespace
        self._name = settings.leader_election_lease_name
        self._lease_duration = settings.leader_election_lease_duration_seconds
        self._renew_deadline = settings.leader_election_renew_deadline_seconds
        self._retry_period = settings.leader_election_retry_period_seconds
        self.identity = identity
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        # The last record seen and when it was first seen (client-go's observedRecord and observedTime).
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._leading = False

    @property
    def lease(self) -> str:
        return f"{self._namespace}/{self._name}"

    async def acquire(self) -> None:
        """Wait as a standby until this process holds the Lease."""
        logger.info("waiting to lead: Lease %s, identity %s", self.lease, self.identity)
        while True:
            try:
                if await self._try_acquire_or_renew():
                    break
            except _API_ERRORS as error:
                logger.error("cannot read or take the Lease %s: %s", self.lease, _describe(error))
            await asyncio.sleep(self._retry_period * (1 + random.uniform(0, _JITTER)))
        self._leading = True
        logger.info("became the leader: Lease %s, identity %s", self.lease, self.identity)

    async def hold(self) -> NoReturn:
        """Renew the Lease until that fails; then raise LeadershipLost."""
        last_renewed = self._monotonic()
        while True:
            await asyncio.sleep(self._retry_period)
            remaining = self._renew_deadline - (self._monotonic() - last_renewed)
            try:
                renewed = await asyncio.wait_for(self._try_acquire_or_renew(), timeout=max(remaining, 0.001))
            except _API_ERRORS as error:
                logger.warning("cannot renew the Lease %s: %s", self.lease, _describe(error))
                renewed = False
            if renewed:
                last_renewed = self._monotonic()
            elif self._monotonic() - last_renewed >= self._renew_deadline:
                raise LeadershipLost(f"could not renew the Lease {self.lease} for {self._renew_deadline:g}s")

    async def release(self) -> None:
        """Give the Lease up, if this process still holds it, so that a standby need not wait for it to expire."""
        if not self._leading:
            return
        self._leading = False
        try:
            lease = await self._client.get(Lease, self._name, namespace=self._namespace)
            record = LeaseRecord.of(lease)
            if record.holder != self.identity:
                return
            lease.spec = released(record, self._wall_clock()).spec()
            await self._client.replace(lease)
            logger.info("released the Lease %s", self.lease)
        except _API_ERRORS as error:
            logger.warning("could not release the Lease %s (it expires by itself): %s", self.lease, _describe(error))

    async def _try_acquire_or_renew(self) -> bool:
        now = self._wall_clock()
        try:
            lease = await self._client.get(Lease, self._name, namespace=self._namespace)
        except ApiError as error:
            if error.status.code != 404:
                raise
            return await self._create(now)
        current = LeaseRecord.of(lease)
        self._observe(current)
        if self._leading and current.holder != self.identity:
            raise LeadershipLost(f"the Lease {self.lease} is now held by {current.holder or 'nobody'}")
        holder_expired = self._monotonic() - self._observed_at >= current.lease_duration_seconds
        desired = claim(
            current,
            identity=self.identity,
            now=now,
            lease_duration_seconds=self._lease_duration,
            holder_expired=holder_expired,
        )
        if desired is None:
            return False
        lease.spec = desired.spec()
        try:
            # The resourceVersion read above makes this a compare-and-swap: of two candidates, one wins.
            await self._client.replace(lease)
        except ApiError as error:
            if error.status.code == 409:
                return False
            raise
        self._observe(desired)
        return True

    async def _create(self, now: datetime) -> bool:
        record = claim(
            None, identity=self.identity, now=now, lease_duration_seconds=self._lease_duration, holder_expired=True
        )
        assert record is not None  # a missing Lease can always be claimed
        lease = Lease(metadata=ObjectMeta(name=self._name, namespace=self._namespace), spec=record.spec())
        try:
            await self._client.create(lease)
        except ApiError as error:
            if error.status.code == 409:
                return False  # another candidate created it first
            raise
        self._observe(record)
        return True

    def _observe(self, record: LeaseRecord) -> None:
        if record != self._observed:
            self._observed = record
            self._observed_at = self._monotonic()


def _describe(error: BaseException) -> str:
    if isinstance(error, ApiError):
        return f"HTTP {error.status.code}: {error.status.message}"
    return f"{type(error).__name__}: {error}"


async def _serve_standby_health(host: str, port: int) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"role": "standby"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def run_elected(settings: OperatorSettings, operate: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `operate()` (kopf) only while this process leads; exit the process if leadership is lost."""
    client = default_client()
    elector = LeaderElector(client, settings, default_identity())
    metrics.LEADER.set(0)
    health = await _serve_standby_health(settings.bind_address, settings.health_port)
    try:
        await elector.acquire()
    finally:
        await health.cleanup()
    metrics.LEADER.set(1)
    operator = asyncio.create_task(operate(), name="operator")
    keeper = asyncio.create_task(elector.hold(), name="leader-election")
    await asyncio.wait({operator, keeper}, return_when=asyncio.FIRST_COMPLETED)
    if keeper.done():
        _exit_lost(keeper.exception())
    # kopf stopped (SIGTERM): stop renewing before releasing, so that no renewal can land after the release.
    keeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await keeper
    await elector.release()
    await client.close()
    metrics.LEADER.set(0)
    operator.result()  # kopf's own error, if it stopped with one


def _exit_lost(error: BaseException | None) -> NoReturn:
    # Handlers may be mid-flight; letting them finish could overlap the next leader, so stop right here.
    logger.critical("leader election lost (%s): exiting so that this pod restarts as a standby", error)
    logging.shutdown()
    os._exit(EXIT_LEADERSHIP_LOST)
