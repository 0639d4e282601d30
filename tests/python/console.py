#!/usr/bin/env python3
"""A minimal third-party station console for rollcalld, in Python.

It uses only grpcio and modules generated from the project's .proto files
(by `python -m grpc_tools.protoc`, at test time), to prove the API serves a
console not written in Rust:

1. Checks `grpc.health.v1.Health/Check` and lists services by server
   reflection (v1alpha with grpcio-reflection's stubs, and v1 on the wire),
   both without a token as standard tools call them.
2. Subscribes to `EventService.Subscribe` (live only), starts a group roll
   call with `RollCallService.StartRun`, and reads events until the run's
   `rollcall_finished`.
3. Reads the run back with `GetRun` and prints one JSON summary on stdout.

Usage: console.py --addr HOST:PORT --token TOKEN --generated DIR
                  --channel CH [--window S] [--on-time S]
"""

import argparse
import json
import queue
import sys
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--generated", required=True, help="dir with rollcall/v1/*_pb2*.py")
    ap.add_argument("--channel", required=True)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--on-time", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    sys.path.insert(0, args.generated)
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    from rollcall.v1 import events_pb2, events_pb2_grpc
    from rollcall.v1 import rollcall_pb2, rollcall_pb2_grpc

    channel = grpc.insecure_channel(args.addr)
    grpc.channel_ready_future(channel).result(timeout=10)
    auth = [("authorization", "Bearer " + args.token)]
    summary = {}

    # --- health and reflection, no token ---
    health = health_pb2_grpc.HealthStub(channel)
    resp = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    summary["health"] = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    def list_services(call):
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        names = []
        for r in call(iter([req]), timeout=5):
            if r.HasField("error_response"):
                raise RuntimeError("reflection error: " + r.error_response.error_message)
            names.extend(s.name for s in r.list_services_response.service)
        return sorted(names)

    v1alpha = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo
    summary["reflection_v1alpha"] = list_services(v1alpha)
    # v1 has the same messages as v1alpha under a new package name.
    v1 = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    summary["reflection_v1"] = list_services(v1)

    # --- events first, so nothing of the run is missed ---
    events = events_pb2_grpc.EventServiceStub(channel)
    stream = events.Subscribe(events_pb2.SubscribeRequest(live_only=True), metadata=auth)
    q = queue.Queue()

    def pump():
        try:
            for ev in stream:
                q.put(ev)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                q.put(e)
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()

    rc = rollcall_pb2_grpc.RollCallServiceStub(channel)
    # The server subscribes to the bus before it answers with headers: once
    # they are here, no event of the run can be missed.
    stream.initial_metadata()
    run_id = rc.StartRun(
        rollcall_pb2.StartRunRequest(
            channel=args.channel,
            modes=["group"],
            options=rollcall_pb2.RunOptions(window_s=args.window, on_time_s=args.on_time),
        ),
        metadata=auth,
        timeout=10,
    ).run_id
    summary["run_id"] = run_id

    closed = {}
    heard = {}
    kinds = {}
    finished = None
    deadline = time.monotonic() + args.timeout
    while finished is None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SystemExit("timed out waiting for rollcall_finished")
        item = q.get(timeout=left)
        if item is None:
            raise SystemExit("event stream ended before the run finished")
        if isinstance(item, Exception):
            raise item
        ev = json.loads(item.json)
        if ev.get("type") != item.kind:
            raise SystemExit("event json type %r != kind %r" % (ev.get("type"), item.kind))
        if ev.get("run_id") != run_id:
            continue
        kinds[item.kind] = kinds.get(item.kind, 0) + 1
        if item.kind == "rollcall_answer_heard":
            heard[ev["guard"]] = {"kind": ev["kind"], "unit": ev["unit"]}
        elif item.kind == "rollcall_guard_closed":
            closed[ev["guard"]] = ev["outcome"]
        elif item.kind == "rollcall_finished":
            finished = ev
    stream.cancel()

    detail = rc.GetRun(rollcall_pb2.GetRunRequest(id=run_id), metadata=auth, timeout=10)
    summary["events"] = {"kinds": kinds, "closed": closed, "heard": heard, "finished": finished}
    summary["get_run"] = {
        "state": detail.run.state,
        "answered": detail.run.answered,
        "late": detail.run.late,
        "missed": detail.run.missed,
        "results": {
            r.guard: {"outcome": r.outcome, "via": r.via, "code": r.code} for r in detail.results
        },
    }
    # A viewer-level call without the token must be refused, not answered.
    try:
        rc.ListRuns(rollcall_pb2.ListRunsRequest(), timeout=5)
        summary["unauthenticated"] = "answered"
    except grpc.RpcError as e:
        summary["unauthenticated"] = e.code().name
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
