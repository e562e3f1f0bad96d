"""Berth's configuration: every duration and limit in one frozen object."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from actors.secret import Secret


def default_state_dir() -> Path:
    env = os.environ.get("BERTH_STATE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "berth"


#: The runners the session image knows (agent/config.py).
AGENT_RUNNERS = ("builtin", "sdk")

_POSITIVE_LIMITS = (
    "max_request_bytes",
    "max_client_frame_bytes",
    "max_agent_frame_bytes",
    "max_name_chars",
    "max_model_chars",
    "max_repo_url_chars",
    "max_branch_chars",
    "max_prompt_chars",
    "max_answer_chars",
    "max_answers",
    "max_id_chars",
    "max_reason_chars",
    "agent_frame_rate",
    "agent_frame_burst",
    "agent_byte_rate",
    "agent_byte_burst",
    "agent_mailbox_backlog",
    "ws_messages_per_turn",
)


@dataclass(frozen=True)
class BerthConfig:
    """Durations are seconds. Tests shrink them; nothing else is hard-coded."""

    instance_id: str = "default"
    image: str = "berth-session:latest"
    state_dir: Path = field(default_factory=default_state_dir)
    max_sessions: int = 50
    history_limit: int = 500
    event_log_limit: int = 5000
    eviction_ttl: float = 300.0
    startup_timeout: float = 120.0
    token_retry_delay: float = 5.0
    reconnect_grace: float = 30.0
    container_stop_timeout: float = 2.0
    #: Lines of a dead container's output read to say why it stopped (0: none).
    container_exit_log_lines: int = 50
    #: First wait before restarting a failed token, container or pool service; doubles each time.
    child_restart_delay: float = 0.5
    #: The longest wait between restarts of a failed service.
    child_restart_max_delay: float = 30.0
    container_workers: int = 8
    #: Where agents reach the server from inside their container (host network).
    server_url: str = "ws://127.0.0.1:8765"
    #: The ``.claude`` directory holding ``.credentials.json``; None = env token.
    claude_dir: Path | None = None
    #: Given to every session container as the ``github-token`` secret file.
    github_token: Secret | None = None
    #: ``claude_dir`` must lie under this directory; None = the user's home.
    claude_dir_root: Path | None = None
    #: OAuth refresh-token grant endpoint and client id (the Claude Code CLI's).
    token_endpoint: str = "https://console.anthropic.com/v1/oauth/token"
    token_client_id: str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
    #: A token expiring within this margin is refreshed before it is handed out.
    token_refresh_margin: float = 300.0
    #: No new refresh attempt this long after the last one (a failure's cooldown).
    token_refresh_cooldown: float = 30.0
    #: How often the TokenActor looks for a token to refresh ahead of expiry.
    token_check_interval: float = 60.0
    #: Timeout of the refresh HTTP request.
    token_http_timeout: float = 15.0
    container_network: str = "host"
    #: uid:gid the agent runs as; the secrets files are chowned to it. Root in
    #: the container, so that it can run the tools as ``tool_user``.
    container_user: str = "0:0"
    #: The capabilities the agent keeps (every other one is dropped): reading
    #: secrets owned by the host's user, handing files to the tool user,
    #: switching to it, and stopping its processes.
    container_capabilities: tuple[str, ...] | None = (
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "SETUID",
        "SETGID",
        "KILL",
    )
    container_memory: str | None = "4g"
    container_pids_limit: int = 512
    agent_runner: str = "builtin"
    #: A container whose agent cannot reach the server this long exits: the bound on how
    #: long a server may be down (restart, upgrade) and still get its sessions back.
    agent_orphan_timeout: float = 600.0
    #: Longest wait between an agent's reconnect attempts (full jitter below it).
    agent_backoff_cap: float = 10.0
    #: An agent pings a server silent this long (and reconnects after twice that);
    #: keep it above the server's ``ping_interval``, so only the server pings (it
    #: sends its pings in batches, which an agent's own pings would not be).
    agent_ping_interval: float = 60.0
    #: Pre-started containers waiting for a session (0 = no pool).
    warm_pool_size: int = 0
    #: Wait before starting a pooled container again after a failed start.
    pool_retry_delay: float = 5.0
    #: After a claim, wait this long before starting its replacement, so that the
    #: claimed session's first prompt does not share the CPU with a container start
    #: and a CLI warm-up (0: at once).
    warm_pool_refill_delay: float = 1.0
    #: Overrides the image's command (tests run a plain ``sleep``).
    container_command: tuple[str, ...] | None = None
    #: Extra, non-secret environment for session containers.
    container_env: tuple[tuple[str, str], ...] = ()
    #: Sessions API (``/v1/``): SSE event streams open at once (each holds a server thread).
    sessions_api_max_streams: int = 64
    #: Sessions API: a quiet event stream sends a ping this often (a gone client is noticed then).
    sessions_api_keepalive: float = 15.0
    #: Sessions API: events kept per session for listing and ``Last-Event-ID`` resumption.
    sessions_api_event_limit: int = 20_000
    #: Sessions API: a TOML file of named environments (``[name]`` tables); None = only "default".
    sessions_api_environments: Path | None = None
    # Manager sessions (docs/managers.md).
    #: Events that arrive together are delivered to an idle manager after this delay, in one message.
    manager_batch_delay: float = 2.0
    #: The shortest wait before an idle manager with nothing to wait for is nudged to continue.
    manager_continue_delay: float = 3.0
    #: Backoff after a streak of n fast turns: base * 2**(n-1), at most ``manager_backoff_max``.
    manager_backoff_base: float = 2.0
    manager_backoff_max: float = 60.0
    #: A manager turn shorter than this with fewer output tokens than the next field is "fast".
    manager_fast_turn: float = 3.0
    manager_fast_turn_tokens: int = 50
    #: A working child with no agent traffic this long is reported to its manager as stale.
    manager_child_stale: float = 30.0
    #: A child reports agent traffic to its manager at most this often.
    manager_activity_interval: float = 1.0
    #: Characters of a child's turn output in a "completed" event.
    manager_child_output_limit: int = 4000
    #: Characters of a child's tool input (and of its reason) in an approval event.
    manager_approval_input_limit: int = 1000
    #: Events held for a manager; past it the oldest give way and the next delivery says so.
    manager_event_queue_limit: int = 200
    #: The latest automatic resume a pause may ask for, from now.
    manager_max_pause: float = 86400.0
    #: Deleting or terminating a manager leaves its children running (else it ends them).
    manager_orphans_children: bool = False
    #: The Messages API Claude Code in a session talks to (ANTHROPIC_BASE_URL); None: Anthropic's.
    claude_api_base_url: str | None = None
    #: Keep Claude Code from calling anything but the Messages API (no telemetry,
    #: error reports, auto-update or other non-essential traffic).
    claude_no_nonessential_traffic: bool = False
    #: How long a prompt to a session without a Claude token waits for one before it fails.
    claude_token_wait: float = 5.0
    #: Stop the Claude Code CLI of a session idle this long (0 = never); the next
    #: prompt resumes the same conversation.
    claude_park_after: float = 0.0
    #: Start Claude Code so that a session can be switched to ``dangerous`` later.
    claude_allow_dangerous: bool = True
    #: Turns a pooled Claude Code runs against a loopback stand-in of its API, each
    #: rewound, before its slot is offered (only with ``claude_api_base_url``); its
    #: code gets faster over its first tens of turns. 0: no warm-up.
    claude_warm_up_turns: int = 60
    #: A warmed pooled Claude Code waiting for its claim runs one more warm-up turn this
    #: often: its JavaScript engine drops compiled code left unused for tens of seconds.
    #: 0: never.
    claude_keep_warm_interval: float = 20.0
    #: A graceful stop terminates sessions and removes their containers (else they keep
    #: running and the next start with this instance id and state dir takes them back).
    stop_sessions_on_exit: bool = False
    #: "sqlite" keeps sessions across restarts (docs/durability.md); "none" keeps nothing.
    session_store: str = "sqlite"
    #: The session store's write-behind batch window: a kill -9 loses at most this much.
    store_flush_interval: float = 0.05
    #: fsync every store commit (SQLite synchronous=FULL): survives power loss, costs a disk flush.
    store_fsync: bool = False
    #: Event text waiting for the store's writer; past it sessions wait for the disk (backpressure).
    store_queue_bytes: int = 4 * 1024 * 1024
    #: Ended sessions stay readable this long (then their transcript is purged).
    ended_retention: float = 7 * 24 * 3600.0
    #: Removal of a container that failed (engine down) is retried after this, doubling...
    container_remove_retry: float = 1.0
    #: ...up to this delay between attempts, until it succeeds.
    container_remove_retry_max: float = 30.0
    #: The Docker events watch re-subscribes after this when its stream breaks, doubling...
    engine_watch_retry: float = 0.5
    #: ...up to this delay between attempts.
    engine_watch_retry_max: float = 10.0

    #: uid:gid the Claude CLI and every tool the model runs use inside the
    #: container; the agent (``container_user``) owns the secrets, this user
    #: cannot read them. None: tools run as the agent (no separation).
    tool_user: str | None = "1000:1000"

    # Input limits (``transport.limits`` applies them; docs/protocol.md lists them).
    #: Bytes of one REST request body (fits a maximal prompt, JSON-escaped).
    max_request_bytes: int = 2 * 1024 * 1024
    #: Bytes of one WebSocket message from a client.
    max_client_frame_bytes: int = 2 * 1024 * 1024
    #: Bytes of one WebSocket message from an agent (tool results can be big).
    max_agent_frame_bytes: int = 8 * 1024 * 1024
    #: Characters of a session name.
    max_name_chars: int = 100
    #: Characters of a model id (real ids are ~30; it travels in every update).
    max_model_chars: int = 200
    #: Characters of a repository URL.
    max_repo_url_chars: int = 2048
    #: Characters of a branch name.
    max_branch_chars: int = 200
    #: Characters of one prompt (~65k tokens; JSON-escaped it still fits a frame).
    max_prompt_chars: int = 256 * 1024
    #: Characters of one answer, question text or approval/denial message.
    max_answer_chars: int = 16 * 1024
    #: Answers in one ``answer_question`` (a question carries at most a few).
    max_answers: int = 32
    #: Characters of an id (session, approval, question, request id).
    max_id_chars: int = 128
    #: Characters of a terminate reason.
    max_reason_chars: int = 1000
    #: Frames per second an agent may send, sustained; above it the server
    #: stops reading its socket until the budget refills (nothing is dropped).
    agent_frame_rate: float = 2000.0
    #: Frames an agent may send in a burst above ``agent_frame_rate``.
    agent_frame_burst: int = 20_000
    #: Bytes per second an agent may send, sustained (a real agent's tokens and
    #: tool results are far below it); above it, as for frames, the server reads
    #: its socket more slowly. With the frame rate it bounds the share of the
    #: server one session's agent can take from the others (BENCHMARKS.md, 9).
    agent_byte_rate: float = 4 * 1024 * 1024
    #: Bytes an agent may send in a burst above ``agent_byte_rate``.
    agent_byte_burst: int = 16 * 1024 * 1024
    #: Messages waiting in a session's mailbox past which the server stops
    #: reading that session's agent until the session has caught up: what an
    #: agent sends faster than its session takes it waits in the agent (TCP
    #: pushes back), not in the server's memory.
    agent_mailbox_backlog: int = 16
    #: How often the server checks whether such a session has caught up.
    agent_backlog_poll: float = 0.002
    #: WebSocket messages one connection hands on per turn of the I/O loop; the
    #: rest of what it read waits until every other ready connection had its turn.
    ws_messages_per_turn: int = 256
    #: Bytes queued for one client WebSocket (not yet taken by its socket)
    #: before it is closed with 4008; it resubscribes with ``since``.
    client_outbox_bytes: int = 8 * 1024 * 1024
    #: Bytes queued for one agent WebSocket before it is closed with 4008
    #: (the session waits ``reconnect_grace`` for it to come back).
    agent_outbox_bytes: int = 8 * 1024 * 1024
    #: Bytes of frames for one session's agent it has not acknowledged yet
    #: (sent and kept for a resend, or held while it is away); a command that
    #: would go over it is refused with 503, nothing is dropped. Keep it well
    #: below ``agent_outbox_bytes``: after a reconnect it is all resent at once.
    agent_unacked_bytes: int = 4 * 1024 * 1024
    #: The same budget in frames.
    agent_unacked_frames: int = 1000
    #: Open connections (HTTP and WebSocket) the server holds at once; more
    #: are answered 503 and closed. Every agent is one.
    max_connections: int = 12_000
    #: Open connections from one address. Agents share the host network, so
    #: they all come from 127.0.0.1: keep this above the sessions you run.
    max_connections_per_address: int = 12_000
    #: A connection must finish its HTTP request (for a WebSocket: the
    #: upgrade, authenticated) within this many seconds of silence, else it
    #: is closed: half-open or idle sockets hold nothing for long.
    auth_timeout: float = 5.0
    #: After sending a close frame, wait this long for the peer's, then drop.
    close_timeout: float = 5.0
    #: Slots of this process's futex hash table (Linux 6.16 and later; a power
    #: of two). Every blocked thread (one per session) waits in it; the kernel
    #: gives a process 16 slots on a 2-CPU machine, so at 10,000 sessions each
    #: thread hand-off walked hundreds of waiters. 0 leaves the kernel's choice.
    futex_hash_slots: int = 16_384
    #: Python's youngest-generation GC threshold for this process (0 leaves
    #: Python's, 700): each young collection also walks what 10,000 sessions
    #: keep alive more often than it needs to.
    gc_young_threshold: int = 20_000

    def __post_init__(self) -> None:
        if self.max_sessions < 0:
            raise ValueError("max_sessions must be >= 0 (0 means no limit)")
        if self.history_limit < 1:
            raise ValueError("history_limit must be >= 1")
        for name in (
            "sessions_api_max_streams",
            "sessions_api_event_limit",
            "client_outbox_bytes",
            "agent_outbox_bytes",
            "agent_unacked_bytes",
            "agent_unacked_frames",
            "max_connections",
            "max_connections_per_address",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("sessions_api_keepalive", "agent_ping_interval", "agent_backlog_poll"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0 seconds")
        for name in (
            "eviction_ttl",
            "startup_timeout",
            "token_retry_delay",
            "reconnect_grace",
            "child_restart_delay",
            "child_restart_max_delay",
            "manager_batch_delay",
            "manager_continue_delay",
            "manager_backoff_base",
            "manager_backoff_max",
            "manager_fast_turn",
            "manager_child_stale",
            "manager_activity_interval",
            "manager_max_pause",
            "claude_token_wait",
            "claude_park_after",
            "store_flush_interval",
            "ended_retention",
            "container_remove_retry",
            "container_remove_retry_max",
            "engine_watch_retry",
            "engine_watch_retry_max",
            "auth_timeout",
            "close_timeout",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 seconds")
        limits = ("manager_child_output_limit", "manager_approval_input_limit", "manager_event_queue_limit")
        for name in (*limits, *_POSITIVE_LIMITS):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.tool_user is not None:
            agent_uid, _, _ = self.container_user.partition(":")
            tool_uid, _, tool_gid = self.tool_user.partition(":")
            if not (tool_uid.isdigit() and tool_gid.isdigit()) or tool_uid == "0":
                raise ValueError(f"tool_user must be a non-root 'uid:gid' in numbers, not {self.tool_user!r}")
            if agent_uid not in ("0", "root"):
                raise ValueError(
                    "tool_user needs the agent to run as root in the container (container_user '0:0') "
                    "to start the tools as another user; set tool_user=None to run tools as the agent"
                )
        if self.futex_hash_slots < 0 or self.futex_hash_slots & (self.futex_hash_slots - 1):
            raise ValueError("futex_hash_slots must be 0 (the kernel's choice) or a power of two")
        if self.claude_keep_warm_interval < 0:
            raise ValueError("claude_keep_warm_interval must be >= 0 (0: never)")
        if self.container_exit_log_lines < 0:
            raise ValueError("container_exit_log_lines must be >= 0 (0: do not read dead containers' output)")
        if self.claude_warm_up_turns < 0:
            raise ValueError("claude_warm_up_turns must be >= 0 (0: no warm-up)")
        if self.gc_young_threshold < 0:
            raise ValueError("gc_young_threshold must be >= 0 (0 leaves Python's)")
        if self.session_store not in ("sqlite", "none"):
            raise ValueError(f"session_store must be 'sqlite' or 'none', not {self.session_store!r}")
        if not self.instance_id.replace("-", "").replace("_", "").isalnum():
            raise ValueError("instance_id may hold letters, digits, '-' and '_' only")
        if self.agent_runner not in AGENT_RUNNERS:
            raise ValueError(f"agent_runner must be one of {', '.join(AGENT_RUNNERS)}")

    @property
    def store_path(self) -> Path:
        return self.state_dir / f"sessions-{self.instance_id}.sqlite3"

    @property
    def secrets_root(self) -> Path:
        return self.state_dir / "secrets" / self.instance_id
