"""A small synchronous MQTT probe for checking what a broker allows and refuses."""

from __future__ import annotations

import queue
import threading
import time
from typing import Iterable

import pytest

from broker_config import acl
from gym_raas_mqtt.mqtt import BrokerAddress, connect, make_client

NOT_AUTHORIZED = 0x87


class Probe:
    """One paho client driven synchronously: connect, subscribe, publish, wait for messages."""

    def __init__(self, address: BrokerAddress, client_id: str | None = None,
                 node: str | None = None) -> None:
        # a login connects with the one client id the broker allows it (admin: any)
        bound = acl.client_id(address.username, node) if address.username else None
        self.client = make_client(address, client_id or bound)
        self.connack: queue.Queue = queue.Queue()
        self.subacks: dict[int, list] = {}
        self.pubacks: dict[int, object] = {}
        self.disconnected = threading.Event()
        self.messages: queue.Queue = queue.Queue()
        self._acked = threading.Condition()
        self._thread: threading.Thread | None = None
        c = self.client
        c.on_connect = lambda cl, ud, fl, rc, pr: self.connack.put(rc)
        c.on_disconnect = lambda cl, ud, fl, rc, pr: self.disconnected.set()
        c.on_message = lambda cl, ud, msg: self.messages.put((msg.topic, bytes(msg.payload),
                                                              msg.retain))
        c.on_subscribe = self._on_subscribe
        c.on_publish = self._on_publish

    def _on_subscribe(self, cl, ud, mid, rcs, props) -> None:
        with self._acked:
            self.subacks[mid] = list(rcs)
            self._acked.notify_all()

    def _on_publish(self, cl, ud, mid, rc, props) -> None:
        with self._acked:
            self.pubacks[mid] = rc
            self._acked.notify_all()

    def connect(self, timeout_s: float = 5.0):
        """Connect; return the CONNACK reason code (the client is closed again on failure)."""
        connect(self.client, keepalive_s=10)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        rc = self.connack.get(timeout=timeout_s)
        if rc.is_failure:
            self.close()
        return rc

    def _loop(self) -> None:
        """Network loop without paho's automatic reconnect (a refused probe stays refused)."""
        while not self._stop.is_set():
            if self.client.loop(0.05) != 0:
                time.sleep(0.05)

    def _wait(self, table: dict, mid: int, timeout_s: float):
        with self._acked:
            if not self._acked.wait_for(lambda: mid in table, timeout_s):
                raise TimeoutError(f"no ack for mid {mid}")
            return table.pop(mid)

    def subscribe(self, filt: str, qos: int = 1, timeout_s: float = 5.0) -> int:
        """Subscribe; return the SUBACK reason code as an int (0/1 granted, 0x87 refused)."""
        _, mid = self.client.subscribe(filt, qos=qos)
        return self._wait(self.subacks, mid, timeout_s)[0].value

    def publish(self, topic: str, payload: bytes = b"x", qos: int = 1, retain: bool = False,
                timeout_s: float = 5.0):
        """Publish; for QoS 1 return the PUBACK reason code (int), for QoS 0 None."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0:
            info.wait_for_publish(timeout_s)
            return None
        return self._wait(self.pubacks, info.mid, timeout_s).value

    def expect(self, timeout_s: float = 3.0, topic: str | None = None):
        """The next message (topic, payload, retain) — on ``topic`` if given, skipping others
        (the session broker is shared) — or raise TimeoutError."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                msg = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError("no message arrived") from None
            if topic is None or msg[0] == topic:
                return msg

    def nothing(self, wait_s: float = 0.3, topics: Iterable[str] | None = None) -> bool:
        """True when no message (on one of ``topics``, if given) arrives within ``wait_s``."""
        time.sleep(wait_s)
        got = []
        while not self.messages.empty():
            got.append(self.messages.get_nowait()[0])
        wanted = None if topics is None else set(topics)
        return not [t for t in got if wanted is None or t in wanted]

    def close(self) -> None:
        if self._thread is None:
            return
        self.client.disconnect()
        self._stop.set()
        self._thread.join(2)
        self._thread = None


@pytest.fixture
def probe():
    """Factory of connected :class:`Probe` clients, closed after the test."""
    made: list[Probe] = []

    def make(address: BrokerAddress, *, expect_ok: bool = True, client_id: str | None = None,
             max_inflight: int | None = None, node: str | None = None):
        p = Probe(address, client_id, node)
        if max_inflight:
            p.client.max_inflight_messages_set(max_inflight)
        made.append(p)
        rc = p.connect()
        if expect_ok:
            assert not rc.is_failure, f"{address.username} refused: {rc}"
        return p if expect_ok else rc

    yield make
    for p in made:
        p.close()
