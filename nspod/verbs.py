"""The verb table of pods and their members: names, options, help, handler.

Declarative: one Verb per command, its handler in handlers. Another domain
(network, image, kube) adds a module like this one with its own VERBS and
names it in cli.TABLES.
"""

from __future__ import annotations

from nspod import handlers as h
from nspod import lifecycle_cli as lc
from nspod import options as o
from nspod.args import Opt, Verb

JOIN_CODES = """\
exit codes: the command's own status; 128+N when it was killed by signal N;
126 found but not executable; 127 not found; 125 nspod failed; 2 bad usage"""

VERBS = (
    Verb(
        "create",
        "Create a pod: pause as PID 1 in new PID, UTS, IPC, mount and network namespaces.",
        ("NAME?",),
        (
            Opt(("--hostname",), "hostname", "hostname inside the pod (default: the pod name)",
                "H"),
            Opt(("--memory",), "memory", "memory limit of the pod, no swap (e.g. 64M, 1g)",
                "SIZE", convert=o.memory),
            Opt(("--pids",), "pids", "most processes the pod may have at once (default 2048; "
                "0 or -1: unlimited)", "N", convert=o.pids),
            Opt(("--shm-size",), "shm_size", "size of the pod's /dev/shm (default 64M)", "SIZE",
                convert=o.size),
            Opt(("--cpus",), "cpus", "CPU time the pod may use, in CPUs (e.g. 0.5)", "X",
                convert=o.cpus),
            Opt(("--net",), "net", "bridge (default): own address on the default network; "
                "NAME: on that network; none: only lo; host: the host's network",
                "MODE|NAME", default="bridge"),
            Opt(("--ip",), "ip", "the pod's address (default: the next free one)", "ADDR",
                convert=o.ip),
            Opt(("-p", "--publish"), "publish", "publish a port of the pod on the host",
                "[HOST_IP:]HOST_PORT:POD_PORT[/tcp|/udp]", True, convert=o.publish),
            Opt(("--dns",), "dns", "nameserver for the pod's /etc/resolv.conf", "IP", True,
                convert=o.dns),
            Opt(("--add-host",), "add_host", "a line NAME -> IP in the pod's /etc/hosts",
                "NAME:IP", True, convert=o.add_host),
            *o.SECURITY_OPTS,
            *o.ROOTFS_OPTS,
        ),
        details="Prints the pod's name (one is generated when none is given).\n"
        "Environment: NSPOD_BRIDGE (nspod0) and NSPOD_SUBNET (from the pool) for\n"
        "the default network, NSPOD_NFT_TABLE (nspod).\n"
        "--rootfs, --image, -v, --read-only, --cap-add, --cap-drop, --privileged and\n"
        "--security-opt are defaults for every join into the pod.\n"
        + o.SECURITY_HELP + "\n" + o.EXIT_CODES,
        run=h.cmd_create,
    ),
    Verb(
        "join",
        "Run a command inside a pod, in the foreground.",
        ("POD",),
        (
            Opt(("-e", "--env"), "env", "set an environment variable", "KEY=VAL", True,
                convert=o.env),
            Opt(("-w", "--workdir"), "workdir", "working directory of the command", "DIR"),
            Opt(("-d", "--detach"), "detach", "run in the background; print the member's name"),
            Opt(("--name",), "name", "the member's name (unique in the pod)", "NAME"),
            Opt(("-t", "--tty"), "tty", "give the command a terminal (a pty)"),
            Opt(("-i", "--interactive"), "interactive", "with -t: pass stdin to the terminal"),
            Opt(("-u", "--user"), "user", "run as UID[:GID] or NAME[:GROUP] (names from the "
                "member's /etc/passwd and /etc/group)", "USER"),
            Opt(("--mix-roots",), "mix_roots", "allow members with a rootfs and members on "
                "the host's files in one pod (the former can then reach the host's files)"),
            *o.SECURITY_OPTS,
            *o.ROOTFS_OPTS,
            *lc.JOIN_OPTS,
        ),
        command="-- CMD [ARG...]",
        details="Options may come before or after POD; CMD starts at the first word after\n"
        "POD (or after --), so CMD's own options pass through.\n"
        "In the foreground, stdin, stdout and stderr are the caller's; SIGINT,\n"
        "SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to nspod reach the command.\n"
        "With -d the command's stdin is /dev/null and its output goes to its log\n"
        "(nspod logs); pause reaps it and records its exit status (nspod ps).\n"
        "--cap-add and --cap-drop apply on top of the pod's defaults.\n"
        "With --image (or a pod created with one), CMD may be left out: the image's\n"
        "Entrypoint and Cmd run; a CMD replaces both. -e, -w, -u override its Env,\n"
        "WorkingDir and User.\n"
        + lc.JOIN_HELP + "\n" + o.SECURITY_HELP + "\n" + JOIN_CODES,
        run=h.cmd_join,
    ),
    Verb("ps", "List the members of a pod: running or ended, with their status.", ("POD",),
         (o.JSON_OPT,), details=o.EXIT_CODES, run=h.cmd_ps),
    Verb(
        "logs",
        "Print a detached member's output: its stdout to stdout, its stderr to stderr.",
        ("POD", "NAME"),
        (
            Opt(("-f", "--follow"), "follow", "keep printing until the member ends and its "
                "policy will not run it again"),
            Opt(("--tail",), "tail", "only the last N lines", "N", convert=o.count),
            Opt(("--timestamps",), "timestamps", "prefix each line with its time"),
            *lc.LOGS_OPTS,
        ),
        details=o.EXIT_CODES,
        run=h.cmd_logs,
    ),
    Verb("start", "Start stopped pods again: new pause, same name and spec, the same members.",
         ("POD*",), lc.START_OPTS, details=lc.START_HELP + "\n" + o.EXIT_CODES,
         run=h.cmd_start),
    Verb("restart", "Stop pods, then start them again.", ("POD...",), (o.TIME_OPT,),
         details=o.EXIT_CODES, run=h.cmd_restart),
    Verb(
        "kill",
        "Send a signal to every process of a pod but pause, or to one member.",
        ("POD", "NAME?"),
        (Opt(("-s", "--signal"), "signal", "the signal, by name or number (default KILL)",
             "SIGNAL", default=9, convert=o.signal),),
        details=o.EXIT_CODES,
        run=h.cmd_kill,
    ),
    Verb("gc", "Give back everything held by pods that died or were half made.", (), (),
         details="Running pods and pods stopped by the user are untouched.\n" + o.EXIT_CODES,
         run=h.cmd_gc),
    Verb(
        "ls",
        "List pods with their state, pause pid and age.",
        (),
        (Opt(("-q", "--quiet"), "quiet", "print names only"), o.JSON_OPT),
        details=o.EXIT_CODES,
        run=h.cmd_ls,
    ),
    Verb("inspect", "Print pods' details as JSON.", ("POD...",), (), details=o.EXIT_CODES,
         run=h.cmd_inspect),
    Verb(
        "stats",
        "Show pods' memory, CPU and process figures, refreshed every second.",
        ("POD*",),
        (Opt(("--no-stream",), "no_stream", "print once and exit"), o.JSON_OPT),
        details="Without POD, every running pod. CPU % is over the last second (since the\n"
        "pod started on the first line). Ctrl-C ends it.\n" + o.EXIT_CODES,
        run=h.cmd_stats,
    ),
    Verb("stop", "Stop pods: TERM to every process, KILL after the grace period, pause last.",
         ("POD...",), (o.TIME_OPT,), details=o.EXIT_CODES, run=h.cmd_stop),
    Verb(
        "rm",
        "Remove stopped pods; nothing of them stays.",
        ("POD...",),
        (
            Opt(("-f", "--force"), "force", "stop running pods first"),
            Opt(("-t", "--time"), "time", "grace period when stopping (default 10)", "SECONDS",
                default=10.0, convert=o.seconds),
        ),
        details=o.EXIT_CODES,
        run=h.cmd_rm,
    ),
)
