"""A stand-in for NVIDIA's dcgm-exporter: ``/metrics`` with its GPU activity series, per pod.

The real exporter, in Kubernetes mode, labels each MIG instance's series with the GPU
(``gpu``, ``UUID``, ``device``, ``modelName``, ``Hostname``), the MIG instance
(``GPU_I_PROFILE``, ``GPU_I_ID``) and the pod using it (``container``, ``namespace``,
``pod``). This one serves two of its series, the ones the idle check reads:

* ``DCGM_FI_PROF_GR_ENGINE_ACTIVE``: a profiling metric, a ratio (0-1) per MIG instance;
* ``DCGM_FI_DEV_GPU_UTIL``: a percentage. With ``profiling=False`` it is the only one
  served, as on a cluster where the exporter runs without DCGM's profiling module.

The values are whatever a test (or the demo) sets: ``exporter.set("jhub", "jupyter-bob",
engine_active=0.7)``. ``python -m mig_spawner.demo.dcgm --port 9400`` serves it with a
JSON control endpoint: ``POST /set`` with ``{"namespace", "pod", "engine_active",
"gpu_util"?, "profile"?}``, ``POST /remove`` with ``{"namespace", "pod"}``.
"""

from __future__ import annotations

import argparse
import json
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ENGINE_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
#: each series' HELP text, as the exporter's default counters file words it
HELP = {
    ENGINE_ACTIVE: "Ratio of time the graphics engine is active.",
    GPU_UTIL: "GPU utilization (in %).",
}
#: the labels of a MIG instance's series, in the exporter's order
LABELS = (
    "gpu",
    "UUID",
    "device",
    "modelName",
    "Hostname",
    "GPU_I_PROFILE",
    "GPU_I_ID",
    "container",
    "namespace",
    "pod",
)


@dataclass(frozen=True)
class Instance:
    """One MIG instance in use by one pod's container, and its activity now."""

    namespace: str
    pod: str
    profile: str
    gpu_i_id: int
    engine_active: float  # ratio, 0-1
    gpu_util: float  # percent, 0-100
    container: str = "notebook"
    gpu: int = 0


def _escape(value: str) -> str:
    """A label value as the text format writes it (backslash, quote and newline escaped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value))


def render(
    instances: list[Instance],
    *,
    profiling: bool = True,
    hostname: str = "gpu-node-1",
    model: str = "NVIDIA H100 80GB HBM3",
) -> str:
    """The Prometheus text exposition of ``instances`` (pure)."""
    metrics = [ENGINE_ACTIVE, GPU_UTIL] if profiling else [GPU_UTIL]
    lines: list[str] = []
    for metric in metrics:
        lines.append(f"# HELP {metric} {HELP[metric]}")
        lines.append(f"# TYPE {metric} gauge")
        for inst in instances:
            gpu_uuid = uuid.uuid5(uuid.NAMESPACE_DNS, f"{hostname}/{inst.gpu}")
            values = (
                str(inst.gpu),
                f"GPU-{gpu_uuid}",
                f"nvidia{inst.gpu}",
                model,
                hostname,
                inst.profile,
                str(inst.gpu_i_id),
                inst.container,
                inst.namespace,
                inst.pod,
            )
            labels = dict(zip(LABELS, values, strict=True))
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            value = inst.engine_active if metric == ENGINE_ACTIVE else inst.gpu_util
            lines.append(f"{metric}{{{text}}} {_number(value)}")
    return "\n".join(lines) + "\n"


class DcgmExporter:
    """A threaded HTTP server on ``host:port`` (0: any free port) serving :func:`render` of
    the instances set so far. A context manager: ``with DcgmExporter() as e: ...``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        profiling: bool = True,
        hostname: str = "gpu-node-1",
        model: str = "NVIDIA H100 80GB HBM3",
    ):
        self.host, self.port = host, port
        self.profiling = profiling
        self.hostname, self.model = hostname, model
        self._lock = threading.Lock()
        self._instances: dict[tuple[str, str], Instance] = {}
        self._next_id = 1
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.scrapes = 0  # /metrics answers served

    # -- what it serves
    def set(
        self,
        namespace: str,
        pod: str,
        engine_active: float = 0.0,
        gpu_util: float | None = None,
        profile: str = "1g.10gb",
        container: str = "notebook",
    ) -> Instance:
        """The pod's activity from now on (``gpu_util`` defaults to ``engine_active`` in %).
        A pod keeps its MIG instance id across calls."""
        if gpu_util is None:
            gpu_util = round(engine_active * 100)
        with self._lock:
            earlier = self._instances.get((namespace, pod))
            if earlier is None:
                gpu_i_id, self._next_id = self._next_id, self._next_id + 1
            else:
                gpu_i_id = earlier.gpu_i_id
            inst = Instance(
                namespace, pod, profile, gpu_i_id, float(engine_active), float(gpu_util), container
            )
            self._instances[namespace, pod] = inst
        return inst

    def remove(self, namespace: str, pod: str) -> bool:
        """Stop serving the pod's series; False when it had none."""
        with self._lock:
            return self._instances.pop((namespace, pod), None) is not None

    def metrics(self) -> str:
        with self._lock:
            instances = sorted(self._instances.values(), key=lambda i: i.gpu_i_id)
        return render(instances, profiling=self.profiling, hostname=self.hostname, model=self.model)

    # -- the server
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> DcgmExporter:
        self._server = ThreadingHTTPServer((self.host, self.port), _handler(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dcgm-exporter", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> DcgmExporter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def control(self, path: str, body: dict) -> dict:
        """A POST to the JSON control endpoint: what it answers (raises ValueError)."""
        if not isinstance(body, dict) or not isinstance(body.get("namespace"), str):
            raise ValueError("the body needs a namespace and a pod (strings)")
        if not isinstance(body.get("pod"), str):
            raise ValueError("the body needs a namespace and a pod (strings)")
        if path == "/set":
            known = {"namespace", "pod", "engine_active", "gpu_util", "profile", "container"}
            if set(body) - known:
                raise ValueError(f"unknown keys: {', '.join(sorted(set(body) - known))}")
            engine = body.get("engine_active", 0.0)
            util = body.get("gpu_util")
            for name, v, top in (("engine_active", engine, 1), ("gpu_util", util, 100)):
                if v is None and name == "gpu_util":
                    continue
                if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= top:
                    raise ValueError(f"{name} must be a number from 0 to {top}")
            inst = self.set(**body)
            return {"gpu_i_id": inst.gpu_i_id}
        if path == "/remove":
            return {"removed": self.remove(body["namespace"], body["pod"])}
        raise LookupError(path)


def _handler(exporter: DcgmExporter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def _answer(self, code: int, body: str, kind: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self._answer(404, "not found\n", "text/plain")
                return
            exporter.scrapes += 1
            self._answer(200, exporter.metrics(), "text/plain; version=0.0.4; charset=utf-8")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"null")
                answer = exporter.control(self.path, body)
            except LookupError:
                self._answer(404, json.dumps({"error": "not found"}), "application/json")
            except ValueError as e:  # json's errors are ValueErrors too
                self._answer(400, json.dumps({"error": str(e)}), "application/json")
            else:
                self._answer(200, json.dumps(answer), "application/json")

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mig_spawner.demo.dcgm", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9400)
    parser.add_argument(
        "--no-profiling", action="store_true", help=f"serve only {GPU_UTIL} (no {ENGINE_ACTIVE})"
    )
    args = parser.parse_args(argv)
    exporter = DcgmExporter(args.host, args.port, profiling=not args.no_profiling).start()
    print(f"DCGM exporter stand-in on {exporter.url}/metrics (POST /set, /remove)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        exporter.stop()


if __name__ == "__main__":
    main()
