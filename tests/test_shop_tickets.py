"""The call center's tickets in the call store (voiceagent/shop/tickets.py), on SQLite and on Postgres:
ids as the shop numbers them, distinct when workers create them at once, and the shop handing its
tickets to the store when given one."""

from __future__ import annotations

import sqlite3
import threading
from datetime import date

import pytest

from voiceagent.db import Database, resolve
from voiceagent.shop import demo
from voiceagent.shop.repository import ShopRepository
from voiceagent.shop.tickets import TicketBook

DAY = date(2025, 3, 10)


@pytest.fixture(scope="module")
def shop_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("shop") / "shop.db"
    demo.build(path)
    return path


@pytest.fixture
def book(store_db) -> TicketBook:
    return TicketBook(store_db, worker="w1", today=lambda: DAY)


def test_ids_are_prefix_day_and_counter_per_kind(book):
    first = book.create("return", None, "too_small")
    second = book.create("return", None, "wrong_color", detail="x" * 2000, call_id="call-9")
    assert (first.ticket_id, second.ticket_id) == ("RT2503100001", "RT2503100002")
    assert book.create("complaint", None, None).ticket_id == "CP2503100001"
    assert book.create("callback", None, None, day=date(2025, 3, 11)).ticket_id == "CB2503110001"
    kept = book.get("RT2503100002")
    assert (kept["kind"], kept["status"], kept["call_id"], kept["worker"]) == ("return", "open", "call-9", "w1")
    assert len(kept["detail"]) == 500
    with pytest.raises(ValueError, match="unknown ticket kind"):
        book.create("hug", None, None)


def test_open_ticket_by_order_and_kind(book, shop_path):
    order = ShopRepository(shop_path).order(_any_order_id(shop_path))
    assert book.open_ticket(order.order_id, "return") is None
    ticket = book.create("return", order, "too_small")
    assert book.open_ticket(order.order_id, "return") == ticket
    assert book.open_ticket(order.order_id, "exchange") is None
    assert book.get(ticket.ticket_id)["customer_id"] == order.customer_id


def test_the_shop_keeps_its_tickets_in_the_store_when_given_a_book(book, shop_path):
    shop = ShopRepository(shop_path, tickets=book)
    order = shop.order(_any_order_id(shop_path))
    ticket = shop.create_ticket("exchange", order, "too_big", detail="one size up", call_id="c1")
    assert ticket.ticket_id.startswith("EX" + shop.today.strftime("%y%m%d"))  # the shop's day
    assert shop.open_ticket(order.order_id, "exchange") == ticket
    assert book.get(ticket.ticket_id)["call_id"] == "c1"
    with sqlite3.connect(shop_path) as conn:  # nothing written to the shop file
        assert conn.execute("SELECT COUNT(*) FROM tickets WHERE ticket_id = ?", (ticket.ticket_id,)).fetchone()[0] == 0
    another = TicketBook(book.db, worker="w2")  # another worker on the same store sees it
    assert ShopRepository(shop_path, tickets=another).open_ticket(order.order_id, "exchange") == ticket


def test_two_workers_creating_at_once_get_distinct_ids(store_db):
    """Each worker with a connection pool of its own (as two processes have), eight threads each."""
    TicketBook(store_db)  # the schema, before the racing starts
    # on Postgres, a pool of its own per worker; SQLite opens a connection per transaction anyway
    own = [Database(*resolve(store_db)) for _ in range(2)] if resolve(store_db)[0] == "postgresql" else []
    books = [TicketBook(own[i] if own else store_db, worker=f"w{i}", today=lambda: DAY) for i in range(2)]
    start = threading.Barrier(16)
    made: list[str] = []
    errors: list[BaseException] = []

    def create(book: TicketBook) -> None:
        try:
            start.wait()
            for _ in range(5):
                made.append(book.create("complaint", None, "race").ticket_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(books[i % 2],)) for i in range(16)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for database in own:
            database.close()
    assert not errors
    assert len(made) == 80 and len(set(made)) == 80
    assert sorted(made) == [f"CP250310{n:04d}" for n in range(1, 81)]  # no gaps: each retry took the next free one


def _any_order_id(shop_path) -> str:
    with sqlite3.connect(shop_path) as conn:
        return conn.execute("SELECT order_id FROM orders ORDER BY order_id LIMIT 1").fetchone()[0]
