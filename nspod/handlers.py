"""The handlers of the pod and member verbs: parsed options in, one call into
the library, output through render. Each imports what it needs when it runs,
so that building the verb tables costs nothing (join's start-up).
"""

from __future__ import annotations

import os
import sys

from nspod.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nspod.args import Parsed
    from nspod.security import SecurityOpts
    from nspod.store import PodRecord, Store

DEFAULT_ROOT = "/run/nspod"


def state_root(root: str | None) -> str:
    """The state root: --root, else $NSPOD_ROOT, else DEFAULT_ROOT."""
    return root or os.environ.get("NSPOD_ROOT") or DEFAULT_ROOT


def _store(root: str | None) -> Store:
    from nspod.store import Store

    return Store(state_root(root))


def _security(a: Parsed) -> SecurityOpts:
    from nspod.security import SecurityOpts

    return SecurityOpts(tuple(a.cap_add), tuple(a.cap_drop), a.privileged)


def _seccomp(a: Parsed) -> str | None:
    """The last --security-opt seccomp=... given, or None (the pod's, or the default)."""
    return a.security_opt[-1] if a.security_opt else None


def _each(a: Parsed, root: str | None, fn: Any) -> int:
    """fn(store, name) for each POD given, printing each name once done.

    One pod's failure is said and the rest still done (`rm -f a nosuch b`
    removes b); the exit code is the first failure's.
    """
    from nspod.errors import NspodError

    store = _store(root)
    code = 0
    for name in a.pod:
        try:
            fn(store, name)
        except NspodError as e:
            if len(a.pod) == 1:
                raise
            print(f"nspod: {e}", file=sys.stderr)
            code = code or e.code
            continue
        print(name)
    return code


def cmd_create(a: Parsed, root: str | None) -> int:
    from nspod import pod
    from nspod.limits import Limits

    spec = pod.CreateSpec(
        name=a.name, hostname=a.hostname, net=a.net, ip=a.ip, ports=tuple(a.publish),
        dns=tuple(a.dns), add_hosts=tuple(a.add_host),
        limits=Limits(memory=a.memory, pids=a.pids, cpus=a.cpus), security=_security(a),
        rootfs=a.rootfs, volumes=tuple(a.volume), read_only=a.read_only,
        seccomp=_seccomp(a), shm_size=a.shm_size,
    )
    store = _store(root)
    if a.image is None:
        print(pod.create(store, spec).name)
        return 0
    from nspod import image

    if a.rootfs:
        raise UsageError("create: --image and --rootfs do not go together")
    images = image.ImageStore()
    spec.image = image.ensure(images, a.image, image.check_policy(a.pull)).id
    spec.name = spec.name or pod.generate_name(store)
    with images.hold(spec.image, store.pod_dir(spec.name)):  # image rm waits, then sees it
        print(pod.create(store, spec).name)
    return 0


def cmd_join(a: Parsed, root: str | None) -> int:
    from nspod import member

    if a.interactive and not a.tty:
        raise UsageError("join: -i needs -t (without -t, stdin is always passed)")
    if a.detach and a.tty:
        raise UsageError("join: -d and -t do not go together")
    if a.command and not a.command[0]:
        raise UsageError('join: command "": must not be empty')
    from nspod.lifecycle_cli import join_extras

    spec = member.JoinSpec(pod=a.pod, argv=a.command, env=dict(a.env), cwd=a.workdir,
                           detach=a.detach, name=a.name, tty=a.tty, interactive=a.interactive,
                           security=_security(a), user=a.user, rootfs=a.rootfs,
                           volumes=tuple(a.volume), read_only=a.read_only,
                           mix_roots=a.mix_roots,
                           seccomp=_seccomp(a), image=a.image, pull=a.pull,
                           **join_extras(a))
    if a.image and a.rootfs:
        raise UsageError("join: --image and --rootfs do not go together")
    name, code = member.join(state_root(root), spec)
    if a.detach:
        print(name)
    return code


def cmd_ps(a: Parsed, root: str | None) -> int:
    from nspod import memberctl, render

    members = memberctl.ps(state_root(root), a.pod)
    if a.json:
        print(render.to_json(members))
        return 0
    rows = [("NAME", "PID", "POD PID", "STATE", "RESTARTS", "STARTED", "FINISHED", "COMMAND")]
    for m in members:
        state = m["state"]
        if m.get("health") and state == "running":
            state += f" ({m['health']})"
        rows.append((m["name"], str(m["pid"]), str(m["pod_pid"]), state, str(m["restarts"]),
                     render.clock(m["started"]), render.clock(m["finished"]),
                     " ".join(m["command"])))
    print(render.table(rows))
    return 0


def cmd_logs(a: Parsed, root: str | None) -> int:
    from nspod import logread

    def out(stream: str, data: bytes) -> None:
        f = sys.stderr if stream == "stderr" else sys.stdout
        f.flush()
        os.write(f.fileno(), data)

    logread.logs(state_root(root), a.pod, a.name, a.follow, a.tail, a.timestamps, out, a.since)
    return 0


def cmd_start(a: Parsed, root: str | None) -> int:
    from nspod.lifecycle_cli import start

    return start(a, _store(root))


def cmd_restart(a: Parsed, root: str | None) -> int:
    from nspod import gc, pod

    def restart(store: Store, name: str) -> None:
        if gc.get(store, name).state == "running":
            pod.stop_pod(store, name, a.time)
        pod.start_pod(store, name)

    return _each(a, root, restart)


def cmd_stop(a: Parsed, root: str | None) -> int:
    from nspod import pod

    return _each(a, root, lambda store, name: pod.stop_pod(store, name, a.time))


def cmd_rm(a: Parsed, root: str | None) -> int:
    from nspod import pod

    return _each(a, root, lambda store, name: pod.remove_pod(store, name, a.force, a.time))


def cmd_kill(a: Parsed, root: str | None) -> int:
    if a.name is not None:
        from nspod import memberctl

        memberctl.kill_member(state_root(root), a.pod, a.name, a.signal)
    else:
        from nspod import pod

        pod.kill_pod(_store(root), a.pod, a.signal)
    return 0


def cmd_gc(a: Parsed, root: str | None) -> int:
    from nspod import gc
    from nspod.errors import NspodError

    removed, kept = gc.gc(_store(root))
    for name in removed:
        print(name)
    if kept:  # kept `releasing`: the next gc frees them once the fault is gone
        raise NspodError(f"gc: kept {len(kept)}: {'; '.join(kept)}")
    return 0


def _seccomp_in_force(spec: dict[str, Any]) -> str:
    """"default", "unconfined" or the profile's path: what a plain join runs under."""
    from nspod import seccomp

    return seccomp.choose(spec.get("seccomp"), None, bool(spec.get("privileged")))


def _view(store: Store, rec: PodRecord) -> dict[str, Any]:
    """What inspect and ls --json show of a pod."""
    from nspod import render
    from nspod.poddir import cgroup_dirs
    from nspod.security import SecurityOpts
    from nspod.syscalls import NS_KINDS

    nsdir = os.path.join(store.nsroot, rec.name)  # the pins (pins.py)
    running = rec.state == "running"
    return {
        "name": rec.name,
        "state": rec.state,
        "pid": rec.pid if running else 0,
        "hostname": rec.hostname,
        "created": render.iso(rec.created),
        "finished": render.iso(rec.finished) if rec.finished else None,
        "namespaces": {
            # pinned ones by their pin, the others as pause holds them
            kind: p if os.path.exists(p := os.path.join(nsdir, kind))
            else f"/proc/{rec.pid}/ns/{kind}"
            for kind in NS_KINDS
            if running and (kind != "net" or rec.spec.get("net") != "host")
        },
        "net": rec.spec.get("net", "none"),
        **rec.net,
        "limits": {k: rec.spec.get(k) for k in ("memory", "pids", "cpus", "shm_size")},
        "security": {**SecurityOpts.from_spec(rec.spec).to_spec(),
                     "seccomp": _seccomp_in_force(rec.spec)},
        "image": rec.spec.get("image"),
        "cgroups": [d for d in cgroup_dirs(store, rec, rec.name) if os.path.isdir(d)],
    }


def cmd_ls(a: Parsed, root: str | None) -> int:
    from nspod import gc, render

    store = _store(root)
    recs, damaged = gc.list_pods(store)
    for e in damaged:  # said, and the other pods listed all the same
        print(f"nspod: {e}", file=sys.stderr)
    if a.quiet:
        for r in recs:
            print(r.name)
        return damaged[0].code if damaged else 0
    if a.json:
        print(render.to_json([_view(store, r) for r in recs]))
        return damaged[0].code if damaged else 0
    else:
        rows = [("NAME", "STATE", "PID", "IP", "AGE")]
        for r in recs:
            ip = str(r.net.get("ip") or "-")
            rows.append((r.name, r.state, str(r.pid if r.state == "running" else "-"), ip,
                         render.age(r.created)))
        print(render.table(rows))
    return damaged[0].code if damaged else 0


def cmd_inspect(a: Parsed, root: str | None) -> int:
    from nspod import gc, render
    from nspod.health import members_view

    store = _store(root)
    print(render.to_json([{**_view(store, rec), "members": members_view(store.root, rec.name)}
                          for rec in (gc.get(store, n) for n in a.pod)]))
    return 0


def _stats_rows(samples: Any, previous: dict[str, tuple[float, int]],
                now: float) -> list[dict[str, Any]]:
    """JSON-ready dicts; CPU % over the time since previous (or since the pod started)."""
    import time

    rows = []
    for s in samples:
        u = s.usage
        cpu_ns = u.cpu_ns if u is not None else None
        before = previous.get(s.name)
        if cpu_ns is None:
            pct = None
        elif before is not None and now > before[0]:
            pct = (cpu_ns - before[1]) / ((now - before[0]) * 1e9) * 100
        else:
            pct = cpu_ns / max(time.time() - s.created, 1e-3) / 1e9 * 100
        rows.append({
            "name": s.name,
            "cpu_percent": None if pct is None else round(max(pct, 0.0), 2),
            "cpu_seconds": None if cpu_ns is None else round(cpu_ns / 1e9, 3),
            "memory_bytes": u.memory if u else None,
            "memory_limit_bytes": u.memory_limit if u else None,
            "pids": u.pids if u else None,
            "pids_limit": u.pids_limit if u else None,
        })
    return rows


def _stats_table(rows: list[dict[str, Any]]) -> str:
    from nspod.render import size, table

    out = [("NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS", "CPU TIME")]
    for r in rows:
        mem, limit = r["memory_bytes"], r["memory_limit_bytes"]
        pct = f"{mem / limit * 100:.2f}%" if mem is not None and limit else "-"
        cpu = "-" if r["cpu_percent"] is None else f"{r['cpu_percent']:.2f}%"
        secs = "-" if r["cpu_seconds"] is None else f"{r['cpu_seconds']:.3f}s"
        pids = "-" if r["pids"] is None else str(r["pids"])
        if r["pids_limit"] is not None:
            pids += f" / {r['pids_limit']}"
        out.append((r["name"], cpu, f"{size(mem)} / {size(limit) if limit else 'unlimited'}",
                    pct, pids, secs))
    return table(out)


def cmd_stats(a: Parsed, root: str | None) -> int:
    import time

    from nspod import render, stats

    store = _store(root)
    previous: dict[str, tuple[float, int]] = {}
    clear = sys.stdout.isatty()
    try:
        while True:
            samples = stats.stats(store, a.pod)
            now = time.monotonic()
            rows = _stats_rows(samples, previous, now)
            previous = {s.name: (now, s.usage.cpu_ns) for s in samples
                        if s.usage is not None and s.usage.cpu_ns is not None}
            text = render.to_json(rows) if a.json else _stats_table(rows)
            if clear and not a.no_stream:
                text = "\033[H\033[J" + text
            print(text, flush=True)
            if a.no_stream:
                return 0
            time.sleep(1.0)
    except KeyboardInterrupt:
        return 0
