"""ridehail end to end: real service processes, embedded NATS and Envoy; every request
goes through the gateway, as a rider, a driver or an admin would send it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from owned_routes import OWNED
from ridehail_cli.api import Person
from ridehail_cli.demo import tour
from ridehail_people import admin, available, city, eventually, offline, person
from ridehail_system import running_system

from corral.broker import control_url

pytestmark = [
    pytest.mark.integration,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(240),
]

BERLIN = {"lat": 52.52, "lng": 13.405}  # the tour's city
MADRID = {"lat": 40.4168, "lng": -3.7038}
NEARBY = {"lat": 40.4178, "lng": -3.7028}
MIDWAY = {"lat": 40.4068, "lng": -3.6888}
DROPOFF = {"lat": 40.3968, "lng": -3.6738}


def faster(text: str) -> str:
    """Shorter waits and quicker retries, so failure paths finish within a test."""
    return (
        text.replace("WAIT_TIMEOUT_S: 120", "WAIT_TIMEOUT_S: 6")
        .replace("backoff: [500ms, 2s, 5s, 10s]", "backoff: [300ms, 500ms, 1s]")
        .replace("FAKEPAY_LATENCY_MS: 20", "FAKEPAY_LATENCY_MS: 0")
        .replace("MATCH_ACCEPT_TIMEOUT_S: 60", "MATCH_ACCEPT_TIMEOUT_S: 4")
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def system(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[str, Any]]:
    async with running_system(tmp_path_factory.mktemp("ridehail"), edit=faster) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module")
async def http(system: tuple[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system[0], timeout=15) as client:
        yield client


def nats_url(system: tuple[str, Any]) -> str:
    """The bus with the control plane's credentials (status shows it without them)."""
    session = system[1]
    found = control_url(session.plan.state_dir)
    assert found is not None, "the system's bus has no control credentials on disk"
    return found


async def test_the_tour_runs_from_signup_to_payment(
    system: tuple[str, Any], http: httpx.AsyncClient
) -> None:
    """The scripted tour (`ridehail demo`) completes a ride and sees it paid, and leaves
    no driver on duty (one left available was matched with the next rides, say a
    `ridehail sim` right after, and never drove them)."""
    ops = await admin(http)
    before = (await ops.call("GET", "/admin/matching/drivers")).json()
    assert await tour(system[0]) == 0
    after = (await ops.call("GET", "/admin/matching/drivers")).json()
    assert after.keys() <= before.keys(), "the tour's driver is still on duty"


async def test_happy_path_fare_estimate_match_track_complete_pay(http: httpx.AsyncClient) -> None:
    """A rider's ride is matched with the nearby driver, driven, completed, paid once."""
    rider, driver = await person(http, "rider"), await person(http, "driver")
    await available(driver, NEARBY)
    ride = (await rider.call("POST", "/rides", json={"pickup": MADRID, "dropoff": DROPOFF})).json()
    assert ride["status"] == "requested"
    assert ride["fare_estimate"] is not None
    ride_id = ride["id"]
    matched = await eventually(rider, f"/rides/{ride_id}", lambda r: r["status"] == "matched")
    assert matched["driver_id"] == driver.id
    for step, status in (("arrive", "driver_arriving"), ("start", "in_progress")):
        assert (await driver.call("POST", f"/rides/{ride_id}/{step}")).json()["status"] == status
    for point in (MADRID, MIDWAY, DROPOFF):
        await driver.call("POST", "/tracking/positions", json={"position": point})
    done = (await driver.call("POST", f"/rides/{ride_id}/complete")).json()
    assert done["status"] == "completed"
    assert done["distance_km"] == pytest.approx(3.376, abs=0.01)  # along the track, not straight
    payment = await eventually(
        rider, f"/payments?ride_id={ride_id}", lambda p: p["status"] == "captured"
    )
    assert payment["currency"] == "EUR"
    ops = await admin(http)
    charges = (await ops.call("GET", f"/admin/fakepay/charges?reference={ride_id}")).json()
    assert [c["amount"] for c in charges["charges"]] == [payment["amount"]]
    await eventually(rider, f"/rides/{ride_id}", lambda r: r["payment_status"] == "captured")
    assert (await driver.call("GET", "/rides")).json()[0]["id"] == ride_id


async def test_a_driver_who_never_sets_off_is_replaced(http: httpx.AsyncClient) -> None:
    """Matched with a driver who never starts towards the pickup: after the accept timeout
    (4 s here) the ride goes to the next driver nearby, and the first one is off duty and
    may no longer act on it."""
    rider = await person(http, "rider")
    absent, next_one = await person(http, "driver"), await person(http, "driver")
    rome = {"lat": 41.9028, "lng": 12.4964}  # nobody else around
    await available(absent, {"lat": 41.9030, "lng": 12.4964})
    body = {"pickup": rome, "dropoff": {"lat": 41.89, "lng": 12.49}}
    ride_id = (await rider.call("POST", "/rides", json=body)).json()["id"]
    await eventually(rider, f"/rides/{ride_id}", lambda r: r["driver_id"] == absent.id)
    await available(next_one, {"lat": 41.9040, "lng": 12.4964})  # farther, free
    matched = await eventually(
        rider,
        f"/rides/{ride_id}",
        lambda r: r["status"] == "matched" and r["driver_id"] == next_one.id,
    )
    assert matched["driver_id"] == next_one.id
    late = await absent.call("POST", f"/rides/{ride_id}/arrive", ok=(404,))
    assert late.status_code == 404  # not their ride any more
    on_duty = (await (await admin(http)).call("GET", "/admin/matching/drivers")).json()
    assert absent.id not in on_duty
    arrived = await next_one.call("POST", f"/rides/{ride_id}/arrive")
    assert arrived.json()["status"] == "driver_arriving"


async def test_cancellation_frees_the_driver_and_is_final(http: httpx.AsyncClient) -> None:
    """The rider cancels a matched ride; the driver is free for the next ride; cancelling
    again or driving the cancelled ride is a 409."""
    rider, driver = await person(http, "rider"), await person(http, "driver")
    await available(driver, {"lat": 48.85, "lng": 2.35})  # Paris: nobody else around
    pickup = {"lat": 48.851, "lng": 2.351}
    ride = (await rider.call("POST", "/rides", json={"pickup": pickup, "dropoff": DROPOFF})).json()
    await eventually(rider, f"/rides/{ride['id']}", lambda r: r["status"] == "matched")
    cancelled = (await rider.call("POST", f"/rides/{ride['id']}/cancel")).json()
    assert cancelled["status"] == "cancelled"
    again = await rider.call("POST", f"/rides/{ride['id']}/cancel", ok=(409,))
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    arrive = await driver.call("POST", f"/rides/{ride['id']}/arrive", ok=(409,))
    assert arrive.status_code == 409
    second = (
        await rider.call("POST", "/rides", json={"pickup": pickup, "dropoff": DROPOFF})
    ).json()
    matched = await eventually(rider, f"/rides/{second['id']}", lambda r: r["status"] == "matched")
    assert matched["driver_id"] == driver.id
    await rider.call("POST", f"/rides/{second['id']}/cancel")


async def test_no_driver_then_one_appears_then_timeout(http: httpx.AsyncClient) -> None:
    """A ride with no driver around waits and is matched when one comes online; another
    ride with nobody around becomes unmatched after the wait timeout."""
    rider, ops = await person(http, "rider"), await admin(http)
    nowhere = {"lat": 64.14, "lng": -21.94}  # Reykjavik: its wait timeout runs meanwhile
    late = (await rider.call("POST", "/rides", json={"pickup": nowhere, "dropoff": nowhere})).json()
    lonely = {"lat": -33.86, "lng": 151.21}  # Sydney
    ride = (await rider.call("POST", "/rides", json={"pickup": lonely, "dropoff": lonely})).json()
    # matching has heard of the ride and found nobody: it waits there, still "requested"
    await eventually(ops, "/admin/matching/waiting", lambda w: ride["id"] in str(w))
    assert (await rider.call("GET", f"/rides/{ride['id']}")).json()["status"] == "requested"
    driver = await person(http, "driver")
    await available(driver, {"lat": -33.861, "lng": 151.211})
    matched = await eventually(rider, f"/rides/{ride['id']}", lambda r: r["status"] == "matched")
    assert matched["driver_id"] == driver.id
    ended = await eventually(
        rider, f"/rides/{late['id']}", lambda r: r["status"] == "unmatched", within=25
    )
    assert "no driver" in ended["ended_reason"]
    await rider.call("POST", f"/rides/{ride['id']}/cancel")
    await offline(driver)


async def test_rider_follows_the_ride_live_through_the_gateway(http: httpx.AsyncClient) -> None:
    """Server-sent events through Envoy: the rider receives each position the driver posts
    as it is posted (no buffering), then the ride's end closes the stream; another rider
    is refused."""
    rider, stranger, driver = (
        await person(http, "rider"),
        await person(http, "rider"),
        await person(http, "driver"),
    )
    where = {"lat": 59.33, "lng": 18.07}  # Stockholm
    await available(driver, where)
    ride = (await rider.call("POST", "/rides", json={"pickup": where, "dropoff": where})).json()
    await eventually(rider, f"/rides/{ride['id']}", lambda r: r["status"] == "matched")
    live = f"/tracking/rides/{ride['id']}/live"
    refused = await stranger.call("GET", live, ok=(404,))
    assert refused.headers["content-type"].startswith("application/problem+json")
    track = [{"lat": 59.33 + i * 0.001, "lng": 18.07} for i in range(1, 4)]
    headers = {"authorization": f"Bearer {rider.token}", "accept": "text/event-stream"}
    async with http.stream("GET", live, headers=headers, timeout=20) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()

        async def next_event() -> tuple[str, dict[str, Any]]:
            kind = "message"
            async for line in lines:
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    return kind, json.loads(line.split(":", 1)[1])
            raise AssertionError("the stream ended early")

        for point in track:  # one at a time: each arrives before the next is posted
            await driver.call("POST", "/tracking/positions", json={"position": point})
            kind, update = await asyncio.wait_for(next_event(), 10)
            while kind != "position":  # status updates may interleave
                kind, update = await asyncio.wait_for(next_event(), 10)
            assert update["position"] == point
            assert update["driver_id"] == driver.id
        await rider.call("POST", f"/rides/{ride['id']}/cancel")
        kind, update = await asyncio.wait_for(next_event(), 10)
        while update.get("status") != "cancelled":
            kind, update = await asyncio.wait_for(next_event(), 10)
        assert kind == "status"
    await offline(driver)


async def test_provider_failing_then_recovering_charges_exactly_once(
    system: tuple[str, Any], http: httpx.AsyncClient
) -> None:
    """The provider fails the next 6 calls; payments retries (and the bus redelivers)
    until it recovers: the ride is charged exactly once."""
    from corral.broker import dlq_list

    bus = nats_url(system)
    letters_before = len(await dlq_list(bus, "ridehail"))
    ops = await admin(http)
    rider, driver = await person(http, "rider"), await person(http, "driver")
    where = {"lat": 40.71, "lng": -74.0}  # New York
    await available(driver, where)
    ride = (await rider.call("POST", "/rides", json={"pickup": where, "dropoff": DROPOFF})).json()
    await eventually(rider, f"/rides/{ride['id']}", lambda r: r["status"] == "matched")
    await ops.call("PUT", "/admin/fakepay/faults", json={"fail_next": 6})
    for step in ("arrive", "start", "complete"):
        await driver.call("POST", f"/rides/{ride['id']}/{step}")
    deadline = time.monotonic() + 40
    while True:  # until captured, or dead-lettered (then no redelivery will come)
        payment = (await rider.call("GET", f"/payments?ride_id={ride['id']}", ok=(404,))).json()
        if payment.get("status") == "captured" or time.monotonic() > deadline:
            break
        if payment.get("status") == "failed":
            letters = (await dlq_list(bus, "ridehail"))[letters_before:]
            if any(x["topic"] == "ride.completed" for x in letters):
                break
        await asyncio.sleep(0.1)
    assert payment.get("status") == "captured", payment
    assert payment["attempts"] >= 2
    charges = (await ops.call("GET", f"/admin/fakepay/charges?reference={ride['id']}")).json()
    assert len(charges["charges"]) == 1
    assert charges["failures"] >= 6


async def test_the_providers_failure_rate_changes_live(
    system: tuple[str, Any], http: httpx.AsyncClient
) -> None:
    """FAKEPAY_FAILURE_RATE set at run time (`corral config set`) makes the running
    provider fail every charge at once; unset brings the manifest's 0.0 back. The same
    fakepay process throughout: the field is reloadable."""
    session = system[1]
    ops = await admin(http)

    def fakepay() -> list[tuple[str, int | None]]:
        return [(r.instance, r.pid) for r in session.registry.snapshot().serving("fakepay")]

    async def charge() -> int:
        body = {"amount": "1.00", "currency": "EUR", "reference": "outage-drill"}
        key = {"idempotency-key": uuid.uuid4().hex}
        response = await ops.call(
            "POST", "/admin/fakepay/charges", json=body, headers=key, ok=(503,)
        )
        return response.status_code

    before = fakepay()
    outcome = await session.config.set(
        "fakepay", {"FAKEPAY_FAILURE_RATE": "1.0"}, author="test", message="outage drill"
    )
    assert outcome.services == {"fakepay": "applied live"}
    assert [await charge() for _ in range(3)] == [503] * 3
    outcome = await session.config.unset("fakepay", ["FAKEPAY_FAILURE_RATE"], author="test")
    assert outcome.services == {"fakepay": "applied live"}
    assert await charge() == 201
    assert fakepay() == before


async def test_the_outage_drill_parks_payments_in_the_dead_letters_and_replay_pays_them(
    system: tuple[str, Any], http: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's payment-outage drill: with the provider failing every charge the sim
    ends with its invariants holding and says the unpaid rides wait in the dead letters
    (it used to say "charged 0 times" and exit 1); replayed once the provider is back,
    each is charged exactly once."""
    from corral.broker import dlq_replay

    session, bus = system[1], nats_url(system)
    await session.config.set("fakepay", {"FAKEPAY_FAILURE_RATE": "1.0"}, author="test")
    try:
        report: dict[str, Any] = {}
        code = await city(
            system[0], bus, report, riders=2, drivers=2, duration=3, seed=5, drain=40, cancel_rate=0
        )
    finally:
        await session.config.unset("fakepay", ["FAKEPAY_FAILURE_RATE"], author="test")
    out = capsys.readouterr().out
    assert code == 0, out
    assert report["parked"], report
    assert "waits in the dead letters" in out
    assert "charged 0 times" not in out
    assert "or parked in the dead letters" in out
    await dlq_replay(bus, "ridehail")
    ops = await admin(http)
    for ride_id in report["parked"]:
        await eventually(ops, f"/payments?ride_id={ride_id}", lambda p: p["status"] == "captured")
        books = (await ops.call("GET", f"/admin/fakepay/charges?reference={ride_id}")).json()
        assert len(books["charges"]) == 1, ride_id


async def test_the_providers_books_survive_its_restart(
    system: tuple[str, Any], http: httpx.AsyncClient
) -> None:
    """fakepay restarted (a new process): a charge retried with its key is replayed, the
    same charge, not made again, and the books still hold it once (a real provider keeps
    its idempotency keys; one that forgot them would charge a retried ride twice)."""
    session = system[1]
    ops = await admin(http)
    reference = f"restart-{uuid.uuid4().hex[:8]}"
    body = {"amount": "7.40", "currency": "EUR", "reference": reference}
    key = {"idempotency-key": uuid.uuid4().hex}
    first = await ops.call("POST", "/admin/fakepay/charges", json=body, headers=key)
    assert first.status_code == 201
    pids = {r.pid for r in session.registry.snapshot().serving("fakepay")}
    await session.restart("fakepay")
    assert pids.isdisjoint(r.pid for r in session.registry.snapshot().serving("fakepay"))
    again = await eventually_answered(ops, "POST", "/admin/fakepay/charges", body, key)
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    books = (await ops.call("GET", f"/admin/fakepay/charges?reference={reference}")).json()
    assert [c["id"] for c in books["charges"]] == [first.json()["id"]]


async def eventually_answered(
    who: Person, method: str, path: str, body: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    """The call, retried while the gateway has no ready instance for it (502/503)."""
    deadline = time.monotonic() + 20
    while True:
        response = await who.call(method, path, json=body, headers=dict(headers), ok=(502, 503))
        if response.status_code not in (502, 503) or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.05)


@dataclass
class Cast:
    """Two riders, two drivers, and the rider's two rides with the driver: ``ride`` is
    matched (every step is still possible), ``paid`` was driven, completed and paid (it
    has a track, a distance, a payment and a charge)."""

    people: dict[str, Person]
    ride: str
    paid: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cast(system: tuple[str, Any]) -> AsyncIterator[Cast]:
    """Shared by the role and ownership tests: every one of them only reads or is
    refused, so they stay independent."""
    async with httpx.AsyncClient(base_url=system[0], timeout=15) as client:
        people = {
            name: await person(client, name.split("_")[-1])
            for name in ("rider", "other_rider", "driver", "other_driver")
        }
        people["anonymous"] = Person(client, "rider")
        rider, driver = people["rider"], people["driver"]
        tokyo, shinjuku = {"lat": 35.681, "lng": 139.691}, {"lat": 35.69, "lng": 139.70}
        await available(driver, {"lat": 35.68, "lng": 139.69})
        body = {"pickup": tokyo, "dropoff": shinjuku}
        paid = (await rider.call("POST", "/rides", json=body)).json()["id"]
        await eventually(rider, f"/rides/{paid}", lambda r: r["status"] == "matched")
        for step in ("arrive", "start"):
            await driver.call("POST", f"/rides/{paid}/{step}")
        for point in (tokyo, shinjuku):
            await driver.call("POST", "/tracking/positions", json={"position": point})
        await driver.call("POST", f"/rides/{paid}/complete")
        await eventually(rider, f"/payments?ride_id={paid}", lambda p: p["status"] == "captured")
        # The driver is free again at the dropoff: the next ride from there is theirs.
        body = {"pickup": shinjuku, "dropoff": BERLIN}
        ride = (await rider.call("POST", "/rides", json=body)).json()["id"]
        await eventually(rider, f"/rides/{ride}", lambda r: r["status"] == "matched")
        # On the way: out of reach of the (short, 4 s) accept timeout, which would
        # reassign a ride left `matched` while the tests that share it run.
        await driver.call("POST", f"/rides/{ride}/arrive")
        yield Cast(people, ride, paid)
        await rider.call("POST", f"/rides/{ride}/cancel", ok=(409,))
        await offline(driver)


@pytest.mark.parametrize(
    ("who", "method", "path", "status"),
    [
        ("rider", "POST", "/rides/{ride}/complete", 403),  # a rider completing a ride
        ("driver", "POST", "/rides", 403),  # a driver requesting a ride
        ("rider", "PUT", "/drivers/me/availability", 403),  # gateway role check
        ("rider", "POST", "/tracking/positions", 403),
        ("driver", "GET", "/payments?ride_id={ride}", 403),
        ("rider", "GET", "/admin/fakepay/charges", 403),
        ("anonymous", "GET", "/rides", 401),
    ],
)
async def test_role_violations_are_refused(
    cast: Cast, who: str, method: str, path: str, status: int
) -> None:
    """Wrong roles get 401/403 problems, never the data."""
    body = {"available": True, "position": BERLIN} if method == "PUT" else None
    if path == "/tracking/positions":
        body = {"position": BERLIN}
    if path == "/rides":
        body = {"pickup": BERLIN, "dropoff": DROPOFF}
    person = cast.people[who]
    response = await person.call(method, path.format(ride=cast.ride), json=body, ok=(status,))
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    ride = (await cast.people["rider"].call("GET", f"/rides/{cast.ride}")).json()
    assert ride["status"] == "driver_arriving"  # nothing the refused call asked for happened


@pytest.mark.parametrize("stranger", ["other_rider", "other_driver"])
@pytest.mark.parametrize(
    ("method", "path", "which"),
    [(r.method, r.gateway_path, r.ride) for r in OWNED],
    ids=[f"{r.method} {r.gateway_path}" for r in OWNED],
)
async def test_strangers_get_nothing_of_a_ride(
    cast: Cast, stranger: str, method: str, path: str, which: str
) -> None:
    """Another rider and another driver get 403/404 problems from every endpoint that takes
    a ride's id, through the real gateway, and change nothing (object-level authorization
    on every id)."""
    ride_id = getattr(cast, which)
    url = path.format(id=ride_id)
    response = await cast.people[stranger].call(method, url, ok=(403, 404))
    assert response.status_code in (403, 404), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    ride = (await cast.people["rider"].call("GET", f"/rides/{cast.ride}")).json()
    assert (ride["status"], ride["driver_id"]) == ("driver_arriving", cast.people["driver"].id)


@pytest.mark.parametrize(
    "path",
    [
        "/rides/{id}",
        "/tracking/rides/{id}/positions",
        "/tracking/rides/{id}/distance",
        "/payments?ride_id={id}",
    ],
)
async def test_the_owner_reads_what_strangers_cannot(cast: Cast, path: str) -> None:
    """The same reads answer the ride's rider (so a 404 above is the ownership check, not
    a missing ride)."""
    response = await cast.people["rider"].call("GET", path.format(id=cast.paid))
    assert response.status_code == 200
    body = response.json()
    assert body.get("ride_id", body.get("id")) == cast.paid
    if path.endswith("/distance"):
        assert body["distance_km"] > 0


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"pickup": {"lat": 95, "lng": 0}, "dropoff": {"lat": 0, "lng": 0}}', "json", 422),
        (b'{"pickup": {"lat": "x"}}', "json", 422),
        (b'{"pickup": ', "json", 422),  # truncated JSON
        (b'{"pickup": {"lat": 1, "lng": 1}, "dropoff": {"lat": 1, "lng": 1}, "x": 1}', "json", 422),
        (b"x" * (65 * 1024), "json", 413),  # over the gateway's 64 KiB limit
    ],
)
async def test_malformed_and_oversized_requests_get_problems(
    cast: Cast, content: bytes, content_type: str, status: int
) -> None:
    """Bad coordinates, wrong types, broken JSON, unknown fields and oversized bodies are
    answered with a problem+json naming the status."""
    rider = cast.people["other_rider"]
    response = await rider.call(
        "POST",
        "/rides",
        content=content,
        headers={"content-type": f"application/{content_type}"},
        ok=(status,),
    )
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == status


async def test_signup_and_login_errors(http: httpx.AsyncClient) -> None:
    """A duplicate email is a 409, a weak password a 422, a wrong password a 401."""
    rider = await person(http, "rider")
    body = {"email": rider.email, "password": "another-password", "name": "x", "role": "rider"}
    assert (await rider.call("POST", "/auth/signup", json=body, ok=(409,))).status_code == 409
    weak = body | {"email": "weak@sim.ridehail.local", "password": "short"}
    assert (await rider.call("POST", "/auth/signup", json=weak, ok=(422,))).status_code == 422
    admin_signup = body | {"email": "boss@sim.ridehail.local", "role": "admin"}
    assert (
        await rider.call("POST", "/auth/signup", json=admin_signup, ok=(422,))
    ).status_code == 422
    bad = {"email": rider.email, "password": "wrong-password!"}
    assert (await rider.call("POST", "/auth/login", json=bad, ok=(401,))).status_code == 401


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("email", "ada\u202egro.elpmaxe@example.org", "U+202E"),  # shows as ...example.org
        ("email", "ada\u2066@example.org", "U+2066"),  # a bidi isolate
        ("email", "ad\u200ba@example.org", "U+200B"),  # zero width space
        ("email", "ada\u0007@example.org", "U+0007"),  # a control character
        ("name", "Ada\u202eecilA", "U+202E"),
        ("name", "Ada\nLovelace", "U+000A"),
    ],
)
async def test_signup_refuses_invisible_and_control_characters(
    http: httpx.AsyncClient, field: str, value: str, named: str
) -> None:
    """An email or a name with a bidi override, an isolate, a zero-width or a control
    character (shown as one thing, stored as another) is a 422 problem naming the
    character; logging in with such an address is refused the same way."""
    anyone = Person(http, "rider")
    body = {
        "email": f"plain-{uuid.uuid4().hex[:8]}@example.org",
        "password": "correct-horse-battery",
        "name": "Ada",
        "role": "rider",
    } | {field: value}
    response = await anyone.call("POST", "/auth/signup", json=body, ok=(422,))
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert [e["loc"] for e in problem["errors"]] == [["body", field]]
    assert named in problem["errors"][0]["detail"]
    if field == "email":
        login = {"email": value, "password": "correct-horse-battery"}
        refused = await anyone.call("POST", "/auth/login", json=login, ok=(422,))
        assert refused.status_code == 422


async def test_joiners_some_names_need_are_kept(http: httpx.AsyncClient) -> None:
    """A Persian name needs the zero-width non-joiner: it is a letter-shaping mark, not
    a disguise, so names keep it (emails do not)."""
    body = {
        "email": f"mina-{uuid.uuid4().hex[:8]}@example.org",
        "password": "correct-horse-battery",
        "name": "\u0645\u06cc\u200c\u0646\u0627",  # mi + ZWNJ + na
        "role": "rider",
    }
    response = await Person(http, "rider").call("POST", "/auth/signup", json=body)
    assert response.status_code == 201
