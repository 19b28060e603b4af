"""Work after an answer lets the requests being answered go first, within a bound."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from bot.background import Background, InFlight


async def test_work_waits_while_a_request_is_answered_and_runs_once_it_is_quiet() -> None:
    in_flight = InFlight(patience=5.0, calm=0.02)
    background = Background(in_flight=in_flight)
    done: list[str] = []

    async def work() -> None:
        done.append("stored")

    in_flight.started()
    background.spawn(work(), "store")
    await asyncio.sleep(0.1)
    assert done == []  # a request is still being answered
    in_flight.finished()
    await asyncio.wait_for(background.drain(), 2)
    assert done == ["stored"]


async def test_a_gap_shorter_than_calm_is_not_a_quiet_moment() -> None:
    in_flight = InFlight(patience=5.0, calm=0.2)
    background = Background(in_flight=in_flight)
    done: list[str] = []

    async def work() -> None:
        done.append("stored")

    in_flight.started()
    background.spawn(work(), "store")
    in_flight.finished()  # one request answered ...
    await asyncio.sleep(0.05)
    in_flight.started()  # ... and the next of the burst comes in
    await asyncio.sleep(0.3)
    assert done == []
    in_flight.finished()
    await asyncio.wait_for(background.drain(), 2)
    assert done == ["stored"]


async def test_under_a_steady_stream_work_still_runs_after_its_patience() -> None:
    in_flight = InFlight(patience=0.2, calm=0.05)
    background = Background(in_flight=in_flight)
    done: list[str] = []

    async def work() -> None:
        done.append("stored")

    in_flight.started()  # never finished: requests keep coming
    background.spawn(work(), "store")
    await asyncio.wait_for(background.drain(), 2)
    assert done == ["stored"]
    assert len(in_flight) == 1


async def test_work_cancelled_while_waiting_never_starts() -> None:
    in_flight = InFlight(patience=5.0, calm=0.01)
    background = Background(in_flight=in_flight)
    started: list[str] = []

    async def work() -> None:
        started.append("x")

    in_flight.started()
    background.spawn(work(), "store")
    await asyncio.sleep(0.02)
    for task in list(background._tasks):  # as a stop cancels what waits
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await background.drain()
    assert started == []


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        InFlight(patience=-1)
    with pytest.raises(ValueError, match="negative"):
        InFlight(calm=-0.1)


async def test_the_middleware_counts_requests_but_not_a_websocket() -> None:
    in_flight = InFlight()
    seen: list[int] = []

    async def answer(_request: web.Request) -> web.Response:
        seen.append(len(in_flight))
        return web.Response(text="ok")

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        seen.append(len(in_flight))
        await ws.send_str("hello")
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                break
        return ws

    app = web.Application(middlewares=[in_flight.middleware()])
    app.router.add_post("/answer", answer)
    app.router.add_get("/ws", socket)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        ws = await client.ws_connect("/ws")
        assert (await ws.receive_str()) == "hello"
        response = await client.post("/answer")  # while the socket stays open
        assert response.status == 200
        await ws.send_str("bye")
        await ws.close()
    finally:
        await client.close()
    assert seen == [0, 1]  # the open socket is not a request being answered; the POST is
    assert len(in_flight) == 0
