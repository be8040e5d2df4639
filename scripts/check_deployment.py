#!/usr/bin/env python3
"""Checks fxflow's deployment files against each other, against their schemas and against the
program itself. Every subcommand exits 0 when all is well, 1 with one line per broken reference
("compose.yaml: service `index`: ... names `elasticsearch`, which is not a service"), and 2 on a
usage error or a missing tool.

  scripts/check_deployment.py compose      [--file deployments/compose.yaml] [--env-file deployments/.env.example]
  scripts/check_deployment.py k8s          [--dir deployments/k8s]   (or deployments/k8s/keda: + KEDA's ScaledObjects)
  scripts/check_deployment.py kibana       [--file dashboards/kibana/fx.ndjson] [--templates FILE] [--pending FILE]
  scripts/check_deployment.py prometheus   [--config deployments/prometheus.yml] [--local-config ...] [--rules FILE...]
                                           [--live-target HOST:PORT]   (start a real Prometheus scraping it)
  scripts/check_deployment.py grafana      [--file dashboards/grafana/fxflow.json] [--metrics-url URL ...]
  scripts/check_deployment.py templates    print the Elasticsearch sink's index templates (as the sink installs them)
  scripts/check_deployment.py all          compose, k8s (base and keda), kibana, prometheus (static), grafana (static)

Every path is relative to --root (default: the repository holding this script), so a test can copy
the repository's deployment files to a temporary folder, break one and check the copy. The `fxflow`
binary comes from --fxflow, $FXFLOW_BIN, or target/debug/fxflow of the repository holding this script.

Python packages: scripts/requirements-checks.txt (check-jsonschema ships the Compose Specification
schema, kubernetes-validate the Kubernetes schemas, PyYAML). Tools: promtool and prometheus
(Debian package `prometheus`); node with `npm ci` in scripts/crd-check for KEDA's schema.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import NoReturn

try:
    import yaml
except ImportError:  # pragma: no cover - reported as a usage error
    yaml = None

HERE = Path(__file__).resolve().parent.parent


class Problems:
    """Collects broken references; `finish` prints them and exits non-zero if there are any."""

    def __init__(self, check: str):
        self.check = check
        self.items: list[str] = []
        self.notes: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")

    def note(self, message: str) -> None:
        self.notes.append(message)

    def finish(self, ok_message: str) -> int:
        for note in self.notes:
            print(f"note: {note}")
        if self.items:
            print(f"{self.check}: {len(self.items)} problem{'s' if len(self.items) != 1 else ''}:", file=sys.stderr)
            for item in self.items:
                print(f"  error: {item}", file=sys.stderr)
            return 1
        print(f"{self.check}: ok — {ok_message}")
        return 0


def die(message: str) -> NoReturn:
    print(f"check_deployment: {message}", file=sys.stderr)
    sys.exit(2)


def need_yaml() -> None:
    if yaml is None:
        die("PyYAML is missing: pip install -r scripts/requirements-checks.txt")


def load_yaml_docs(path: Path) -> list:
    need_yaml()
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def rel(root: Path, path: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def fxflow_bin(args) -> Path:
    candidates = [args.fxflow, os.environ.get("FXFLOW_BIN"), str(HERE / "target" / "debug" / "fxflow")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            # Absolute: the checks run the binary from other folders (cwd=...).
            return Path(c).resolve()
    die("no fxflow binary: build it (cargo build -p fxflow-stages --bin fxflow) or pass --fxflow / FXFLOW_BIN")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


# ------------------------------------------------------------------------------------ pipelines

# A default holds no `$`, so nested references (`${A:-${B:-}}`) resolve from the inside out.
VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}$]*))?\}")


def fxflow_interpolate(text: str, env: dict) -> tuple[str, list[str]]:
    """fxflow's `${VAR}` / `${VAR:-default}` / `$${` substitution (engine/src/pipeline_file/interpolate.rs):
    a default applies only when the variable is unset. Returns the text and the missing names."""
    missing: list[str] = []

    def sub(m: re.Match) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        missing.append(name)
        return ""

    while True:
        replaced = VAR.sub(sub, text)
        if replaced == text or "$${" in text:
            return replaced, missing
        text = replaced


RESOURCE = re.compile(r'"([^"]+)"\s*:\s*(Kafka|Postgres|Redis|Elasticsearch|Sqlite)\s*\(', re.S)


def pipeline_endpoints(text: str) -> list[tuple[str, str, str]]:
    """(resource name, kind, address) of every networked resource in an interpolated pipeline."""
    out = []
    for m in RESOURCE.finditer(text):
        name, kind = m.group(1), m.group(2)
        body = text[m.end(): m.end() + 600]
        field = "brokers" if kind == "Kafka" else "url"
        f = re.search(field + r'\s*:\s*"([^"]*)"', body)
        if f and kind != "Sqlite":
            out.append((name, kind, f.group(1)))
    return out


def pipeline_topics(text: str) -> tuple[dict, set]:
    """Declared topics (name -> partitions) and topics used by KafkaSource/KafkaSink stages."""
    declared = {}
    for m in re.finditer(r'"([A-Za-z0-9._-]+)"\s*:\s*\(\s*partitions\s*:\s*(\d+)', text):
        declared[m.group(1)] = int(m.group(2))
    used = set()
    for m in re.finditer(r'KafkaSource\s*\((.*?)\n\s*\)', text, re.S):
        t = re.search(r'topics\s*:\s*\[([^\]]*)\]', m.group(1))
        if t:
            used.update(re.findall(r'"([^"]+)"', t.group(1)))
    for m in re.finditer(r'KafkaSink\s*\((.*?)\n\s*\)', text, re.S):
        used.update(re.findall(r'\btopic\s*:\s*"([^"]+)"', m.group(1)))
    for m in re.finditer(r'state\s*:\s*\([^)]*topic\s*:\s*"([^"]+)"', text):
        used.add(m.group(1))
    return declared, used


def listen_port(address: str) -> int | None:
    m = re.search(r":(\d+)$", address or "")
    return int(m.group(1)) if m else None


def endpoint_hosts(kind: str, address: str) -> list[tuple[str, int | None]]:
    if kind == "Kafka":
        hosts = []
        for part in address.split(","):
            part = part.strip()
            host, _, port = part.rpartition(":")
            hosts.append((host or part, int(port) if port.isdigit() else None))
        return hosts
    u = urllib.parse.urlsplit(address)
    default = {"Postgres": 5432, "Redis": 6379, "Elasticsearch": 9200}.get(kind)
    return [(u.hostname or "", u.port or default)]


def run_validate(binary: Path, files: list[Path], env: dict, cwd: Path) -> tuple[bool, str]:
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_COLOR": "1"}
    clean.update(env)
    names = [os.path.relpath(f, cwd) if Path(f).is_absolute() else str(f) for f in files]
    r = subprocess.run([str(binary), "validate", *names], env=clean, cwd=cwd,
                       capture_output=True, text=True, timeout=60)
    return r.returncode == 0, (r.stdout + r.stderr).strip()


# ------------------------------------------------------------------------------------ compose

COMPOSE_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def read_env_file(path: Path) -> dict:
    env = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ValueError(f"{path}:{n}: expected NAME=value")
        k, v = line.split("=", 1)
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            v = v[1:-1]
        env[k.strip()] = v
    return env


def compose_interpolate(node, env: dict, where: str, problems: Problems, used: set):
    """Compose's interpolation: ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?err}, ${VAR?err}, $VAR, $$.
    Keys are left alone (compose does not interpolate them)."""
    if isinstance(node, dict):
        return {k: compose_interpolate(v, env, f"{where}.{k}", problems, used) for k, v in node.items()}
    if isinstance(node, list):
        return [compose_interpolate(v, env, f"{where}[{i}]", problems, used) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3)
        used.add(name)
        value = env.get(name)
        if op in (":-", "-"):
            if value is None or (op == ":-" and value == ""):
                return compose_interpolate(arg, env, where, problems, used)
            return value
        if op in (":?", "?"):
            if value is None or (op == ":?" and value == ""):
                problems.add(where, f"required variable {name} is not set in the env file ({arg})")
                return ""
            return value
        if value is None:
            problems.add(where, f"variable {name} is not set in the env file and has no default")
            return ""
        return value

    return COMPOSE_VAR.sub(sub, node)


def compose_schema() -> dict:
    try:
        from importlib import resources

        text = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    except (ImportError, FileNotFoundError, ModuleNotFoundError):
        die("check-jsonschema is missing (it ships the Compose Specification schema): "
            "pip install -r scripts/requirements-checks.txt")
    return json.loads(text)


def volume_entries(service: dict) -> list[dict]:
    """Long-form volume entries of a service (short syntax parsed)."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            out.append(v)
            continue
        parts = v.split(":")
        if len(parts) == 1:
            out.append({"type": "volume", "source": None, "target": parts[0]})
            continue
        source, target = parts[0], parts[1]
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        out.append({"type": kind, "source": source, "target": target, "read_only": len(parts) > 2 and "ro" in parts[2]})
    return out


def host_path_of(service: dict, container_path: str, base: Path) -> Path | None:
    """The host file a bind mount of `service` puts at `container_path` (None: not mounted)."""
    container_path = os.path.normpath(container_path)
    best = None
    for v in volume_entries(service):
        if v.get("type") != "bind":
            continue
        target = os.path.normpath(v["target"])
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            if best is None or len(target) > len(best[0]):
                best = (target, v["source"])
    if best is None:
        return None
    target, source = best
    return (base / source / os.path.relpath(container_path, target)).resolve()


def service_env(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            k, _, v = item.partition("=")
            out[k] = v
        return out
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command_list(service: dict) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def published_ports(service: dict) -> list[tuple[str | None, int]]:
    out = []
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            if str(p.get("target", "")).isdigit():
                out.append((str(p.get("published")) if p.get("published") is not None else None, int(p["target"])))
            continue
        p = str(p).split("/")[0]
        parts = p.split(":")
        if not parts[-1].split("-")[0].isdigit():
            continue
        target = int(parts[-1].split("-")[0])
        published = parts[-2] if len(parts) >= 2 else None
        out.append((published, target))
    return out


def container_ports(service: dict) -> set[int]:
    ports = {int(str(p).split("/")[0]) for p in service.get("expose") or []}
    ports.update(t for _, t in published_ports(service))
    return ports


def is_fxflow_service(name: str, service: dict) -> bool:
    image = str(service.get("image", ""))
    build = service.get("build") or {}
    dockerfile = build.get("dockerfile", "") if isinstance(build, dict) else ""
    return image.startswith("fxflow:") or image.startswith("fxflow/") or dockerfile.endswith("deployments/Dockerfile")


def dockerignore_patterns(context: Path) -> list[str]:
    f = context / ".dockerignore"
    if not f.is_file():
        return []
    return [l.strip().rstrip("/") for l in f.read_text().splitlines() if l.strip() and not l.startswith("#")]


def dockerignored(path: str, patterns: list[str]) -> bool:
    import fnmatch

    path = path.strip("/")
    for pat in patterns:
        pat = pat.lstrip("/")
        if fnmatch.fnmatch(path, pat) or path == pat or path.startswith(pat + "/"):
            return True
        if pat.startswith("**/") and any(fnmatch.fnmatch(part, pat[3:]) for part in path.split("/")):
            return True
    return False


def check_dockerfile(dockerfile: Path, context: Path, root: Path, p: Problems, ports: set[int]) -> None:
    """The Dockerfile a compose service builds: stages referenced before use, COPY sources present
    in the build context and not excluded by .dockerignore, a HEALTHCHECK on /health, a non-root
    USER, the ports compose relies on exposed."""
    where = rel(root, dockerfile)
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    stages: list[str] = []
    user = None
    health = None
    exposed: set[int] = set()
    ignore = dockerignore_patterns(context)
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            m = re.search(r"\s+AS\s+(\S+)", rest, re.I)
            base = rest.split()[0]
            if "$" not in base and ":" not in base and base not in stages and "@" not in base:
                p.add(where, f"FROM `{base}` has no tag: pin the base image")
            stages.append(m.group(1) if m else f"#{len(stages)}")
            user = None
        elif op in ("COPY", "ADD"):
            words = [w for w in rest.split() if not w.startswith("--chown") and not w.startswith("--chmod") and not w.startswith("--link")]
            frm = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            words = [w for w in words if not w.startswith("--")]
            if frm is not None:
                if frm not in stages[:-1]:
                    p.add(where, f"COPY --from={frm}: no earlier stage is called `{frm}`")
                continue
            for src in words[:-1]:
                if src == ".":
                    continue
                if not (context / src).exists():
                    p.add(where, f"COPY `{src}`: not in the build context {rel(root, context)}")
                elif dockerignored(src, ignore):
                    p.add(where, f"COPY `{src}`: excluded from the build context by .dockerignore")
        elif op == "USER":
            user = rest.split(":")[0]
        elif op == "HEALTHCHECK":
            health = rest
        elif op == "EXPOSE":
            exposed.update(int(x.split("/")[0]) for x in rest.split() if x.split("/")[0].isdigit())
    if user in (None, "root", "0"):
        p.add(where, "the final stage runs as root: add a USER")
    if not health or "/health" not in health:
        p.add(where, "no HEALTHCHECK on /health")
    for port in sorted(ports - exposed):
        p.add(where, f"does not EXPOSE {port}, which the compose services listen on")
    for must in ("target", ".git", ".cache"):
        if (context / must).exists() and not dockerignored(must, ignore):
            p.add(rel(root, context / ".dockerignore"), f"`{must}/` is sent to the Docker daemon with every build: add it to .dockerignore")


ONE_SHOT_RESTARTS = {"no", "on-failure"}
STATEFUL = {"kafka", "postgres", "redis", "elasticsearch", "prometheus", "grafana"}


def check_compose(args) -> int:
    root = Path(args.root).resolve()
    file = (root / args.file).resolve()
    env_file = (root / args.env_file).resolve()
    p = Problems("compose")
    name = rel(root, file)
    if not file.is_file():
        p.add(name, "no such file")
        return p.finish("")
    base = file.parent
    raw = load_yaml_docs(file)[0]
    env = read_env_file(env_file) if env_file.is_file() else {}
    if not env_file.is_file():
        p.add(rel(root, env_file), "no such env file (ship it: the compose file reads its secrets from .env)")
    used_vars: set = set()
    doc = compose_interpolate(raw, env, name, p, used_vars)
    for k in sorted(set(env) - used_vars):
        p.note(f"{rel(root, env_file)}: {k} is set but compose.yaml never uses it")

    # 1. The Compose Specification schema (as `docker compose config` validates, after interpolation).
    import jsonschema

    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
        path = ".".join(str(x) for x in err.path) or "(top level)"
        p.add(f"{name}: {path}", f"schema: {err.message}")

    if p.items:
        return p.finish("")  # as `docker compose`, which refuses a file the schema rejects
    services = doc.get("services") or {}
    volumes = doc.get("volumes") or {}
    networks = doc.get("networks") or {}

    # 2. depends_on, volumes, ports.
    used_volumes = set()
    host_ports: dict[str, str] = {}
    for sname, s in services.items():
        where = f"{name}: service `{sname}`"
        deps = s.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for dep, spec in deps.items():
            if dep not in services:
                p.add(where, f"depends_on `{dep}`, which is not a service")
                continue
            cond = (spec or {}).get("condition", "service_started")
            if cond == "service_healthy" and not (services[dep].get("healthcheck") or is_fxflow_service(dep, services[dep])):
                p.add(where, f"waits for `{dep}` to be healthy, but `{dep}` has no healthcheck")
            if cond == "service_completed_successfully" and str(services[dep].get("restart", "no")) not in ONE_SHOT_RESTARTS:
                p.add(where, f"waits for `{dep}` to complete, but `{dep}` restarts `{services[dep].get('restart')}` (a one-shot must not restart on success)")
        for v in volume_entries(s):
            if v.get("type") == "volume" and v.get("source"):
                used_volumes.add(v["source"])
                if v["source"] not in volumes:
                    p.add(where, f"mounts the volume `{v['source']}`, which the top-level `volumes` does not declare")
            elif v.get("type") == "bind":
                src = (base / v["source"]).resolve()
                if not src.exists():
                    p.add(where, f"bind-mounts `{v['source']}`, which does not exist ({rel(root, src)})")
        for published, target in published_ports(s):
            if published:
                if published in host_ports:
                    p.add(where, f"publishes host port {published}, which `{host_ports[published]}` publishes too")
                host_ports[published] = sname
        for net in s.get("networks") or []:
            if net not in networks and net != "default":
                p.add(where, f"joins the network `{net}`, which is not declared")
    for v in volumes:
        if v not in used_volumes:
            p.add(f"{name}: volumes", f"`{v}` is declared but no service mounts it")
    for sname in STATEFUL:
        if sname not in services:
            p.add(f"{name}: services", f"the stateful service `{sname}` is missing")
        elif not any(v.get("type") == "volume" for v in volume_entries(services[sname])):
            p.add(f"{name}: service `{sname}`", "keeps state but mounts no named volume")

    # 3. fxflow services: their pipeline files, with this environment.
    binary = fxflow_bin(args)
    worker_ports: dict[str, int] = {}
    created_topics: dict[str, int] = {}
    used_topics: dict[str, set] = {}
    topic_services = []
    for sname, s in services.items():
        if not is_fxflow_service(sname, s):
            continue
        where = f"{name}: service `{sname}`"
        cmd = command_list(s)
        if not cmd:
            p.add(where, "runs the fxflow image without a command")
            continue
        workdir = s.get("working_dir") or "/app"
        files = [c for c in cmd[1:] if c.endswith(".ron")]
        host_files = []
        for f in files:
            cpath = f if f.startswith("/") else os.path.join(workdir, f)
            host = host_path_of(s, cpath, base)
            if host is None:
                # Not mounted: the image's own copy (the Dockerfile copies pipelines/ into /app).
                if cpath.startswith("/app/"):
                    host = (root / os.path.relpath(cpath, "/app")).resolve()
                else:
                    p.add(where, f"runs `{f}`, which no volume mounts and the image does not hold")
                    continue
            if not host.is_file():
                p.add(where, f"runs `{f}`, but {rel(root, host)} does not exist")
                continue
            host_files.append(host)
        if not host_files:
            if cmd[0] in ("run", "topics", "migrate", "validate"):
                p.add(where, f"`fxflow {' '.join(cmd)}` names no pipeline file that exists")
            continue
        senv = service_env(s)
        ok, out = run_validate(binary, host_files, senv, root)
        if not ok:
            for line in out.splitlines():
                if ": error: " in line or "hint:" in line:
                    p.add(where, f"fxflow validate (with the service's environment): {line.strip()}")
            if not any(": error: " in l for l in out.splitlines()):
                p.add(where, f"fxflow validate failed: {out}")
        for host in host_files:
            text, missing = fxflow_interpolate(host.read_text(encoding="utf-8"), senv)
            if missing:
                continue  # already reported by fxflow validate
            only = cmd[cmd.index("--resource") + 1] if cmd[0] in ("topics", "migrate") and "--resource" in cmd[:-1] else None
            for res, kind, address in pipeline_endpoints(text):
                if only and res != only:
                    continue  # a one-shot opens only the resource it is given
                for h, port in endpoint_hosts(kind, address):
                    if h not in services:
                        p.add(where, f"{rel(root, host)}: resource `{res}` ({kind}) connects to `{h}`, which is not a service of {name} (address `{address}`)")
                    elif port is not None and port not in container_ports(services[h]):
                        p.add(where, f"{rel(root, host)}: resource `{res}` ({kind}) connects to `{h}:{port}`, but `{h}` exposes {sorted(container_ports(services[h])) or 'no port'}")
            declared, used = pipeline_topics(text)
            if cmd[0] == "topics":
                for t, n in declared.items():
                    if t in created_topics and created_topics[t] != n:
                        p.add(where, f"topic `{t}` is declared with {created_topics[t]} and {n} partitions")
                    created_topics.setdefault(t, n)
            elif cmd[0] == "run":
                used_topics.setdefault(sname, set()).update(used | set(declared))
            if cmd[0] == "run":
                tel = re.search(r'telemetry\s*:\s*\(\s*address\s*:\s*"([^"]*)"', text)
                if tel:
                    worker_ports[sname] = listen_port(tel.group(1))
                    if not tel.group(1).startswith("0.0.0.0:"):
                        p.add(where, f"{rel(root, host)}: the telemetry server listens on `{tel.group(1)}`: set FXFLOW_TELEMETRY=0.0.0.0:PORT, or no other container (Prometheus, the healthcheck) reaches it")
                    elif worker_ports[sname] not in container_ports(s):
                        p.add(where, f"listens for telemetry on {worker_ports[sname]} but does not expose it")
                for m in re.finditer(r'listen\s*:\s*"([^"]*)"', text):
                    port = listen_port(m.group(1))
                    if not m.group(1).startswith("0.0.0.0:"):
                        p.add(where, f"{rel(root, host)}: a stage listens on `{m.group(1)}`, unreachable from outside the container (use 0.0.0.0)")
                    elif port not in container_ports(s):
                        p.add(where, f"a stage listens on {port}, which the service neither exposes nor publishes")
                for published, target in published_ports(s):
                    if target not in {worker_ports.get(sname)} | {listen_port(m.group(1)) for m in re.finditer(r'listen\s*:\s*"([^"]*)"', text)}:
                        p.add(where, f"publishes container port {target}, on which nothing of {rel(root, host)} listens")
        if cmd[0] == "topics":
            topic_services.append(sname)
        if cmd[0] == "run" and s.get("container_name"):
            p.add(where, "sets container_name, so `--scale` cannot start a second one")
    # The image the fxflow services build.
    builds = {}
    for sname, s in services.items():
        b = s.get("build")
        if isinstance(b, str):
            b = {"context": b}
        if isinstance(b, dict):
            context = (base / b.get("context", ".")).resolve()
            dockerfile = (context / b.get("dockerfile", "Dockerfile")).resolve()
            if not context.is_dir():
                p.add(f"{name}: service `{sname}`", f"build context `{b.get('context')}` does not exist")
            elif not dockerfile.is_file():
                p.add(f"{name}: service `{sname}`", f"builds `{b.get('dockerfile')}`, which is not in {rel(root, context)}")
            else:
                builds.setdefault((dockerfile, context), set()).update(
                    container_ports(s) if is_fxflow_service(sname, s) else set())
    for (dockerfile, context), ports in builds.items():
        check_dockerfile(dockerfile, context, root, p, ports)

    # Scalable workers (a consumer group) must not publish host ports.
    for sname, s in services.items():
        if is_fxflow_service(sname, s) and command_list(s)[:1] == ["run"] and sname != "api" and sname != "ingest":
            if s.get("ports"):
                p.add(f"{name}: service `{sname}`", "publishes a host port: `docker compose up --scale` would start replicas that clash on it")
    if not topic_services:
        p.add(f"{name}: services", "no one-shot `fxflow topics create` service")
    for sname, topics in used_topics.items():
        for t in sorted(topics - set(created_topics)):
            p.add(f"{name}: service `{sname}`", f"uses the topic `{t}`, which the topics service ({', '.join(topic_services) or 'none'}) does not create")

    # 4. Prometheus: every worker scraped on its telemetry port; rule files mounted.
    prom = services.get("prometheus")
    if prom:
        cfg_path = next((v for v in [host_path_of(prom, "/etc/prometheus/prometheus.yml", base)] if v), None)
        if cfg_path is None or not cfg_path.is_file():
            p.add(f"{name}: service `prometheus`", "mounts no /etc/prometheus/prometheus.yml")
        else:
            cfg = load_yaml_docs(cfg_path)[0]
            scraped: dict[str, int] = {}
            for job in cfg.get("scrape_configs") or []:
                for sd in job.get("dns_sd_configs") or []:
                    for n in sd.get("names") or []:
                        scraped[n] = sd.get("port")
                for sc in job.get("static_configs") or []:
                    for t in sc.get("targets") or []:
                        h, _, port = t.rpartition(":")
                        if h != "localhost":
                            scraped[h] = int(port) if port.isdigit() else None
            for n, port in scraped.items():
                if n not in services:
                    p.add(rel(root, cfg_path), f"scrapes `{n}`, which is not a service of {name}")
                elif n in worker_ports and port != worker_ports[n]:
                    p.add(rel(root, cfg_path), f"scrapes `{n}` on port {port}, but its telemetry listens on {worker_ports[n]}")
            for w in worker_ports:
                if w not in scraped:
                    p.add(rel(root, cfg_path), f"does not scrape the worker `{w}`")
            for rf in cfg.get("rule_files") or []:
                host = host_path_of(prom, rf if rf.startswith("/") else os.path.join("/etc/prometheus", rf), base)
                if host is None:
                    p.add(f"{name}: service `prometheus`", f"rule_files `{rf}` is not mounted")
                elif not (list(host.parent.glob(host.name)) if "*" in host.name else host.exists()):
                    p.add(f"{name}: service `prometheus`", f"rule_files `{rf}` matches nothing ({rel(root, host)})")

    # 5. Grafana: the provisioned data source points at a service; the dashboards are mounted.
    graf = services.get("grafana")
    if graf:
        prov = host_path_of(graf, "/etc/grafana/provisioning", base)
        if prov is None or not prov.is_dir():
            p.add(f"{name}: service `grafana`", "mounts no provisioning folder at /etc/grafana/provisioning")
        else:
            for f in sorted((prov / "datasources").glob("*.y*ml")):
                for ds in (load_yaml_docs(f)[0] or {}).get("datasources") or []:
                    h = urllib.parse.urlsplit(ds.get("url", "")).hostname
                    port = urllib.parse.urlsplit(ds.get("url", "")).port
                    if h not in services:
                        p.add(rel(root, f), f"data source `{ds.get('name')}` points at `{h}`, which is not a service")
                    elif port and port not in container_ports(services[h]) | {9090}:
                        p.add(rel(root, f), f"data source `{ds.get('name')}` points at port {port} of `{h}`")
            for f in sorted((prov / "dashboards").glob("*.y*ml")):
                for prv in (load_yaml_docs(f)[0] or {}).get("providers") or []:
                    cpath = (prv.get("options") or {}).get("path", "")
                    host = host_path_of(graf, cpath, base)
                    if host is None or not host.is_dir():
                        p.add(rel(root, f), f"dashboard provider `{prv.get('name')}` reads `{cpath}`, which is not mounted")
                    elif not list(host.glob("*.json")):
                        p.add(rel(root, f), f"dashboard provider `{prv.get('name')}` reads `{cpath}`, which holds no dashboard")

    # 6. The Kibana import: the file it posts is mounted, the URL names the Kibana service.
    for sname, s in services.items():
        cmd = command_list(s)
        form = next((c for c in cmd if c.startswith("file=@")), None)
        if not form:
            continue
        host = host_path_of(s, form[len("file=@"):], base)
        if host is None or not host.is_file():
            p.add(f"{name}: service `{sname}`", f"posts `{form[6:]}`, which is not mounted from a file of the repository")
        for c in cmd:
            if c.startswith("http://") or c.startswith("https://"):
                u = urllib.parse.urlsplit(c)
                if u.hostname not in services:
                    p.add(f"{name}: service `{sname}`", f"calls `{u.hostname}`, which is not a service")

    return p.finish(f"{len(services)} services, {len(volumes)} volumes, {len(worker_ports)} workers validated with {rel(root, env_file)}")


# ------------------------------------------------------------------------------------ k8s


def kustomize_build(dir: Path, problems: Problems, root: Path, seen=None) -> list[dict]:
    """A kustomize-style assembly of a base: `resources` (files or folders with a kustomization),
    `configMapGenerator`/`secretGenerator` (files, literals), `namespace`, `labels`, `images`.
    Generated names get kustomize's content-hash suffix and references to them are renamed."""
    seen = seen or set()
    kfile = next((dir / n for n in ("kustomization.yaml", "kustomization.yml", "Kustomization") if (dir / n).is_file()), None)
    if kfile is None:
        problems.add(rel(root, dir), "no kustomization.yaml")
        return []
    if kfile in seen:
        problems.add(rel(root, kfile), "includes itself")
        return []
    seen.add(kfile)
    k = load_yaml_docs(kfile)[0] or {}
    where = rel(root, kfile)
    docs: list[dict] = []
    for r in k.get("resources") or []:
        path = (dir / r).resolve()
        if path.is_dir():
            docs.extend(kustomize_build(path, problems, root, seen))
        elif path.is_file():
            docs.extend(d for d in load_yaml_docs(path))
        else:
            problems.add(where, f"resource `{r}` does not exist")
    renames: dict[tuple[str, str], str] = {}
    opts = k.get("generatorOptions") or {}
    for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for g in k.get(key) or []:
            data: dict[str, str] = {}
            for f in g.get("files") or []:
                kname, _, fpath = f.partition("=") if "=" in f else (os.path.basename(f), "", f)
                path = (dir / fpath).resolve()
                if not path.is_file():
                    problems.add(where, f"{key} `{g.get('name')}`: file `{fpath}` does not exist")
                    continue
                if dir.resolve() not in path.parents:
                    problems.add(where, f"{key} `{g.get('name')}`: `{fpath}` is outside the kustomization folder (kustomize refuses it)")
                data[kname] = path.read_text(encoding="utf-8")
            for lit in g.get("literals") or []:
                kk, _, vv = lit.partition("=")
                data[kk] = vv
            for envf in g.get("envs") or []:
                path = dir / envf
                if not path.is_file():
                    problems.add(where, f"{key} `{g.get('name')}`: env file `{envf}` does not exist")
                    continue
                data.update(read_env_file(path))
            obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": g["name"]}}
            if kind == "Secret":
                import base64

                obj["type"] = g.get("type", "Opaque")
                obj["data"] = {kk: base64.b64encode(vv.encode()).decode() for kk, vv in data.items()}
            else:
                obj["data"] = data
            if not (g.get("options") or opts).get("disableNameSuffixHash"):
                digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:10]
                renames[(kind, g["name"])] = f"{g['name']}-{digest}"
            docs.append(obj)
    ns = k.get("namespace")
    labels = {}
    for entry in k.get("labels") or []:
        labels.update(entry.get("pairs") or {})
    labels.update(k.get("commonLabels") or {})
    images = {i["name"]: i for i in k.get("images") or []}
    for d in docs:
        md = d.setdefault("metadata", {})
        if ns and d.get("kind") not in ("Namespace",):
            md["namespace"] = ns
        if labels:
            md.setdefault("labels", {}).update(labels)
        for c in containers_of(d):
            img = c.get("image", "")
            name, _, tag = img.partition(":")
            if name in images:
                new = images[name]
                c["image"] = f"{new.get('newName', name)}:{new.get('newTag', tag or 'latest')}"
    # Generated names: rename the objects and every reference to them.
    for d in docs:
        key = (d.get("kind"), d.get("metadata", {}).get("name"))
        if key in renames:
            d["metadata"]["name"] = renames[key]
            d["metadata"].setdefault("annotations", {})["fxflow.check/generated-from"] = key[1]
    # References to generated objects, this level's and the included kustomizations' alike.
    for d in docs:
        origin = (d.get("metadata", {}).get("annotations") or {}).get("fxflow.check/generated-from")
        if origin:
            renames[(d.get("kind"), origin)] = d["metadata"]["name"]
    for d in docs:
        for ref_kind, ref in config_refs(d):
            if (ref_kind, ref["name"]) in renames:
                ref["name"] = renames[(ref_kind, ref["name"])]
    return docs


def pod_spec(d: dict) -> dict | None:
    kind = d.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return ((d.get("spec") or {}).get("template") or {}).get("spec")
    if kind == "CronJob":
        return (((d.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get("spec")
    if kind == "Pod":
        return d.get("spec")
    return None


def containers_of(d: dict) -> list[dict]:
    spec = pod_spec(d) or {}
    return list(spec.get("containers") or []) + list(spec.get("initContainers") or [])


def config_refs(d: dict):
    """(kind, dict with a `name`) of every ConfigMap/Secret reference in a workload."""
    spec = pod_spec(d) or {}
    for v in spec.get("volumes") or []:
        if "configMap" in v:
            yield "ConfigMap", v["configMap"]
        if "secret" in v:
            s = v["secret"]
            if "secretName" in s:
                s.setdefault("name", s["secretName"])
                yield "Secret", _SecretName(s)
        for src in (v.get("projected") or {}).get("sources") or []:
            if "configMap" in src:
                yield "ConfigMap", src["configMap"]
            if "secret" in src:
                yield "Secret", src["secret"]
    for c in containers_of(d):
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            if "configMapKeyRef" in vf:
                yield "ConfigMap", vf["configMapKeyRef"]
            if "secretKeyRef" in vf:
                yield "Secret", vf["secretKeyRef"]
        for ef in c.get("envFrom") or []:
            if "configMapRef" in ef:
                yield "ConfigMap", ef["configMapRef"]
            if "secretRef" in ef:
                yield "Secret", ef["secretRef"]


class _SecretName(dict):
    """A secret volume's `secretName`, renamed through `name`."""

    def __init__(self, volume: dict):
        super().__init__(name=volume["secretName"])
        self._volume = volume

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        if key == "name":
            self._volume["secretName"] = value
            self._volume.pop("name", None)


def check_k8s(args) -> int:
    root = Path(args.root).resolve()
    dir = (root / args.dir).resolve()
    p = Problems("k8s")
    try:
        import kubernetes_validate
        from kubernetes_validate import utils as kv_utils
    except ImportError:
        die("kubernetes-validate is missing: pip install -r scripts/requirements-checks.txt")
    docs = kustomize_build(dir, p, root)
    if args.kustomize:
        # The real `kustomize build` too: the same objects must come out, and those are checked.
        r = subprocess.run([args.kustomize, "build", str(dir)], capture_output=True, text=True)
        if r.returncode != 0:
            p.add(rel(root, dir), f"kustomize build failed: {r.stderr.strip()}")
            return p.finish("")
        built = [d for d in yaml.safe_load_all(r.stdout) if d]
        strip = lambda n: re.sub(r"-[a-z0-9]{10}$", "", n)
        ours = sorted((d.get("kind"), strip(d["metadata"]["name"])) for d in docs)
        theirs = sorted((d.get("kind"), strip(d["metadata"]["name"])) for d in built)
        if ours != theirs:
            p.add(rel(root, dir), f"kustomize build gives {theirs}, the checker's assembly {ours}")
        docs = built
        print(f"k8s: checking the output of {args.kustomize} build ({len(built)} objects)")
    version = args.k8s_version or kv_utils.latest_version()
    by_kind: dict[str, dict[str, dict]] = {}
    custom: list[dict] = []
    for d in docs:
        name = (d.get("metadata") or {}).get("name", "?")
        where = f"{d.get('kind', '?')}/{name}"
        if str(d.get("apiVersion", "")).startswith("keda.sh/"):
            custom.append(d)  # KEDA's kinds: its own schema, below
            by_kind.setdefault(d.get("kind"), {})[name] = d
            continue
        try:
            kubernetes_validate.validate(d, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(x) for x in e.path) or "(top level)"
            p.add(where, f"Kubernetes {version} schema: {path}: {e.message}")
        except Exception as e:  # unknown kind/version
            p.add(where, f"Kubernetes {version} schema: {e}")
        by_kind.setdefault(d.get("kind"), {})[name] = d
    # Generated objects keep their original name for lookups by the checks below.
    def find(kind: str, name: str) -> dict | None:
        return (by_kind.get(kind) or {}).get(name)

    binary = fxflow_bin(args)
    workloads = {n: d for n, d in (by_kind.get("Deployment") or {}).items()}
    jobs = {n: d for n, d in (by_kind.get("Job") or {}).items()}
    pipelines_checked = 0
    # Pipeline files as each container sees them, for the ScaledObject checks: (Deployment, text).
    deployment_files: dict[str, list[str]] = {}
    deployment_env: dict[str, dict[str, str]] = {}
    for dname, d in list(workloads.items()) + list(jobs.items()):
        where = f"{d.get('kind')}/{dname}"
        spec = pod_spec(d) or {}
        tmpl_labels = ((d["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        sel = (d["spec"].get("selector") or {}).get("matchLabels") or {}
        if d.get("kind") == "Deployment" and any(tmpl_labels.get(k) != v for k, v in sel.items()):
            p.add(where, f"selector {sel} does not match the pod labels {tmpl_labels}")
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for kind, ref in config_refs(d):
            target = find(kind, ref["name"])
            if target is None:
                p.add(where, f"references the {kind} `{ref['name']}`, which the base does not define")
                continue
            keys = set((target.get("data") or {}).keys()) | set((target.get("stringData") or {}).keys())
            if "key" in ref and ref["key"] not in keys:
                p.add(where, f"references key `{ref['key']}` of the {kind} `{ref['name']}`, which has only {sorted(keys)}")
            for item in ref.get("items") or []:
                if item["key"] not in keys:
                    p.add(where, f"mounts key `{item['key']}` of the {kind} `{ref['name']}`, which has only {sorted(keys)}")
        every = [(c, False) for c in spec.get("containers") or []] + [(c, True) for c in spec.get("initContainers") or []]
        for c, init in every:
            cwhere = f"{where} {'init container' if init else 'container'} `{c.get('name')}`"
            ports = {pp.get("name"): pp.get("containerPort") for pp in c.get("ports") or []}
            res = c.get("resources") or {}
            if not (res.get("requests") or {}).get("memory") or not (res.get("requests") or {}).get("cpu"):
                p.add(cwhere, "has no cpu and memory requests")
            if not (res.get("limits") or {}).get("memory"):
                p.add(cwhere, "has no memory limit")
            # A worker serves probes; a Job's or an init container's one-off command does not.
            runs = (c.get("args") or [None])[0] == "run"
            for probe_name in ("livenessProbe", "readinessProbe") if runs and not init and d.get("kind") == "Deployment" else ():
                probe = c.get(probe_name)
                if not probe:
                    p.add(cwhere, f"has no {probe_name}")
                    continue
                port = (probe.get("httpGet") or {}).get("port")
                if isinstance(port, str) and port not in ports:
                    p.add(cwhere, f"{probe_name} uses the port `{port}`, which the container does not name ({sorted(k for k in ports if k)})")
                path = (probe.get("httpGet") or {}).get("path")
                want = "/health" if probe_name == "livenessProbe" else "/ready"
                if path != want:
                    p.add(cwhere, f"{probe_name} asks `{path}`, expected `{want}`")
            # Environment as the pod sees it (literal values, ConfigMap/Secret keys, envFrom).
            env: dict[str, str] = {}
            for ef in c.get("envFrom") or []:
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if key in ef:
                        t = find(kind, ef[key]["name"])
                        if t:
                            env.update(decoded(t))
            for e in c.get("env") or []:
                if "value" in e:
                    env[e["name"]] = str(e["value"])
                vf = e.get("valueFrom") or {}
                for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    if key in vf:
                        t = find(kind, vf[key]["name"])
                        if t and vf[key].get("key") in decoded(t):
                            env[e["name"]] = decoded(t)[vf[key]["key"]]
            if runs and not init and d.get("kind") == "Deployment":
                deployment_env[dname] = env
            # Pipeline files: the args name files under a mounted ConfigMap.
            mounts = {m["mountPath"]: volumes.get(m["name"]) for m in c.get("volumeMounts") or []}
            for m in c.get("volumeMounts") or []:
                if m["name"] not in volumes:
                    p.add(cwhere, f"mounts the volume `{m['name']}`, which the pod does not define")
            files = []
            for a in (c.get("args") or []) + (c.get("command") or []):
                if not a.endswith(".ron"):
                    continue
                mount_path, vol = next(((mp, v) for mp, v in mounts.items() if a.startswith(mp.rstrip("/") + "/")), (None, None))
                if vol is None or "configMap" not in vol:
                    p.add(cwhere, f"runs `{a}`, which no ConfigMap volume mounts")
                    continue
                cm = find("ConfigMap", vol["configMap"]["name"])
                key = os.path.relpath(a, mount_path)
                if cm is None:
                    continue
                if key not in (cm.get("data") or {}):
                    p.add(cwhere, f"runs `{a}`, but the ConfigMap `{vol['configMap']['name']}` has no key `{key}` ({sorted(cm.get('data') or {})})")
                    continue
                files.append((key, cm["data"][key]))
            if files:
                with tempfile.TemporaryDirectory() as tmp:
                    paths = []
                    for key, text in files:
                        path = Path(tmp) / key
                        path.write_text(text, encoding="utf-8")
                        paths.append(path)
                    # `run` runs its files in one process (their listeners must not clash); other
                    # commands (`topics create`, `migrate`) only read each file.
                    for group in [paths] if runs else [[path] for path in paths]:
                        ok, out = run_validate(binary, group, env, Path(tmp))
                        if not ok:
                            for line in out.splitlines():
                                if ": error: " in line:
                                    p.add(cwhere, "fxflow validate (with the pod's environment): " + line.replace(tmp + "/", ""))
                    pipelines_checked += len(paths)
                    for key, text in files:
                        itext, missing = fxflow_interpolate(text, env)
                        if runs and d.get("kind") == "Deployment":
                            deployment_files.setdefault(dname, []).append(itext)
                        if not runs:
                            continue
                        tel = re.search(r'telemetry\s*:\s*\(\s*address\s*:\s*"([^"]*)"', itext)
                        if tel:
                            port = listen_port(tel.group(1))
                            if not tel.group(1).startswith("0.0.0.0:"):
                                p.add(cwhere, f"{key}: telemetry listens on `{tel.group(1)}`: the kubelet's probes cannot reach it")
                            if ports.get("telemetry") != port:
                                p.add(cwhere, f"{key}: telemetry listens on {port}, but the port named `telemetry` is {ports.get('telemetry')}")
                        for m in re.finditer(r'listen\s*:\s*"([^"]*)"', itext):
                            port = listen_port(m.group(1))
                            if port not in ports.values():
                                p.add(cwhere, f"{key}: a stage listens on {port}, which the container does not declare")
    # Services and PodDisruptionBudgets select pods of a Deployment; target ports exist.
    def pods_matching(selector: dict) -> list[tuple[str, dict]]:
        out = []
        for dname, d in workloads.items():
            labels = ((d["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                out.append((dname, d))
        return out

    for sname, s in (by_kind.get("Service") or {}).items():
        sel = (s.get("spec") or {}).get("selector") or {}
        matched = pods_matching(sel)
        if not matched:
            p.add(f"Service/{sname}", f"selects {sel}, which no Deployment's pods carry")
        for port in (s.get("spec") or {}).get("ports") or []:
            tp = port.get("targetPort", port.get("port"))
            for dname, d in matched:
                named = {pp.get("name"): pp.get("containerPort") for c in containers_of(d) for pp in c.get("ports") or []}
                if isinstance(tp, str) and tp not in named:
                    p.add(f"Service/{sname}", f"targets the port `{tp}`, which Deployment/{dname} does not name")
                if isinstance(tp, int) and tp not in named.values():
                    p.add(f"Service/{sname}", f"targets port {tp}, which Deployment/{dname} does not declare")
    for pname, pdb in (by_kind.get("PodDisruptionBudget") or {}).items():
        sel = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if not pods_matching(sel):
            p.add(f"PodDisruptionBudget/{pname}", f"selects {sel}, which no Deployment's pods carry")
    check_scaled_objects(p, by_kind, custom, workloads, deployment_files, deployment_env, args.grouped)
    for grouped in args.grouped:
        if grouped not in workloads:
            p.add("deployments/k8s", f"no Deployment `{grouped}`")
            continue
        labels = ((workloads[grouped]["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not any(all(labels.get(k) == v for k, v in (((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}).items())
                   for pdb in (by_kind.get("PodDisruptionBudget") or {}).values()):
            p.add(f"Deployment/{grouped}", "is a grouped worker without a PodDisruptionBudget")
    keda = f", {len(custom)} against KEDA's schema" if custom else ""
    return p.finish(f"{len(docs) - len(custom)} objects valid against Kubernetes {version}{keda}, {len(workloads)} Deployments, {len(jobs)} Jobs, {pipelines_checked} pipeline files validated")


def kafka_sources(text: str) -> list[tuple[str | None, list[str]]]:
    """(group, topics) of every KafkaSource in an interpolated pipeline file."""
    out = []
    for m in re.finditer(r'KafkaSource\s*\((.*?)\n\s*\)', text, re.S):
        body = m.group(1)
        group = re.search(r'\bgroup\s*:\s*"([^"]+)"', body)
        topics = re.search(r'topics\s*:\s*\[([^\]]*)\]', body)
        out.append((group.group(1) if group else None, re.findall(r'"([^"]+)"', topics.group(1)) if topics else []))
    return out


def check_scaled_objects(p: Problems, by_kind: dict, custom: list[dict], workloads: dict,
                         files: dict[str, list[str]], envs: dict[str, dict[str, str]], grouped: list[str]) -> None:
    """KEDA's objects against KEDA's schema (@kubernetes-models/keda, run by node), and each
    ScaledObject against the Deployment it scales: every Kafka trigger names a group and topic
    that Deployment's pipeline reads, the broker variable exists in its environment, and
    maxReplicaCount is at most the partitions the group reads (more members would idle)."""
    if not custom:
        return
    validator = HERE / "scripts" / "crd-check" / "validate.mjs"
    if not (validator.parent / "node_modules").is_dir() or not shutil.which("node"):
        die("KEDA's schema is missing: node and `npm ci` in scripts/crd-check (scripts/test.sh installs both)")
    r = subprocess.run(["node", str(validator)], input=json.dumps(custom), capture_output=True, text=True, cwd=validator.parent)
    for line in r.stdout.splitlines():
        e = json.loads(line)
        p.add(f"{e['kind']}/{e['name']}", f"KEDA schema: {e['path']}: {e['message']}")
    if r.returncode not in (0, 1) and not r.stdout:
        p.add("scripts/crd-check", f"the schema check failed: {r.stderr.strip()}")
    scaled = by_kind.get("ScaledObject") or {}
    for sname, so in scaled.items():
        where = f"ScaledObject/{sname}"
        spec = so.get("spec") or {}
        target = (spec.get("scaleTargetRef") or {}).get("name")
        if target not in workloads:
            p.add(where, f"scales `{target}`, which is no Deployment of the base")
            continue
        sources = [src for text in files.get(target, []) for src in kafka_sources(text)]
        declared: dict[str, int] = {}
        for text in files.get(target, []):
            declared.update(pipeline_topics(text)[0])
        most = 0
        for i, trigger in enumerate(spec.get("triggers") or []):
            if trigger.get("type") != "kafka":
                continue
            md = trigger.get("metadata") or {}
            group, topic = md.get("consumerGroup"), md.get("topic")
            if not any(g == group and topic in topics for g, topics in sources):
                p.add(where, f"trigger {i}: Deployment/{target} has no KafkaSource in group `{group}` reading `{topic}` "
                             f"(it reads {sorted({(g, t) for g, ts in sources for t in ts}, key=str)})")
            if topic in declared:
                most = max(most, declared[topic])
            else:
                p.add(where, f"trigger {i}: the topic `{topic}` is not declared in Deployment/{target}'s pipeline, so its partitions are unknown")
            var = md.get("bootstrapServersFromEnv")
            if var and var not in envs.get(target, {}):
                p.add(where, f"trigger {i}: bootstrapServersFromEnv `{var}` is not in Deployment/{target}'s environment")
        maximum = spec.get("maxReplicaCount")
        if most and isinstance(maximum, int) and maximum > most:
            p.add(where, f"maxReplicaCount {maximum} is more than the {most} partitions its group reads: the extra replicas would idle")
    for name in grouped:
        if name in workloads and not any(((so.get("spec") or {}).get("scaleTargetRef") or {}).get("name") == name for so in scaled.values()):
            p.add(f"Deployment/{name}", "is a grouped worker without a ScaledObject")


def decoded(obj: dict) -> dict:
    import base64

    out = dict(obj.get("stringData") or {}) if obj.get("kind") == "Secret" else {}
    for k, v in (obj.get("data") or {}).items():
        out[k] = base64.b64decode(v).decode() if obj.get("kind") == "Secret" else str(v)
    return out


# ------------------------------------------------------------------------------------ kibana


class _TemplateCatcher(http.server.BaseHTTPRequestHandler):
    """Enough of Elasticsearch for the sink's start: it records every index template PUT."""

    templates: dict = {}

    def _reply(self, body: bytes = b"{}", status: int = 200):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_PUT(self):
        body = self._body()
        m = re.match(r"^/_index_template/([^/?]+)", self.path)
        if m:
            self.templates[urllib.parse.unquote(m.group(1))] = json.loads(body or b"{}")
        self._reply(b'{"acknowledged":true}')

    def do_POST(self):
        self._body()
        self._reply(b'{"took":0,"errors":false,"items":[]}')

    def do_GET(self):
        self._reply(b'{"version":{"number":"8.19.0"},"tagline":"You Know, for Search"}')

    def do_HEAD(self):
        self._reply(b"")

    def log_message(self, *args):
        pass


def sink_templates(args, root: Path) -> dict:
    """The index templates the `Elasticsearch` sink installs: from --templates, from
    `fxflow index-templates` when the binary has it, or caught from the index worker itself
    (pipelines/index.ron started against a stand-in that records the template requests)."""
    if getattr(args, "templates", None):
        return json.loads((root / args.templates).read_text(encoding="utf-8"))
    binary = fxflow_bin(args)
    r = subprocess.run([str(binary), "index-templates", str(root / "pipelines/index.ron")], capture_output=True, text=True)
    if r.returncode == 0 and r.stdout.strip().startswith("{"):
        return json.loads(r.stdout)
    handler = type("Catcher", (_TemplateCatcher,), {"templates": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"PATH": os.environ.get("PATH", ""), "NO_COLOR": "1", "RUST_LOG": "error",
           "ELASTICSEARCH_URL": f"http://127.0.0.1:{server.server_address[1]}",
           # Nothing listens here: the Kafka source only retries, the sink's start is what we watch.
           "KAFKA_BROKERS": f"127.0.0.1:{free_port()}", "FXFLOW_TELEMETRY": f"127.0.0.1:{free_port()}"}
    proc = subprocess.Popen([str(binary), "run", str(root / "pipelines/index.ron")], env=env, cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and proc.poll() is None:
            if len(handler.templates) >= 2:
                time.sleep(0.3)
                break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.shutdown()
    if not handler.templates:
        err = proc.stderr.read() if proc.stderr else ""
        die(f"the index worker installed no index template within 30 s:\n{err}")
    return dict(handler.templates)


def template_fields(template: dict) -> dict[str, str]:
    props = ((template.get("template") or {}).get("mappings") or {}).get("properties") or {}
    out = {}

    def walk(prefix, props):
        for k, v in props.items():
            out[prefix + k] = v.get("type", "object")
            if "properties" in v:
                walk(prefix + k + ".", v["properties"])

    walk("", props)
    return out


def fields_for_index(title: str, templates: dict) -> tuple[str | None, dict | None]:
    import fnmatch

    for name, t in templates.items():
        for pattern in t.get("index_patterns") or []:
            if title == pattern or fnmatch.fnmatch(title, pattern):
                return name, template_fields(t)
    return None, None


KNOWN_TYPES = {"index-pattern", "lens", "dashboard", "visualization", "search", "tag", "map", "config"}
NUMBER = {"double", "float", "half_float", "scaled_float", "long", "integer", "short", "byte", "unsigned_long"}
OPERATION_TYPES = {
    "date_histogram": {"date", "date_nanos"},
    "average": NUMBER, "sum": NUMBER, "min": NUMBER | {"date"}, "max": NUMBER | {"date"}, "median": NUMBER,
    "standard_deviation": NUMBER, "percentile": NUMBER, "range": NUMBER,
    "terms": {"keyword", "ip", "boolean"} | NUMBER,
    "unique_count": None, "last_value": None, "count": None,
}


def check_kibana(args) -> int:
    root = Path(args.root).resolve()
    file = (root / args.file).resolve()
    p = Problems("kibana")
    name = rel(root, file)
    templates = sink_templates(args, root)
    pending_file = (root / args.pending).resolve()
    pending = {}
    if pending_file.is_file():
        pending = {k: v for k, v in json.loads(pending_file.read_text()).items() if not k.startswith("_")}
    for index, entry in pending.items():
        if fields_for_index(index, templates)[0]:
            p.add(rel(root, pending_file), f"`{index}` is pending, but the sink now installs a template for it: remove it from this file")
    objects: dict[tuple[str, str], dict] = {}
    lines = file.read_text(encoding="utf-8").splitlines() if file.is_file() else []
    if not lines:
        p.add(name, "no saved objects")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            o = json.loads(line)
        except json.JSONDecodeError as e:
            p.add(f"{name}:{n}", f"not JSON: {e}")
            continue
        for k in ("id", "type", "attributes"):
            if k not in o:
                p.add(f"{name}:{n}", f"saved object without `{k}`")
        if o.get("type") not in KNOWN_TYPES:
            p.add(f"{name}:{n}", f"unknown saved object type `{o.get('type')}`")
        key = (o.get("type"), o.get("id"))
        if key in objects:
            p.add(f"{name}:{n}", f"duplicate {key[0]} id `{key[1]}`")
        o["_line"] = n
        objects[key] = o
    # References resolve inside the file.
    for (t, i), o in objects.items():
        for r in o.get("references") or []:
            if (r.get("type"), r.get("id")) not in objects:
                p.add(f"{name}:{o['_line']}", f"{t} `{i}` references {r.get('type')} `{r.get('id')}` ({r.get('name')}), which is not in the file")
    # Data views: their index has a template (the sink's, or a pending declaration).
    views: dict[str, tuple[str, dict]] = {}
    pending_used = set()
    for (t, i), o in objects.items():
        if t != "index-pattern":
            continue
        title = o["attributes"].get("title", "")
        tname, fields = fields_for_index(title, templates)
        source = f"the sink's template `{tname}`"
        if fields is None and title in pending:
            fields = template_fields(pending[title]["template"])
            source = f"the pending mapping of `{title}` ({rel(root, pending_file)})"
            pending_used.add(title)
            p.note(f"PENDING: data view `{i}` on `{title}` waits for {pending[title].get('waiting_for')}; its fields are checked against {rel(root, pending_file)}")
        if fields is None:
            p.add(f"{name}:{o['_line']}", f"data view `{i}` is on `{title}`, for which the Elasticsearch sink installs no index template (templates: {', '.join(sorted(templates))})")
            continue
        tf = o["attributes"].get("timeFieldName")
        if tf and fields.get(tf) not in ("date", "date_nanos"):
            p.add(f"{name}:{o['_line']}", f"data view `{i}`: time field `{tf}` is {fields.get(tf) and 'a ' + fields[tf] or 'not a field'} in {source}")
        views[i] = (source, fields)
    # Lens: every layer's data view, every column's field and type, every accessor.
    lens_ids = set()
    for (t, i), o in objects.items():
        if t != "lens":
            continue
        lens_ids.add(i)
        where = f"{name}:{o['_line']}: lens `{i}`"
        state = o["attributes"].get("state") or {}
        refs = {r["name"]: r for r in o.get("references") or []}
        layers = ((state.get("datasourceStates") or {}).get("formBased") or {}).get("layers") or {}
        if not layers:
            p.add(where, "has no formBased layer")
        columns_all = set()
        for lid, layer in layers.items():
            cols = layer.get("columns") or {}
            columns_all |= set(cols)
            ref = refs.get(f"indexpattern-datasource-layer-{lid}")
            if ref is None:
                p.add(where, f"layer `{lid}` has no data view reference")
                continue
            view = views.get(ref["id"])
            for cid in layer.get("columnOrder") or []:
                if cid not in cols:
                    p.add(where, f"layer `{lid}`: columnOrder names `{cid}`, which is not a column")
            for cid, col in cols.items():
                field = col.get("sourceField")
                op = col.get("operationType")
                if field in (None, "___records___"):
                    continue
                if view is None:
                    continue
                source, fields = view
                if field not in fields:
                    p.add(where, f"column `{cid}` ({op}) uses the field `{field}`, which {source} does not map (fields: {', '.join(sorted(fields))})")
                    continue
                allowed = OPERATION_TYPES.get(op)
                if allowed and fields[field] not in allowed:
                    p.add(where, f"column `{cid}`: {op} of `{field}`, which is a {fields[field]} in {source}")
                sort = (col.get("params") or {}).get("sortField")
                if sort and sort not in fields:
                    p.add(where, f"column `{cid}` sorts by `{sort}`, which {source} does not map")
                order = (col.get("params") or {}).get("orderBy") or {}
                if order.get("type") == "column" and order.get("columnId") not in cols:
                    p.add(where, f"column `{cid}` is ordered by the column `{order.get('columnId')}`, which is not in its layer")
        vis = state.get("visualization") or {}
        for acc in accessors(vis):
            if acc not in columns_all:
                p.add(where, f"the visualization shows `{acc}`, which no layer defines")
    # Dashboards: every panel's reference; auto-refresh.
    dashboards = 0
    for (t, i), o in objects.items():
        if t != "dashboard":
            continue
        dashboards += 1
        where = f"{name}:{o['_line']}: dashboard `{i}`"
        a = o["attributes"]
        try:
            panels = json.loads(a.get("panelsJSON") or "[]")
        except json.JSONDecodeError as e:
            p.add(where, f"panelsJSON is not JSON: {e}")
            panels = []
        refs = {r["name"]: r for r in o.get("references") or []}
        for panel in panels:
            pref = panel.get("panelRefName")
            if pref is None:
                continue
            r = refs.get(f"{panel.get('panelIndex')}:{pref}") or refs.get(pref)
            if r is None:
                p.add(where, f"panel `{panel.get('panelIndex')}` names the reference `{pref}`, which the dashboard does not have")
        ri = a.get("refreshInterval") or {}
        if ri.get("pause", True) or ri.get("value") != args.refresh_ms:
            p.add(where, f"auto-refresh is {ri}, expected every {args.refresh_ms // 1000} s, not paused")
    if dashboards == 0:
        p.add(name, "no dashboard")
    for index in set(pending) - pending_used:
        p.note(f"{rel(root, pending_file)}: `{index}` is declared pending but no data view uses it")
    return p.finish(f"{len(objects)} saved objects ({len(lens_ids)} Lens, {dashboards} dashboard); fields checked against the sink's templates {', '.join(sorted(templates))}"
                    + (f" and the pending {', '.join(sorted(pending_used))}" if pending_used else ""))


def accessors(vis: dict) -> list[str]:
    out = []
    for k in ("metricAccessor", "breakdownByAccessor", "maxAccessor", "secondaryMetricAccessor", "xAccessor", "splitAccessor"):
        if vis.get(k):
            out.append(vis[k])
    for c in vis.get("columns") or []:
        if isinstance(c, dict) and c.get("columnId"):
            out.append(c["columnId"])
    for layer in vis.get("layers") or []:
        out.extend(accessors({k: v for k, v in layer.items() if k != "layers"}))
        for k in ("accessors", "primaryGroups", "secondaryGroups", "metrics"):
            out.extend(layer.get(k) or [])
    return out


# ------------------------------------------------------------------------------------ PromQL

PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless", "atan2",
    "inf", "nan", "start", "end", "le", "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk",
    "quantile", "count_values", "group", "limitk", "limit_ratio",
}


def promql_metrics(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (a tokenizer, not a parser: strings, label
    matchers, ranges, grouping clauses, functions and keywords removed)."""
    e = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    e = re.sub(r"\$\{[^}]*\}|\$\w+", "1", e)  # Grafana variables
    names = set()
    for m in re.finditer(r"\{([^}]*)\}", e):
        n = re.search(r"__name__\s*=\s*\"([^\"]*)\"", m.group(1))
        if n:
            names.add(n.group(1))
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word) or re.fullmatch(r"[eE]\d*", word):
            continue
        names.add(word)
    return names


def code_metrics(root: Path) -> set[str]:
    """Metric names the Rust code defines (`"fxflow_..."` string constants)."""
    names = set()
    for path in list((root / "engine" / "src").rglob("*.rs")) + list((root / "stages" / "src").rglob("*.rs")):
        for m in re.finditer(r'"(fxflow_[a-z0-9_]+)"', path.read_text(encoding="utf-8")):
            names.add(m.group(1))
    return names


def expand_histograms(names: set[str], histograms: set[str]) -> set[str]:
    out = set(names)
    for h in histograms:
        out |= {h + "_bucket", h + "_sum", h + "_count"}
    return out


def scrape_names(text: str) -> tuple[set[str], set[str]]:
    names, histograms = set(), set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4 and parts[3] in ("histogram", "summary"):
                histograms.add(parts[2])
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)", line)
        if m:
            names.add(m.group(1))
    for n in list(names):
        for suffix in ("_bucket", "_sum", "_count"):
            if n.endswith(suffix):
                histograms.add(n[: -len(suffix)])
    return names, histograms


PROMETHEUS_SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"}


# ------------------------------------------------------------------------------------ prometheus


def need_tool(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        die(f"{tool} is missing: apt-get install -y prometheus (Debian's package ships promtool and the server)")
    return path


def rule_exprs(rules_file: Path) -> list[tuple[str, str]]:
    doc = load_yaml_docs(rules_file)[0] or {}
    out = []
    for g in doc.get("groups") or []:
        for r in g.get("rules") or []:
            out.append((r.get("alert") or r.get("record") or "?", r.get("expr", "")))
    return out


def check_prometheus(args) -> int:
    root = Path(args.root).resolve()
    p = Problems("prometheus")
    promtool = need_tool("promtool")
    rules = [(root / r).resolve() for r in args.rules]
    compose = (root / args.compose).resolve()
    for rf in rules:
        r = subprocess.run([promtool, "check", "rules", str(rf)], capture_output=True, text=True)
        if r.returncode != 0:
            p.add(rel(root, rf), "promtool check rules: " + (r.stdout + r.stderr).strip().replace("\n", " | "))
    # Configs: rule_files are resolved as Prometheus would see them (the compose mounts for the
    # compose config, relative to the file for the local one), in a copy promtool can read.
    for cfg in [c for c in (args.config, args.local_config) if c]:
        cfg_path = (root / cfg).resolve()
        if not cfg_path.is_file():
            p.add(cfg, "no such file")
            continue
        doc = load_yaml_docs(cfg_path)[0] or {}
        mapped = []
        prom_service = None
        if compose.is_file():
            need_yaml()
            cdoc = load_yaml_docs(compose)[0] or {}
            prom_service = (cdoc.get("services") or {}).get("prometheus")
        for rf in doc.get("rule_files") or []:
            if rf.startswith("/"):
                host = host_path_of(prom_service or {}, rf, compose.parent) if prom_service else None
                if host is None:
                    p.add(rel(root, cfg_path), f"rule_files `{rf}` is not mounted into the prometheus service of {rel(root, compose)}")
                    continue
            else:
                host = (cfg_path.parent / rf).resolve()
            matches = sorted(host.parent.glob(host.name)) if "*" in host.name else ([host] if host.exists() else [])
            if not matches:
                p.add(rel(root, cfg_path), f"rule_files `{rf}` matches no file ({rel(root, host)})")
            mapped.extend(str(m) for m in matches)
        with tempfile.TemporaryDirectory() as tmp:
            copy = dict(doc)
            copy["rule_files"] = mapped
            tmpcfg = Path(tmp) / "prometheus.yml"
            tmpcfg.write_text(yaml.safe_dump(copy), encoding="utf-8")
            r = subprocess.run([promtool, "check", "config", str(tmpcfg)], capture_output=True, text=True)
            if r.returncode != 0:
                p.add(rel(root, cfg_path), "promtool check config: " + (r.stdout + r.stderr).strip().replace(tmp + "/", "").replace("\n", " | "))
    # Every metric a rule names is one the code exports (or Prometheus' own `up`).
    known = code_metrics(root)
    histos = {n for n in known if n.endswith("_seconds")}
    known = expand_histograms(known, histos) | PROMETHEUS_SYNTHETIC
    n_exprs = 0
    for rf in rules:
        if not rf.is_file():
            p.add(rel(root, rf), "no such file")
            continue
        for alert, expr in rule_exprs(rf):
            n_exprs += 1
            for metric in sorted(promql_metrics(expr) - known):
                p.add(f"{rel(root, rf)}: {alert}", f"uses the metric `{metric}`, which the code does not export")
    if p.items or not args.live_target:
        return p.finish(f"{len(rules)} rule file(s), {n_exprs} expressions; configs {', '.join(c for c in (args.config, args.local_config) if c)} pass promtool")
    # Live: a real Prometheus scraping the running worker; every rule expression evaluated.
    prometheus = need_tool("prometheus")
    local_doc = load_yaml_docs((root / args.local_config).resolve())[0]
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        cfg = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(r) for r in rules],
            "scrape_configs": [{"job_name": (local_doc.get("scrape_configs") or [{}])[0].get("job_name", "fxflow"),
                                "static_configs": [{"targets": args.live_target, "labels": {"worker": "check"}}]}],
        }
        cfgfile = Path(tmp) / "prometheus.yml"
        cfgfile.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        log = open(Path(tmp) / "prometheus.log", "w")
        proc = subprocess.Popen([prometheus, f"--config.file={cfgfile}", f"--storage.tsdb.path={tmp}/data",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
        api = f"http://127.0.0.1:{port}/api/v1"
        try:
            deadline = time.time() + args.live_timeout
            samples = []
            while time.time() < deadline:
                if proc.poll() is not None:
                    break
                with contextlib.suppress(OSError, ValueError):
                    status, body = http_get(f"{api}/query?query=" + urllib.parse.quote("fxflow_stage_received_events_total"))
                    if status == 200:
                        samples = json.loads(body)["data"]["result"]
                        if samples:
                            break
                time.sleep(0.5)
            if not samples:
                log.flush()
                p.add("live", f"Prometheus (pid {proc.pid}) returned no sample of fxflow_stage_received_events_total from {args.live_target} within {args.live_timeout} s; its log:\n"
                      + (Path(tmp) / "prometheus.log").read_text()[-2000:])
                return p.finish("")
            print(f"live: Prometheus on 127.0.0.1:{port} scraped {', '.join(args.live_target)}: "
                  f"fxflow_stage_received_events_total has {len(samples)} series")
            for rf in rules:
                for alert, expr in rule_exprs(rf):
                    status, body = http_get(f"{api}/query?query=" + urllib.parse.quote(expr))
                    try:
                        answer = json.loads(body)
                    except json.JSONDecodeError:
                        answer = {"status": "error", "error": body[:200]}
                    if status != 200 or answer.get("status") != "success":
                        p.add(f"{rel(root, rf)}: {alert}", f"Prometheus cannot evaluate the expression: {answer.get('errorType', '')} {answer.get('error', body[:200])}")
            # The rules file is loaded by the server too.
            status, body = http_get(f"{api}/rules")
            loaded = sum(len(g.get("rules", [])) for g in json.loads(body)["data"]["groups"]) if status == 200 else 0
            if loaded != n_exprs:
                p.add("live", f"Prometheus loaded {loaded} rules, the files hold {n_exprs}")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
    return p.finish(f"{n_exprs} rule expressions evaluated by a live Prometheus scraping {', '.join(args.live_target)}")


# ------------------------------------------------------------------------------------ grafana


def dashboard_exprs(dash: dict) -> list[tuple[str, str]]:
    out = []

    def walk(panels):
        for panel in panels or []:
            for t in panel.get("targets") or []:
                if t.get("expr"):
                    out.append((f"panel {panel.get('id')} `{panel.get('title')}` target {t.get('refId')}", t["expr"]))
            walk(panel.get("panels"))

    walk(dash.get("panels"))
    for v in (dash.get("templating") or {}).get("list") or []:
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("type") == "query" and isinstance(q, str):
            m = re.match(r"\s*label_values\(\s*([^,)]+)", q)
            if m:
                out.append((f"variable `{v.get('name')}`", m.group(1)))
            elif not q.startswith(("label_names", "metrics(")):
                out.append((f"variable `{v.get('name')}`", q))
    return out


def check_grafana(args) -> int:
    root = Path(args.root).resolve()
    file = (root / args.file).resolve()
    p = Problems("grafana")
    name = rel(root, file)
    try:
        dash = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        p.add(name, f"cannot read the dashboard: {e}")
        return p.finish("")
    # Panels: unique ids, a grid position, a data source the provisioning defines (or the variable).
    prov = (root / args.provisioning).resolve()
    uids = set()
    for f in sorted((prov / "datasources").glob("*.y*ml")) if prov.is_dir() else []:
        for ds in (load_yaml_docs(f)[0] or {}).get("datasources") or []:
            uids.add(ds.get("uid"))
    variables = {v.get("name") for v in (dash.get("templating") or {}).get("list") or []}
    ids = set()

    def walk(panels):
        for panel in panels or []:
            if panel.get("id") in ids:
                p.add(name, f"two panels have the id {panel.get('id')}")
            ids.add(panel.get("id"))
            if "gridPos" not in panel:
                p.add(name, f"panel `{panel.get('title')}` has no gridPos")
            ds = panel.get("datasource")
            if isinstance(ds, dict) and ds.get("uid"):
                uid = ds["uid"]
                var = re.fullmatch(r"\$\{?(\w+)\}?", uid)
                if var and var.group(1) not in variables:
                    p.add(name, f"panel `{panel.get('title')}` uses the variable ${var.group(1)}, which the dashboard does not define")
                elif not var and uids and uid not in uids:
                    p.add(name, f"panel `{panel.get('title')}` uses the data source `{uid}`, which {rel(root, prov)} does not provision ({sorted(uids)})")
            walk(panel.get("panels"))

    walk(dash.get("panels"))
    for v in (dash.get("templating") or {}).get("list") or []:
        if v.get("type") == "datasource":
            cur = (v.get("current") or {}).get("value")
            if cur and uids and cur not in uids:
                p.add(name, f"variable `{v.get('name')}` defaults to the data source `{cur}`, which is not provisioned ({sorted(uids)})")
    # Metric names: against the code, and against every live /metrics given.
    known = code_metrics(root)
    known = expand_histograms(known, {n for n in known if n.endswith("_seconds")}) | PROMETHEUS_SYNTHETIC
    live_names: set[str] = set()
    live_hist: set[str] = set()
    for url in args.metrics_url:
        try:
            status, body = http_get(url)
        except OSError as e:
            p.add("live", f"cannot fetch {url}: {e}")
            continue
        if status != 200:
            p.add("live", f"{url} answered {status}")
            continue
        n, h = scrape_names(body)
        live_names |= n
        live_hist |= h
    live = expand_histograms(live_names, live_hist) | live_hist | PROMETHEUS_SYNTHETIC
    exprs = dashboard_exprs(dash)
    if not exprs:
        p.add(name, "no PromQL expression")
    for where, expr in exprs:
        metrics = promql_metrics(expr)
        if not metrics:
            p.add(f"{name}: {where}", f"names no metric: `{expr}`")
        for m in sorted(metrics):
            if m not in known:
                p.add(f"{name}: {where}", f"uses the metric `{m}`, which the code does not export")
            elif args.metrics_url and m not in live:
                p.add(f"{name}: {where}", f"uses the metric `{m}`, which no live /metrics shows ({', '.join(args.metrics_url)})")
    return p.finish(f"{len(exprs)} expressions in {len(ids)} panels name only exported metrics"
                    + (f", all seen live on {', '.join(args.metrics_url)}" if args.metrics_url else " (static: pass --metrics-url for the live check)"))


# ------------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(HERE), help="repository root the paths are relative to")
    ap.add_argument("--fxflow", help="the fxflow binary (default $FXFLOW_BIN or target/debug/fxflow)")
    sub = ap.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compose", help="compose.yaml: schema, references, ports, volumes, pipelines")
    c.add_argument("--file", default="deployments/compose.yaml")
    c.add_argument("--env-file", default="deployments/.env.example")

    k = sub.add_parser("k8s", help="the kustomize base: schemas, references, pipelines")
    k.add_argument("--dir", default="deployments/k8s")
    k.add_argument("--k8s-version", default=None, help="Kubernetes schema version (default: the newest kubernetes-validate ships)")
    k.add_argument("--kustomize", default=shutil.which("kustomize"),
                   help="a kustomize binary: check its `build` output as well (default: kustomize on PATH, if any)")
    k.add_argument("--grouped", nargs="*", default=["process", "alerts", "store", "index"],
                   help="Deployments that form consumer groups and need a PodDisruptionBudget")

    kb = sub.add_parser("kibana", help="fx.ndjson: parse, types, references, fields against the sink's templates")
    kb.add_argument("--file", default="dashboards/kibana/fx.ndjson")
    kb.add_argument("--templates", help="a JSON file {name: template} instead of asking the sink")
    kb.add_argument("--pending", default="dashboards/kibana/pending-indices.json")
    kb.add_argument("--refresh-ms", type=int, default=30000)

    t = sub.add_parser("templates", help="print the index templates the Elasticsearch sink installs")
    t.add_argument("--templates", help=argparse.SUPPRESS)

    pr = sub.add_parser("prometheus", help="promtool check config/rules; metric names; --live-target: a real Prometheus")
    pr.add_argument("--config", default="deployments/prometheus.yml")
    pr.add_argument("--local-config", default="deployments/prometheus-local.yml")
    pr.add_argument("--compose", default="deployments/compose.yaml")
    pr.add_argument("--rules", nargs="+", default=["dashboards/prometheus/fxflow-rules.yml"])
    pr.add_argument("--live-target", action="append", default=[], metavar="HOST:PORT",
                    help="a running worker's telemetry address: start Prometheus scraping it and evaluate every rule")
    pr.add_argument("--live-timeout", type=float, default=60)

    g = sub.add_parser("grafana", help="fxflow.json: data sources, panels, metric names (live with --metrics-url)")
    g.add_argument("--file", default="dashboards/grafana/fxflow.json")
    g.add_argument("--provisioning", default="deployments/grafana/provisioning")
    g.add_argument("--metrics-url", action="append", default=[], metavar="URL",
                   help="a live /metrics; repeat for several workers (names are checked against their union)")

    sub.add_parser("all", help="every static check")
    args = ap.parse_args(argv)

    if args.command == "templates":
        print(json.dumps(sink_templates(args, Path(args.root).resolve()), indent=2, sort_keys=True))
        return 0
    if args.command == "all":
        rc = 0
        for cmd in (["compose"], ["k8s"], ["k8s", "--dir", "deployments/k8s/keda"], ["kibana"], ["prometheus"], ["grafana"]):
            extra = ["--root", args.root] + (["--fxflow", args.fxflow] if args.fxflow else [])
            rc |= main(extra + cmd)
        return rc
    need_yaml()
    return {"compose": check_compose, "k8s": check_k8s, "kibana": check_kibana,
            "prometheus": check_prometheus, "grafana": check_grafana}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
