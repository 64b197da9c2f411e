"""Work-arounds for Gradio 6.31 behaviour that costs a long-running server idle CPU or memory.

`quiet_queue(demo)` (after `demo.queue(...)`, before `launch`): the queue's loops wait for work instead of
polling. `forget_session(demo, session_hash)` (from an unload handler): drops a disconnected visitor's
per-session record from Gradio's state holder. `keep_update_ids()` (once, before the first event): an output
updated with `gr.skip()`/`gr.update(...)` no longer adds a block to the session's config on its next value.
All are measured in the README (load / soak section).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

import gradio as gr
from gradio.blocks import Block
from gradio.state_holder import SessionState
from gradio.utils import run_coro_in_background, set_task_name

log = logging.getLogger(__name__)

IDLE_POLL_S = 1.0
"""How often the quiet queue loops look anyway when nothing woke them (a safety net, not the mechanism)."""


class _Wake:
    """One asyncio.Event per waiting loop; `set()` wakes them all."""

    def __init__(self) -> None:
        self.work = asyncio.Event()
        self.busy = asyncio.Event()

    def set(self) -> None:
        self.work.set()
        self.busy.set()


class _WakingList(list):
    """The queue's `active_jobs`: freeing a worker slot (setting it to None) wakes the loops at once, before
    `process_events` finishes its bookkeeping (iterator reset, analytics summary in a thread)."""

    def __init__(self, items: list, wake: Any) -> None:
        super().__init__(items)
        self._wake = wake

    def __setitem__(self, index: Any, value: Any) -> None:
        super().__setitem__(index, value)
        if value is None:
            self._wake()


async def _wait(event: asyncio.Event, timeout: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except (TimeoutError, asyncio.TimeoutError):
        pass
    event.clear()


def quiet_queue(demo: gr.Blocks, *, idle_poll_s: float = IDLE_POLL_S) -> None:
    """Make `demo`'s queue wait for work instead of polling.

    Gradio 6.31's `Queue.start_processing` loops with `asyncio.sleep(0.001)` whenever nothing can start (empty
    queue, or every worker busy) and `Queue.start_progress_updates` with `asyncio.sleep(0.01)`: ~1,100 event-loop
    wake-ups a second on an idle server (measured ~3.5% of a core with no client connected; py-spy puts the
    samples in queueing.py:508 and :561). Here both loops are the same as Gradio's except that where Gradio
    sleeps they wait on an event that `push` (an event joined the queue), a worker slot coming free (in
    `process_events`' `finally`) and the end of `process_events` set, with `idle_poll_s` as a fallback. An event therefore starts as
    soon as it can, as before. Written against gradio==6.31.0 (pinned in requirements.txt).
    """
    queue = demo._queue  # noqa: SLF001 - the object whose loops we replace
    wake: dict[str, _Wake] = {}  # created lazily inside the server's event loop

    def waker() -> _Wake:
        if "w" not in wake:
            wake["w"] = _Wake()
        return wake["w"]

    push, process_events = queue.push, queue.process_events

    def then_wake(fn: Any) -> Any:
        @functools.wraps(fn)
        async def wrapped(*args: Any, **kwargs: Any):
            try:
                return await fn(*args, **kwargs)
            finally:
                waker().set()
        return wrapped

    push_and_wake, process_and_wake = then_wake(push), then_wake(process_events)

    async def start_processing() -> None:
        # gradio/queueing.py Queue.start_processing, with the sleeps replaced by waits for a wake-up.
        try:
            while not queue.stopped:
                if len(queue) == 0 or None not in queue.active_jobs:
                    await _wait(waker().work, idle_poll_s)
                    continue
                async with queue.delete_lock:
                    event_batch = queue.get_events()
                if not event_batch:
                    await _wait(waker().work, idle_poll_s)
                    continue
                events, batch, concurrency_id = event_batch
                queue.active_jobs[queue.active_jobs.index(None)] = events
                event_queue = queue.event_queue_per_concurrency_id[concurrency_id]
                event_queue.current_concurrency += 1
                start_time = time.time()
                fn = events[0].fn
                event_queue.start_times_per_fn[fn].add(start_time)
                for event in events:
                    if (a := queue.event_analytics.get(event._id)) is not None:
                        a["status"] = "processing"
                task = run_coro_in_background(queue.process_events, events, batch, start_time, fn)
                set_task_name(task, events[0].session_hash, fn._id, events[0]._id, batch)
                queue._asyncio_tasks.add(task)  # noqa: SLF001
                task.add_done_callback(queue._asyncio_tasks.discard)  # noqa: SLF001
                waker().busy.set()
                if queue.live_updates:
                    queue.broadcast_estimations(concurrency_id)
        finally:
            queue.stopped = True
            queue._cancel_asyncio_tasks()  # noqa: SLF001

    async def start_progress_updates() -> None:
        # gradio/queueing.py Queue.start_progress_updates: sends gr.Progress updates of running events every
        # 10 ms; with nothing running it waits for an event to start instead of polling.
        while not queue.stopped:
            events = [evt for job in queue.active_jobs if job is not None for evt in job]
            if not events:
                await _wait(waker().busy, idle_poll_s)
                continue
            for event in events:
                if event.progress_pending and event.progress:
                    event.progress_pending = False
                    queue.send_message(event, event.progress)
            await asyncio.sleep(queue.progress_update_sleep_when_free)

    start = queue.start

    def start_and_watch_slots() -> None:
        start()  # creates active_jobs and schedules the loops below
        queue.active_jobs = _WakingList(queue.active_jobs, lambda: waker().set())

    queue.start = start_and_watch_slots
    queue.push = push_and_wake
    queue.process_events = process_and_wake
    queue.start_processing = start_processing
    queue.start_progress_updates = start_progress_updates


def forget_session(demo: gr.Blocks, session_hash: str | None) -> bool:
    """Drop a disconnected session's record from Gradio's state holder; True when there was one.

    Gradio 6.31 creates a `SessionState` for every session hash that sends an event (route_utils.get_fn /
    restore_session_state) holding a copy of the whole UI's config (`config_values`: ~650 KiB for this app's
    ~400 blocks, measured with tracemalloc). On disconnect it only marks it closed; its expiry task
    (`StateHolder.delete_all_expired_state`, every second) later deletes the gr.State *values* but never the
    SessionState itself, which stays in `state_holder.session_data` until 10,000 sessions have been seen
    (`state_session_capacity`): ~6.5 GB on a server that runs for weeks. A reloaded page gets a new session
    hash, so nothing can come back for it; our own Session is released at the same moment (`on_unload`).
    Called from the unload event, i.e. after Gradio's heartbeat handler has ended the session's streams.
    """
    if not session_hash:
        return False
    holder = getattr(demo, "state_holder", None)
    if holder is None:
        return False
    with holder.lock:
        found = session_hash in holder.session_data
    if found:
        holder.delete_state(session_hash)  # runs gr.State delete callbacks, as Gradio's expiry would
        with holder.lock:
            holder.session_data.pop(session_hash, None)
            holder.time_last_used.pop(session_hash, None)
    # The queue's per-session records (an empty id set, a message queue in an LRU of 2,000) outlive the session
    # too; drop them unless an event of the session is still pending.
    queue = getattr(demo, "_queue", None)
    ids = getattr(queue, "pending_event_ids_session", None)
    if isinstance(ids, dict) and not ids.get(session_hash):
        ids.pop(session_hash, None)
        messages = getattr(queue, "pending_messages_per_session", None)
        if isinstance(messages, dict):
            pending = messages.get(session_hash)
            if pending is None or pending.empty():
                messages.pop(session_hash, None)
    return found


def keep_update_ids() -> bool:
    """Give the component Gradio builds for an update its output's id; True when installed now (False: already).

    Gradio 6.31, blocks.py `Blocks.postprocess_data`: an output value that is an update (`gr.skip()` is
    `{"__type__": "update"}`, `gr.update(...)`) makes a new component, `state[block._id] = block.__class__(**kwargs)`,
    which takes a fresh id from `Context.id`, and stores it in the session's `SessionState` under the output's id.
    The next plain value for that output takes `block = state[block._id]` -- the replacement, whose `_id` is the
    fresh one -- and, since that id is not in the session yet, `state[block._id] = block` plus
    `state._update_value_in_config(block._id, ...)` add it to `blocks_config.blocks` and a whole block config to
    `config_values`, keyed by an id nothing else uses. So every skip -> value transition of every output adds
    a component and its config to the session for as long as it lives: a run's ticks skip 7 outputs, so a
    long-lived visitor or API client grew ~12 `gr.Image`s (with their WebcamOptions/WatermarkOptions), ~3
    `gr.Markdown` and ~3 `gr.File` per run, ~0.3 MiB of server RSS (measured: README, load / soak section).
    Here `SessionState.__setitem__` sets the replacement's `_id` to the key it is stored under, so the next value
    finds it at its own id and nothing is added. Written against gradio==6.31.0 (pinned in requirements.txt).
    """
    original = SessionState.__setitem__
    if getattr(original, "_keeps_update_ids", False):
        return False

    @functools.wraps(original)
    def setitem(self: SessionState, key: int, value: Any) -> None:
        if isinstance(value, Block) and value._id != key \
                and not isinstance(self.blocks_config.blocks.get(key), gr.State):  # State values are user data
            value._id = key  # noqa: SLF001 - the replacement stands for the output `key` in this session
        original(self, key, value)

    setitem._keeps_update_ids = True  # type: ignore[attr-defined]
    SessionState.__setitem__ = setitem  # type: ignore[method-assign]
    return True
