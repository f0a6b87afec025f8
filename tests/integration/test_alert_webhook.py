"""`POST /api/alerts`: real-format Azure Monitor and Alertmanager payloads, and a suite of bad
requests that each get their status and a JSON error and enqueue nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from shared.adapters.deliveries import NOTICE
from shared.adapters.ledger import AlertLog
from shared.adapters.storage import StorageAccount
from shared.alerts import MAX_BODY_BYTES, parse_alerts
from shared.clock import clock_from_settings
from shared.config import load_config
from shared.flows.capacity.alerts import receive
from shared.flows.jobs import Services
from tests.alert_payloads import azure_alert as rule_alert
from tests.alert_payloads import azure_rules, prom_alert, prometheus_alerts, webhook
from tests.jobs_support import Pump, settings_for
from tests.simulator import RG, STOPPED, SUBSCRIPTION, Simulator, scale_set, scenario

VMSS = "aks-web-55555555-vmss"
VMSS_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/"
    f"Microsoft.Compute/virtualMachineScaleSets/{VMSS}"
)
SECRET = "s3cret"


def _services(sim: Simulator, azurite: Any, **extra: str) -> Services:
    sim.load(scenario(scale_set(VMSS, 3, zones=[])))
    pool = {"name": "web", "vmss_id": VMSS_ID, "node_group": "web", "min_nodes": 2, "max_nodes": 10}
    settings = (
        settings_for(sim, azurite.connection_string, [pool])
        | {"POOLKEEPER_NOTIFICATIONS_QUEUE": f"notify-{uuid.uuid4().hex[:8]}"}
        | extra
    )
    services = Services(
        settings,
        clock_from_settings(settings),
        load_config(settings),
        StorageAccount.from_settings(settings),
    )
    services.tables.put_pool_status("web", {"counts": {"live": 3}})
    # Each test starts outside any cooldown and notice digest (the tables are shared by the
    # session's Azurite, and every test's clock starts at the same simulated time).
    table = AlertLog(services.tables)._table()
    table.delete_entity("scale_up", "web")
    for entity in list(table.query_entities(f"PartitionKey eq '{NOTICE}'")):
        table.delete_entity(entity["PartitionKey"], entity["RowKey"])
    return services


def azure_alert(
    *,
    target: str = VMSS_ID,
    condition: str = "Fired",
    severity: str = "Sev1",
    alert_id: str | None = None,
) -> dict[str, Any]:
    """What the shipped P1 group CPU rule sends (the common alert schema), about `target`."""
    rule = next(r for r in azure_rules() if r["name"] == "p1-group-cpu")
    body = rule_alert(rule, target, condition=condition, rule_name="web-cpu-p1")
    body["data"]["essentials"]["severity"] = severity
    if alert_id:
        body["data"]["essentials"]["alertId"] = alert_id
    return body


def alertmanager(
    *,
    status: str = "firing",
    group: str = "web",
    rule: str = "PoolkeeperGroupCPUP1",
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """A webhook with one alert of the shipped Prometheus `rule` (a group P1 by default)."""
    alert = prom_alert(prometheus_alerts()[rule], group=group, index=0, status=status)
    alert["fingerprint"] = fingerprint or uuid.uuid4().hex[:16]
    return webhook([alert], group=group)


P2 = "PoolkeeperGroupCPUP2"


def _queued(services: Services, queue: str) -> int:
    client = services.queues._queue(queue)
    return client.get_queue_properties().approximate_message_count


def test_azure_monitor_p1_enqueues_one_scale_up_and_a_replay_nothing(sim, azurite) -> None:
    services = _services(sim, azurite)
    body = json.dumps(azure_alert()).encode()
    status, answer = receive(services, body, None)
    assert status == 202 and len(answer["jobs"]) == 1
    assert _queued(services, services.settings["POOLKEEPER_SCALE_QUEUE"]) == 1
    status, again = receive(services, body, None)  # the same delivery again
    assert status == 202 and again["jobs"] == [] and again["duplicates"] == 1
    assert _queued(services, services.settings["POOLKEEPER_SCALE_QUEUE"]) == 1
    record = Pump(services).run("scale", answer["jobs"][0])  # and the scale set grows by one
    assert record.status == "done" and sim.scale_set_state(VMSS)["capacity"] == 4


def test_alertmanager_p1_enqueues_and_a_second_episode_within_cooldown_does_not(
    sim, azurite
) -> None:
    services = _services(sim, azurite)
    # Within the 30 simulated minutes of the cooldown, however slow this machine is.
    sim.post("clock", {"speed": STOPPED})
    status, first = receive(services, json.dumps(alertmanager()).encode(), None)
    assert status == 202 and len(first["jobs"]) == 1
    status, second = receive(services, json.dumps(alertmanager()).encode(), None)
    assert status == 202 and second["jobs"] == []  # a new fingerprint, but cooling down
    assert _queued(services, services.settings["POOLKEEPER_SCALE_QUEUE"]) == 1


def test_resolved_and_p2_alerts_notify_and_record_without_scaling(sim, azurite) -> None:
    services = _services(sim, azurite)
    receive(services, json.dumps(azure_alert(condition="Resolved")).encode(), None)
    receive(services, json.dumps(alertmanager(rule=P2)).encode(), None)
    assert _queued(services, services.settings["POOLKEEPER_SCALE_QUEUE"]) == 0
    assert _queued(services, services.settings["POOLKEEPER_NOTIFICATIONS_QUEUE"]) == 1


def _signed(body: bytes, secret: str = SECRET, *, age: float = 0) -> str:
    """What a sender puts in x-poolkeeper-signature, signed `age` seconds ago (wall time)."""
    stamp = str(int(time.time() - age))
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},sha256={digest}"


def test_a_correct_signature_is_accepted(sim, azurite) -> None:
    services = _services(sim, azurite, POOLKEEPER_ALERT_SECRET=SECRET)
    body = json.dumps(azure_alert()).encode()
    assert receive(services, body, _signed(body))[0] == 202


OTHER_VMSS = VMSS_ID.replace(VMSS, "aks-other-66666666-vmss")
BAD: list[tuple[str, bytes, int, str | None]] = [
    ("malformed JSON", b"{not json", 400, None),
    ("empty body", b"", 400, None),
    ("JSON array", b"[]", 400, None),
    ("unknown format", json.dumps({"hello": "world"}).encode(), 400, None),
    (
        "azure: missing essentials",
        json.dumps({"schemaId": "azureMonitorCommonAlertSchema", "data": {}}).encode(),
        400,
        None,
    ),
    ("azure: bad severity", json.dumps(azure_alert(severity="High")).encode(), 400, None),
    ("azure: bad condition", json.dumps(azure_alert(condition="Maybe")).encode(), 400, None),
    (
        "azure: wrong schemaId",
        json.dumps(azure_alert() | {"schemaId": "Microsoft.Insights/activityLogs"}).encode(),
        400,
        None,
    ),
    ("alertmanager: version 3", json.dumps(alertmanager() | {"version": "3"}).encode(), 400, None),
    ("alertmanager: no alerts", json.dumps(alertmanager() | {"alerts": []}).encode(), 400, None),
    ("alertmanager: bad status", json.dumps(alertmanager(status="pending")).encode(), 400, None),
    (
        "alertmanager: no fingerprint",
        json.dumps(
            {
                **alertmanager(),
                "alerts": [
                    {k: v for k, v in alertmanager()["alerts"][0].items() if k != "fingerprint"}
                ],
            }
        ).encode(),
        400,
        None,
    ),
    ("huge body", b'{"pad": "' + b"x" * MAX_BODY_BYTES + b'"}', 413, None),
    ("unknown pool (node group)", json.dumps(alertmanager(group="nope")).encode(), 422, None),
    ("scale set not configured", json.dumps(azure_alert(target=OTHER_VMSS)).encode(), 422, None),
    (
        "resource outside any pool",
        json.dumps(
            azure_alert(
                target=f"/subscriptions/{SUBSCRIPTION}/resourceGroups/x/providers/Microsoft.Storage/"
                "storageAccounts/y"
            )
        ).encode(),
        422,
        None,
    ),
    ("missing signature", json.dumps(azure_alert()).encode(), 401, "secret"),
    ("bad signature", json.dumps(azure_alert()).encode(), 403, "sha256=" + "0" * 64),
    (
        "signature of another body",
        json.dumps(azure_alert()).encode(),
        403,
        _signed(b"something else"),
    ),
    ("signature with another secret", json.dumps(azure_alert()).encode(), 403, "other-secret"),
    ("signature without its time", json.dumps(azure_alert()).encode(), 403, "untimed"),
    ("signature 10 minutes old", json.dumps(azure_alert()).encode(), 403, "stale"),
    ("signature 10 minutes ahead", json.dumps(azure_alert()).encode(), 403, "ahead"),
    ("non-ASCII signature", json.dumps(azure_alert()).encode(), 403, "sha256=\u00e9" * 3),
    # What a web server makes of a header byte that is not UTF-8 (surrogateescape).
    ("undecodable signature", json.dumps(azure_alert()).encode(), 403, "sha256=\udce9"),
    ("not UTF-8", b"\xff\xfe\x00", 400, None),
    ("deep nesting", b"[" * 5000, 400, None),
    (
        "deep nesting inside an alert",
        json.dumps(alertmanager())[:-1].encode() + b', "x": ' + b"[" * 5000 + b"}",
        400,
        None,
    ),
]


@pytest.mark.parametrize(("name", "body", "status", "signature"), BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_their_status_a_json_error_and_enqueue_nothing(
    sim: Simulator, azurite, name: str, body: bytes, status: int, signature: str | None
) -> None:
    signed = signature is not None
    services = _services(sim, azurite, **({"POOLKEEPER_ALERT_SECRET": SECRET} if signed else {}))
    header = None
    if signature == "other-secret":
        header = _signed(body, "another")
    elif signature == "untimed":  # the signature of the body alone, as before the time was in it
        header = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    elif signature in ("stale", "ahead"):  # a captured delivery replayed, or a clock far off
        header = _signed(body, age=600 if signature == "stale" else -600)
    elif signature not in (None, "secret"):
        header = signature
    got, answer = receive(services, body, header)
    assert got == status, answer
    assert isinstance(answer["error"], str) and answer["error"]
    for setting in ("POOLKEEPER_SCALE_QUEUE", "POOLKEEPER_NOTIFICATIONS_QUEUE"):
        try:
            assert _queued(services, services.settings[setting]) == 0
        except Exception as error:  # noqa: BLE001 - a queue never created holds nothing
            assert "QueueNotFound" in str(error) or "does not exist" in str(error)


def test_notifications_reach_the_webhook_through_its_queue_off_the_request_path(
    sim, azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from shared.adapters.notify import WebhookFailed
    from shared.flows.api import deliver_notification

    received: list[dict[str, Any]] = []
    answers = [503, 204]  # down once, then up

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status = answers.pop(0)
            if status < 300:
                received.append(body)
            self.send_response(status)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook?sig=a-credential"
        services = _services(sim, azurite, POOLKEEPER_NOTIFY_WEBHOOK=url)
        receive(services, json.dumps(alertmanager(rule=P2)).encode(), None)
        assert received == [] and answers == [503, 204]  # nothing posted while answering
        queue = services.queues._queue(services.settings["POOLKEEPER_WEBHOOK_QUEUE"])
        (message,) = queue.receive_messages(max_messages=1)
        monkeypatch.setenv("POOLKEEPER_NOTIFY_WEBHOOK", url)
        # The webhook is down: the delivery raises, so the host retries the message.
        with pytest.raises(WebhookFailed) as failed:
            deliver_notification(message.content.encode())
        assert "127.0.0.1" in str(failed.value) and "a-credential" not in str(failed.value)
        deliver_notification(message.content.encode())
    finally:
        server.shutdown()
    assert [(n["schema"], n["pool"], n["kind"], n["severity"]) for n in received] == [
        ("poolkeeper/notification/v1", "web", "p2", "P2")
    ]


def test_one_notice_per_pool_and_kind_per_interval_and_the_next_counts_the_rest(
    sim, azurite
) -> None:
    services = _services(sim, azurite)
    # The clock stands still: the three payloads are within the interval however slow this
    # machine is; then it moves past the interval at once.
    sim.post("clock", {"speed": STOPPED})
    queue = services.settings["POOLKEEPER_NOTIFICATIONS_QUEUE"]
    for _ in range(3):  # three payloads within the interval, each a new P2 delivery
        payload = alertmanager(rule=P2)  # a fingerprint of its own: a new delivery
        status, answer = receive(services, json.dumps(payload).encode(), None)
        assert status == 202 and answer["duplicates"] == 0, answer
    assert _queued(services, queue) == 1
    sim.advance(16 * 60)  # past the digest interval (product time)
    receive(services, json.dumps(alertmanager(rule=P2)).encode(), None)
    client = services.queues._queue(queue)
    messages = [json.loads(m.content) for m in client.peek_messages(max_messages=32)]
    assert [m["kind"] for m in messages] == ["p2", "p2"]
    assert "2 more since" in messages[1]["message"] and "held back" in messages[1]["message"]


def test_alert_about_one_vm_is_a_rebalancing_notice_not_a_scale_up(sim, azurite) -> None:
    services = _services(sim, azurite)
    one_vm = azure_alert(target=f"{VMSS_ID}/virtualMachines/2")
    status, answer = receive(services, json.dumps(one_vm).encode(), None)
    assert status == 202 and answer["jobs"] == []
    assert _queued(services, services.settings["POOLKEEPER_NOTIFICATIONS_QUEUE"]) == 1


def test_unconfigured_scale_set_with_a_known_label_is_not_acted_on(sim, azurite) -> None:
    services = _services(sim, azurite)
    alert = azure_alert(target=OTHER_VMSS)
    alert["data"]["customProperties"] = {"elastisys.io/node-group": "web"}
    status, answer = receive(services, json.dumps(alert).encode(), None)
    assert status == 422 and "match no configured pool" in answer["error"]


def test_p2_scales_up_when_the_pool_asks_for_it(sim, azurite) -> None:
    services = _services(sim, azurite)
    config = json.loads(services.settings["POOLKEEPER_POOLS"])
    config["pools"][0]["capacity"] = {"auto_scale_up_on_p2": True}
    services.settings["POOLKEEPER_POOLS"] = json.dumps(config)
    services.config = load_config(services.settings)
    status, answer = receive(services, json.dumps(alertmanager(rule=P2)).encode(), None)
    assert status == 202 and len(answer["jobs"]) == 1


def _notifications(services: Services) -> list[dict[str, Any]]:
    client = services.queues._queue(services.settings["POOLKEEPER_NOTIFICATIONS_QUEUE"])
    found = []
    for _ in range(10):
        batch = list(client.receive_messages(max_messages=32, visibility_timeout=300))
        if not batch:
            break
        found += [json.loads(m.content) for m in batch]
    return found


@pytest.mark.parametrize(
    "name",
    ["cpu#p1", "cpu?p1", "cpu\\p1", "cpu\tp1", "cpu\np1", "cpu/p1", "x" * 1100],
    ids=["hash", "question mark", "backslash", "tab", "newline", "slash", "over 1 KB"],
)
def test_an_alert_name_any_sender_may_choose_is_recorded_and_acted_on_once(
    sim: Simulator, azurite, name: str
) -> None:
    services = _services(sim, azurite)
    body = alertmanager(rule=P2)
    body["alerts"][0]["labels"]["alertname"] = name
    status, answer = receive(services, json.dumps(body).encode(), None)
    assert status == 202, answer
    stored_name = f"alertmanager:{name}"[:1024]  # a record keeps 1 KiB of a name; its key, all
    (recorded,) = [a for a in AlertLog(services.tables).alerts("web") if a["alert"] == stored_name]
    assert recorded["state"] == "fired"
    status, again = receive(services, json.dumps(body).encode(), None)
    assert status == 202 and again["duplicates"] == 1
    assert [n["kind"] for n in _notifications(services)] == ["p2"]


def test_a_delivery_that_failed_while_acting_is_acted_on_when_it_is_resent(
    sim: Simulator, azurite
) -> None:
    # The notification cannot be sent (no such queue can exist), so acting fails after the
    # alert was parsed; the sender sees an error and resends once the queue is fixed.
    services = _services(sim, azurite, POOLKEEPER_NOTIFICATIONS_QUEUE="Not_A_Queue!")
    body = json.dumps(alertmanager(rule=P2)).encode()
    with pytest.raises(HttpResponseError):
        receive(services, body, None)
    fixed = _services(sim, azurite)
    status, answer = receive(fixed, body, None)
    assert status == 202 and answer["duplicates"] == 0, answer
    assert [n["kind"] for n in _notifications(fixed)] == ["p2"]


def test_a_thousand_unrecognised_alert_names_give_one_notice_for_the_pool(
    sim: Simulator, azurite
) -> None:
    services = _services(sim, azurite)
    shipped = prometheus_alerts()["PoolkeeperNodeCPUP1"]
    theirs = {**shipped, "labels": {"severity": "critical"}}  # none of Poolkeeper's rule labels
    made_up = [
        prom_alert({**theirs, "alert": f"SomebodysRule{i:04d}"}, group="web", index=i)
        for i in range(1000)
    ]
    body = json.dumps(webhook(made_up)).encode()
    assert len(body) <= MAX_BODY_BYTES
    status, answer = receive(services, body, None)
    assert status == 202 and answer["jobs"] == [] and answer["alerts"] == 1000, answer
    notices = _notifications(services)
    assert len(notices) == 1, [(n["kind"], n["message"][:80]) for n in notices]
    (notice,) = notices  # one for the pool, not one per name
    assert notice["kind"] == "unrecognised" and notice["severity"] == "info"
    assert notice["values"]["alert"].startswith("1000 alert names (SomebodysRule0000, ")
    assert notice["values"]["alerts"][:2] == ["SomebodysRule0000", "SomebodysRule0001"]
    assert len(notice["values"]["alerts"]) == 20 and "and 980 more" in notice["message"]


def test_a_thousand_alerts_in_one_payload_are_all_recorded_with_one_notice_per_rule(
    sim: Simulator, azurite
) -> None:
    from tests.alert_payloads import alertmanager_payload, rule_counts

    services = _services(sim, azurite)
    payload = alertmanager_payload(1000)
    body = json.dumps(payload).encode()
    assert len(body) <= MAX_BODY_BYTES
    status, answer = receive(services, body, None)
    assert status == 202 and answer["alerts"] == 1000 and answer["duplicates"] == 0
    assert len(answer["jobs"]) == 1  # one node for the group, however many alerts say so
    notices = _notifications(services)
    counts = rule_counts(1000)
    by_kind = {n["kind"]: n for n in notices}
    assert sorted(by_kind) == ["p2", "rebalance", "scale_up"] and len(notices) == 3
    assert by_kind["rebalance"]["values"]["count"] == counts["PoolkeeperNodeCPUP1"]
    assert by_kind["p2"]["values"]["count"] == counts["PoolkeeperGroupCPUP2"]
    assert f"and {counts['PoolkeeperNodeCPUP1'] - 20} more" in by_kind["rebalance"]["message"]
    # Every delivery is recorded: the same payload again is all duplicates and does nothing.
    status, again = receive(services, body, None)
    assert status == 202 and again["duplicates"] == 1000 and again["jobs"] == []
    assert _notifications(services) == []
    recorded = {a["alert"]: a for a in AlertLog(services.tables).alerts("web")}
    for rule, count in counts.items():
        assert recorded[f"alertmanager:{rule}"]["values"]["count"] == count


def _intake(services: Services) -> Services:
    """Services the way `POST /api/alerts` has them (clients of its own, the intake's timeouts),
    as another instance of the app would."""
    from shared.flows.api import IntakeServices

    return IntakeServices(
        services.settings,
        services.clock,
        services.config,
        StorageAccount.from_settings(services.settings),
    )


def test_twenty_identical_deliveries_at_the_same_moment_are_acted_on_exactly_once(
    sim: Simulator, azurite
) -> None:
    services = _services(sim, azurite)
    alerts = [
        prom_alert(prometheus_alerts()[rule], group="web", index=0)
        | {"fingerprint": uuid.uuid4().hex[:16]}
        for rule in ("PoolkeeperGroupCPUP1", P2)
    ]
    body = json.dumps(webhook(alerts)).encode()
    senders = [_intake(services) for _ in range(20)]
    for sender in senders:  # each instance has its clients and its tables ready, as when warm
        sender.tables._table("poolkeeperalerts")
        sender.queues._queue(services.settings["POOLKEEPER_NOTIFICATIONS_QUEUE"])
    start = threading.Barrier(len(senders))

    def deliver(sender: Services) -> tuple[int, dict[str, Any]]:
        start.wait()
        return receive(sender, body, None)

    with ThreadPoolExecutor(len(senders)) as pool:
        answers = list(pool.map(deliver, senders))

    assert [status for status, _ in answers] == [202] * 20
    firsts = [answer for _, answer in answers if answer["duplicates"] == 0]
    assert len(firsts) == 1, [answer["duplicates"] for _, answer in answers]
    assert sum(answer["duplicates"] for _, answer in answers) == 19 * 2
    assert [job for _, answer in answers for job in answer["jobs"]] == firsts[0]["jobs"]
    assert len(firsts[0]["jobs"]) == 1
    assert _queued(services, services.settings["POOLKEEPER_SCALE_QUEUE"]) == 1
    assert sorted(n["kind"] for n in _notifications(services)) == ["p2", "scale_up"]


def _alertmanager_episode(status: str, fingerprint: str, *, starts_at: str | None = None) -> bytes:
    """A group P1 of the episode (`fingerprint`, a fixed start unless given): firing or resolved."""
    body = alertmanager(status=status, fingerprint=fingerprint)
    if starts_at:
        body["alerts"][0]["startsAt"] = starts_at
    return json.dumps(body).encode()


def _state(services: Services, alert: str) -> str:
    (record,) = [a for a in AlertLog(services.tables).alerts("web") if a["alert"] == alert]
    return record["state"]


def test_a_firing_delivered_after_its_own_resolved_never_reopens_the_alert(
    sim: Simulator, azurite
) -> None:
    services = _services(sim, azurite)
    alert, fingerprint = "alertmanager:PoolkeeperGroupCPUP1", uuid.uuid4().hex[:16]
    assert receive(services, _alertmanager_episode("resolved", fingerprint), None)[0] == 202
    status, late = receive(services, _alertmanager_episode("firing", fingerprint), None)
    assert status == 202 and late["jobs"] == [], late
    assert _state(services, alert) == "resolved"
    assert late["late"] == 1
    assert _queued(services, services.settings["POOLKEEPER_SCALE_QUEUE"]) == 0
    assert _notifications(services) == []
    # The same late firing again is a replay; a new episode of the alert fires as ever.
    again = _alertmanager_episode("firing", fingerprint)
    assert receive(services, again, None)[1]["duplicates"] == 1
    next_episode = _alertmanager_episode("firing", fingerprint, starts_at=NEXT_START)
    status, new = receive(services, next_episode, None)
    assert status == 202 and new["late"] == 0 and len(new["jobs"]) == 1, new
    assert _state(services, alert) == "fired"


NEXT_START = "2026-11-02T12:00:00Z"


def test_an_azure_monitor_fired_after_its_own_resolved_never_reopens_the_alert(
    sim: Simulator, azurite
) -> None:
    services = _services(sim, azurite)
    alert_id = (
        f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.AlertsManagement/alerts/{uuid.uuid4()}"
    )
    resolved = json.dumps(azure_alert(condition="Resolved", alert_id=alert_id)).encode()
    fired = json.dumps(azure_alert(alert_id=alert_id)).encode()
    assert receive(services, resolved, None)[0] == 202
    status, late = receive(services, fired, None)
    assert status == 202 and late["jobs"] == [], late
    assert _state(services, "azure-monitor:web-cpu-p1") == "resolved"
    assert late["late"] == 1
    assert _queued(services, services.settings["POOLKEEPER_SCALE_QUEUE"]) == 0
    # Azure gives the next firing of the rule an alert id of its own: that one acts.
    status, new = receive(services, json.dumps(azure_alert()).encode(), None)
    assert status == 202 and new["late"] == 0 and len(new["jobs"]) == 1, new
    assert _state(services, "azure-monitor:web-cpu-p1") == "fired"


def test_a_firing_and_its_resolved_in_one_payload_leave_the_alert_resolved(
    sim: Simulator, azurite
) -> None:
    services = _services(sim, azurite)
    fingerprint = uuid.uuid4().hex[:16]
    firing, resolved = (
        json.loads(_alertmanager_episode(status, fingerprint))["alerts"][0]
        for status in ("firing", "resolved")
    )
    status, answer = receive(services, json.dumps(webhook([resolved, firing])).encode(), None)
    assert status == 202 and answer["jobs"] == [], answer
    assert _state(services, "alertmanager:PoolkeeperGroupCPUP1") == "resolved"
    assert answer["late"] == 1


def test_a_delivery_whose_request_died_while_acting_is_acted_on_when_resent_after_its_claim_lapses(
    sim: Simulator, azurite
) -> None:
    from shared.adapters.deliveries import CLAIM_SECONDS, Deliveries

    services = _services(sim, azurite)
    body = json.dumps(alertmanager(rule=P2)).encode()
    (event,), _ = parse_alerts(body, services.config)
    # A request claimed the delivery and died before acting: no release, no "handled".
    now = services.clock.now()
    assert Deliveries(services.tables).claim([event.key], now, services.clock) == {event.key}
    status, meanwhile = receive(services, body, None)  # may still be acting: not a first
    assert status == 202 and meanwhile["duplicates"] == 1 and _notifications(services) == []
    # Product time that is CLAIM_SECONDS of wall time at the simulator's speed.
    speed = CLAIM_SECONDS / services.clock.real_seconds(timedelta(seconds=CLAIM_SECONDS))
    sim.advance(CLAIM_SECONDS * speed + 60)
    status, resent = receive(services, body, None)
    assert status == 202 and resent["duplicates"] == 0, resent
    assert [n["kind"] for n in _notifications(services)] == ["p2"]
    assert receive(services, body, None)[1]["duplicates"] == 1  # handled now, for good
