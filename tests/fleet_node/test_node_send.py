"""`raas node send`: an operator's command reaches the node's cmd topic on the real broker."""

import queue

import pytest

from gym_raas_mqtt import mqtt, protocol
from gym_raas_mqtt.cli import main

pytestmark = pytest.mark.broker


def test_send_publishes_a_valid_node_command(broker, uid, tmp_path):
    got: queue.Queue = queue.Queue()
    sub = mqtt.make_client(broker.admin)
    sub.on_message = lambda c, u, m: got.put(m)
    mqtt.connect(sub)
    sub.loop_start()
    sub.subscribe(protocol.topic(protocol.TopicKind.NODE_CMD, node=uid), qos=1)
    pw = tmp_path / "pw"
    pw.write_text(broker.admin.password)
    try:
        import time

        time.sleep(0.2)  # let the SUBACK arrive
        rc = main(["node", "send", uid, "clear_maintenance", "--url",
                   f"mqtt://{broker.host}:{broker.port}", "--username", broker.admin.username,
                   "--password-file", str(pw)])
        assert rc == 0
        msg = got.get(timeout=5)
    finally:
        mqtt.shutdown(sub)
    cmd = protocol.NodeCommand.from_bytes(msg.payload)
    assert cmd.command is protocol.NodeCommandKind.CLEAR_MAINTENANCE
    assert not msg.retain


def test_send_with_a_wrong_password_fails_clearly(broker, uid, tmp_path, capsys):
    pw = tmp_path / "pw"
    pw.write_text("wrong")
    rc = main(["node", "send", uid, "drain", "--url", f"mqtt://{broker.host}:{broker.port}",
               "--username", broker.admin.username, "--password-file", str(pw)])
    assert rc != 0
